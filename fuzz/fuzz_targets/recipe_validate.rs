//! Any bytes as a recipe file: reading, validating with the built-in kinds (with and without
//! overrides) and rendering the diagnostics must not panic, and every reported span must lie
//! inside the text. See `flow::fuzzing::check_recipe`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    flow::fuzzing::check_recipe(bytes);
});
