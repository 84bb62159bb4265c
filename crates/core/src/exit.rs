//! flow's process exit codes, in one place. Library errors say which code they map to; only the
//! `flow` binary turns a code into a process exit.

use serde::{Deserialize, Serialize};

/// The exit code of a `flow` command, as documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i32", try_from = "i32")]
pub enum ExitCode {
    /// 0: success.
    Ok,
    /// 1: a node failed.
    NodeFailed,
    /// 2: the recipe or the command line is wrong; nothing was fetched or written.
    Usage,
    /// 3: the input data cannot be processed (no valid pixels, an unreadable asset).
    BadData,
    /// 4: a remote service failed after retries.
    Remote,
    /// 5: local I/O or cache failure.
    Io,
    /// 6: a plugin failed to load or to run.
    Plugin,
    /// 130: interrupted (Ctrl-C).
    Interrupted,
}

impl ExitCode {
    /// Every code, in numeric order.
    pub const ALL: [ExitCode; 8] = [
        ExitCode::Ok,
        ExitCode::NodeFailed,
        ExitCode::Usage,
        ExitCode::BadData,
        ExitCode::Remote,
        ExitCode::Io,
        ExitCode::Plugin,
        ExitCode::Interrupted,
    ];

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::NodeFailed => 1,
            ExitCode::Usage => 2,
            ExitCode::BadData => 3,
            ExitCode::Remote => 4,
            ExitCode::Io => 5,
            ExitCode::Plugin => 6,
            ExitCode::Interrupted => 130,
        }
    }

    /// Whether a task that exited with this code may succeed when run again unchanged: true for
    /// [`Remote`](ExitCode::Remote) (4), [`Io`](ExitCode::Io) (5) and
    /// [`Interrupted`](ExitCode::Interrupted) (130), whose causes are outside the task (a service, a
    /// disk, a node being drained); false for codes that a rerun would repeat (1, 2, 3, 6) and for
    /// [`Ok`](ExitCode::Ok), which is not a failure. Executors derive their retry rules from this;
    /// a process killed by a signal exits with none of flow's codes and is retryable too.
    pub fn retryable(self) -> bool {
        match self {
            ExitCode::Remote | ExitCode::Io | ExitCode::Interrupted => true,
            ExitCode::Ok
            | ExitCode::NodeFailed
            | ExitCode::Usage
            | ExitCode::BadData
            | ExitCode::Plugin => false,
        }
    }

    /// The code with number `code`, if flow uses it.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        c.code()
    }
}

impl TryFrom<i32> for ExitCode {
    type Error = String;
    fn try_from(code: i32) -> Result<Self, String> {
        ExitCode::from_code(code).ok_or_else(|| format!("{code} is not one of flow's exit codes"))
    }
}

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for c in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(c.code()), Some(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), c.code().to_string());
        }
        assert_eq!(ExitCode::from_code(7), None);
    }

    #[test]
    fn remote_io_and_interrupts_are_retryable_the_rest_are_not() {
        let retryable: Vec<i32> = ExitCode::ALL
            .into_iter()
            .filter(|c| c.retryable())
            .map(ExitCode::code)
            .collect();
        assert_eq!(retryable, [4, 5, 130]);
        for code in [0, 1, 2, 3, 6] {
            let c = ExitCode::from_code(code).unwrap();
            assert!(!c.retryable(), "{code} must not be retryable");
        }
    }
}
