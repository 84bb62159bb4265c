//! Writing to standard output without panicking when the reader goes away
//! (`flow validate --plan | head -1`): a closed pipe ends the command quietly with exit 0, as
//! Unix tools do; any other write error is reported once on stderr with exit 5.

use std::io::{self, Write};

/// Writes formatted text to stdout (see the module docs for closed pipes).
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(flow_core::ExitCode::Ok.code());
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(flow_core::ExitCode::Io.code());
    }
}

/// `println!` to stdout through [`write`].
#[macro_export]
macro_rules! outln {
    () => { $crate::stdout::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` to stdout through [`write`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*)) };
}
