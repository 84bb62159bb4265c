//! Why a command failed, and the one place where that becomes an exit code
//! ([`crate::cli::main`]).

use flow_core::ExitCode;

/// A command's failure: the exit code and what to print on stderr.
#[derive(Debug)]
pub struct CommandError {
    /// The process exit code.
    pub code: ExitCode,
    /// What to print.
    pub message: Message,
}

/// What a failed command prints.
#[derive(Debug)]
pub enum Message {
    /// One line, printed as `error: <line>`.
    Line(String),
    /// Text already formatted (rendered recipe diagnostics), printed as it is.
    Rendered(String),
    /// Nothing more: the command already reported the failure (a run's report and its error line).
    Reported,
}

impl CommandError {
    /// A one-line error with its exit code.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: Message::Line(message.into()),
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    /// A local I/O error (exit 5).
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Io, message)
    }

    /// Text already rendered (diagnostics) with its exit code.
    pub fn rendered(code: ExitCode, text: String) -> Self {
        CommandError {
            code,
            message: Message::Rendered(text),
        }
    }

    /// A failure the command has already printed.
    pub fn reported(code: ExitCode) -> Self {
        CommandError {
            code,
            message: Message::Reported,
        }
    }

    /// Prints the message on stderr.
    pub fn print(&self) {
        match &self.message {
            Message::Line(line) => eprintln!("error: {}", flow_core::redact::secrets(line)),
            Message::Rendered(text) => eprint!("{}", flow_core::redact::secrets(text)),
            Message::Reported => {}
        }
    }
}

/// The result of a command.
pub type CommandResult = Result<(), CommandError>;
