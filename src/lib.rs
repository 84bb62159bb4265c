//! The `flow` command-line program as a library: [`cli::Cli`] parses the arguments and runs the
//! chosen command; [`registry::builtin`] lists the node kinds compiled in.

#![warn(missing_docs, unreachable_pub)]

pub mod cli;
pub mod commands;
pub mod emit;
pub mod error;
pub mod fuzzing;
pub mod init;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod report;
pub mod scale;
pub mod scale_commands;
pub mod stdout;
