#![no_main]
//! Fuzz target: hangar_agent::fuzzing::frames (see fuzz/README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hangar_agent::fuzzing::frames(data);
});
