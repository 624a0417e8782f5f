//! CometBFT answers (`/status`, `/net_info`, `/commit`) decoded as the health probes do:
//! the first byte picks the route and the HTTP status class, the rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use syncguard_health::{decode_answer, AnswerKind};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kind = [
        AnswerKind::CometStatus,
        AnswerKind::CometNetInfo,
        AnswerKind::CometCommit,
    ][usize::from(pick % 3)];
    let status = [200, 404, 500, 503][usize::from(pick / 3 % 4)];
    if let Err(e) = decode_answer(kind, status, body) {
        let _ = e.to_string();
    }
});
