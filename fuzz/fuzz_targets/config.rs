//! The YAML config: parse, collect every problem, validate; never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match syncguard_config::from_yaml_str(text, "fuzz.yaml") {
            Ok(loaded) => {
                let _ = format!("{:?}", loaded.config);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
