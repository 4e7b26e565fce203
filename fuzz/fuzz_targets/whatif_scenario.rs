#![no_main]
//! `whatif_scenario`: arbitrary bytes into the parser; a panic is a finding.

use libfuzzer_sys::fuzz_target;
use mezzanine::tools::fuzz::Target;

fuzz_target!(|data: &[u8]| {
    if let Err(fixture) = Target::WhatifScenario.feed(data) {
        panic!("fixture failed to load: {fixture}");
    }
});
