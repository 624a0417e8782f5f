//! `priv_validator_key.json`: parse and verify; never panic, and no error text may quote
//! the input (it could be a private key).
#![no_main]
use libfuzzer_sys::fuzz_target;
use syncguard_validator::ValidatorKey;

fuzz_target!(|data: &[u8]| {
    match ValidatorKey::from_json(data) {
        Ok(key) => {
            let _ = key.address_hex();
            let _ = format!("{key:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
