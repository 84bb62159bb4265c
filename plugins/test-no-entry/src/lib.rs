//! Test only (tests/plugins.rs): a valid shared library that exports no `flow_plugin_entry`, so
//! that flow's refusal of it can be tested. Not a plugin.

/// Something to export, so the library is not empty.
#[no_mangle]
pub extern "C" fn flow_test_no_entry() -> i32 {
    0
}
