//! Process exit codes, as documented in the README.

/// Success.
pub const OK: i32 = 0;
/// A node failed.
pub const NODE_FAILED: i32 = 1;
/// The recipe or the command line is wrong; nothing was fetched or written.
pub const USAGE: i32 = 2;
/// The input data cannot be processed (no valid pixels, an unreadable asset).
pub const BAD_DATA: i32 = 3;
/// A remote service failed after retries.
pub const REMOTE: i32 = 4;
/// Local I/O or cache failure.
pub const IO: i32 = 5;
/// A plugin failed to load or to run.
pub const PLUGIN: i32 = 6;
/// Interrupted by Ctrl-C.
pub const INTERRUPTED: i32 = 130;
