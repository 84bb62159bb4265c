//! Test only (tests/plugins.rs): a library built for plugin ABI version 1, the version before
//! this flow's. Its descriptor has the version-1 layout (the run context as JSON without the
//! cancel flag, no `key_material` / `is_fresh`), written out here as a library of that time
//! exported it. flow must refuse it after reading the version and nothing else: every function
//! in it aborts the process, so a host that called into it would fail the test.

use std::ffi::c_void;

use flow_plugin::abi::{FlowBuf, FlowInput, FlowNodeHandle, FlowStr, FlowValue};

/// The ABI version this library declares: the one before [`flow_plugin::abi::ABI_VERSION`].
pub const DECLARED_ABI_VERSION: u32 = 1;

/// The descriptor layout of plugin ABI version 1.
#[repr(C)]
pub struct FlowPluginV1 {
    /// Always first: the ABI version.
    pub abi_version: u32,
    /// The plugin's name.
    pub name: FlowStr,
    /// The plugin's version.
    pub version: FlowStr,
    /// `describe(out)`.
    pub describe: unsafe extern "C" fn(out: *mut FlowBuf) -> i32,
    /// `build(kind, params_json, out, msg)`.
    pub build: unsafe extern "C" fn(
        kind: FlowStr,
        params_json: FlowStr,
        out: *mut FlowNodeHandle,
        msg: *mut FlowBuf,
    ) -> i32,
    /// `run(node, ctx_json, inputs, n_inputs, out, msg)`.
    pub run: unsafe extern "C" fn(
        node: *const c_void,
        ctx_json: FlowStr,
        inputs: *const FlowInput,
        n_inputs: usize,
        out: *mut FlowValue,
        msg: *mut FlowBuf,
    ) -> i32,
    /// `drop_node(node)`.
    pub drop_node: unsafe extern "C" fn(node: *mut c_void),
}

// SAFETY: immutable static data: `'static` strings and function pointers.
unsafe impl Sync for FlowPluginV1 {}

fn called() -> ! {
    eprintln!("flow called into a library built for another plugin ABI version");
    std::process::abort()
}

unsafe extern "C" fn describe(_out: *mut FlowBuf) -> i32 {
    called()
}

unsafe extern "C" fn build(
    _kind: FlowStr,
    _params_json: FlowStr,
    _out: *mut FlowNodeHandle,
    _msg: *mut FlowBuf,
) -> i32 {
    called()
}

unsafe extern "C" fn run(
    _node: *const c_void,
    _ctx_json: FlowStr,
    _inputs: *const FlowInput,
    _n_inputs: usize,
    _out: *mut FlowValue,
    _msg: *mut FlowBuf,
) -> i32 {
    called()
}

unsafe extern "C" fn drop_node(_node: *mut c_void) {
    called()
}

/// The exported descriptor, ABI version 1.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static flow_plugin_entry: FlowPluginV1 = FlowPluginV1 {
    abi_version: DECLARED_ABI_VERSION,
    name: FlowStr::from_static("test-wrong-abi"),
    version: FlowStr::from_static(env!("CARGO_PKG_VERSION")),
    describe,
    build,
    run,
    drop_node,
};

/// A library initializer, as C++ static constructors or `#[ctor]` make: it runs when the library
/// is opened. flow reads the version from the file and refuses the library without opening it,
/// so this never runs; if it did, the process would abort and the test would fail.
/// Not in this crate's own test binary, which links the same code and must start.
#[cfg(not(test))]
extern "C" fn on_load() {
    eprintln!("flow opened a library built for another plugin ABI version");
    std::process::abort()
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

#[cfg(test)]
mod tests {
    #[test]
    fn it_declares_the_version_before_this_one() {
        assert_eq!(
            super::DECLARED_ABI_VERSION + 1,
            flow_plugin::abi::ABI_VERSION
        );
    }
}
