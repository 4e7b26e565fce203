#![no_main]
//! `oee_rules`: arbitrary bytes into the parser; a panic is a finding.

use libfuzzer_sys::fuzz_target;
use mezzanine::tools::fuzz::Target;

fuzz_target!(|data: &[u8]| {
    if let Err(fixture) = Target::OeeRules.feed(data) {
        panic!("fixture failed to load: {fixture}");
    }
});
