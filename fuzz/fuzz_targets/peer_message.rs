//! What a peer posts or answers: `Envelope<PeerMessage>`, `Envelope<PeerStatus>`,
//! `Envelope<StateSnapshot>`. Deserializing validates (ids, lengths, HRS, no key-like
//! field); whatever passes must serialize again (an invalid message is never sent) and
//! read back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use syncguard_failover::{PeerMessage, PeerStatus};
use syncguard_peer::{Envelope, StateSnapshot};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_json::from_slice::<Envelope<PeerMessage>>(data) {
        let text = serde_json::to_string(&env).expect("a received message must serialize");
        let back: Envelope<PeerMessage> =
            serde_json::from_str(&text).expect("a serialized message must read back");
        assert_eq!(back, env);
    }
    if let Ok(env) = serde_json::from_slice::<Envelope<PeerStatus>>(data) {
        let text = serde_json::to_string(&env).expect("a received status must serialize");
        let back: Envelope<PeerStatus> =
            serde_json::from_str(&text).expect("a serialized status must read back");
        assert_eq!(back, env);
    }
    if let Ok(env) = serde_json::from_slice::<Envelope<StateSnapshot>>(data) {
        let _ = serde_json::to_string(&env).expect("a received state must serialize");
    }
});
