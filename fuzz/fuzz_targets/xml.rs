#![no_main]
//! Fuzz target: hangar_agent::fuzzing::xml (see fuzz/README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hangar_agent::fuzzing::xml(data);
});
