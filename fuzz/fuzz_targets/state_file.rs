//! `priv_validator_state.json`: parse; whatever parses must write back to something that
//! parses to the same state (the store writes what it read).
#![no_main]
use libfuzzer_sys::fuzz_target;
use syncguard_validator::SignState;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = SignState::from_json(data) {
        let again = SignState::from_json(state.to_json().as_bytes())
            .expect("a state SyncGuard wrote must parse again");
        assert_eq!(again.hrs(), state.hrs());
    }
});
