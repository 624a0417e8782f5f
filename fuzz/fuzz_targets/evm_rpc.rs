//! story-geth JSON-RPC answers decoded as the health probes do: the first byte picks the
//! method and the HTTP status, the rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use syncguard_health::{decode_answer, AnswerKind};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kind = [
        AnswerKind::EvmBlockNumber,
        AnswerKind::EvmSyncing,
        AnswerKind::EvmPeerCount,
        AnswerKind::EvmLatestBlock,
    ][usize::from(pick % 4)];
    let status = [200, 400, 500][usize::from(pick / 4 % 3)];
    if let Err(e) = decode_answer(kind, status, body) {
        let _ = e.to_string();
    }
});
