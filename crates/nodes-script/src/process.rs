//! Running the script: a child process with a timeout, killed with the processes it started when
//! the timeout passes or the run is cancelled, and the ends of its stdout and stderr kept.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes kept of the end of each of the script's streams.
pub(crate) const TAIL_BYTES: usize = 16 * 1024;

/// How long the end of a stream is waited for after the script ended: processes it left behind
/// may still hold the pipe.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How a script run ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// It exited (or was killed by a signal of its own) with this status.
    Exited(ExitStatus),
    /// It ran past the timeout and was killed.
    TimedOut,
    /// The run was cancelled and it was killed.
    Cancelled,
}

/// A finished script run: how it ended and the ends of its streams.
#[derive(Debug)]
pub(crate) struct Finished {
    /// How it ended.
    pub(crate) ending: Ending,
    /// The end of its stdout (at most [`TAIL_BYTES`]).
    pub(crate) stdout: String,
    /// The end of its stderr (at most [`TAIL_BYTES`]).
    pub(crate) stderr: String,
}

/// The last [`TAIL_BYTES`] bytes of a stream, read to its end on a thread of its own.
fn drain(mut stream: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * TAIL_BYTES {
                        tail.drain(..tail.len() - TAIL_BYTES);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if tail.len() > TAIL_BYTES {
            tail.drain(..tail.len() - TAIL_BYTES);
        }
        let _ = tx.send(tail);
    });
    rx
}

/// The end of a stream as text: lossy UTF-8, starting at a line when it was cut.
fn tail_text(bytes: Vec<u8>, cut: bool) -> String {
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !cut {
        return text;
    }
    match text.find('\n') {
        Some(i) if i + 1 < text.len() => format!("...\n{}", &text[i + 1..]),
        _ => format!("...{text}"),
    }
}

/// Receives a drained stream's end, waiting at most until `deadline`.
fn receive(rx: &mpsc::Receiver<Vec<u8>>, deadline: Instant) -> Option<Vec<u8>> {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Starts `command` in a process group of its own (on Unix), with stdin closed and stdout and
/// stderr captured, and waits for it: at most `timeout`, and only while `cancelled()` is false.
/// Either of those kills the group (the script and every process it started that stayed in it).
///
/// # Errors
/// When the process cannot be started (a missing interpreter: [`std::io::ErrorKind::NotFound`])
/// or waited for.
pub(crate) fn run(
    command: &mut Command,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> std::io::Result<Finished> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command.spawn()?;
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    let ending = loop {
        if let Some(status) = child.try_wait()? {
            break Ending::Exited(status);
        }
        let over = started.elapsed() >= timeout;
        if over || cancelled() {
            kill_group(&mut child);
            let _ = child.wait();
            break if over {
                Ending::TimedOut
            } else {
                Ending::Cancelled
            };
        }
        std::thread::sleep(pause.min(timeout.saturating_sub(started.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    // Processes the script left running may hold its pipes open: wait a little for the ends of
    // its streams, then end what is left of its group, then give up on them.
    let deadline = Instant::now() + DRAIN_WAIT;
    let take = |rx: Option<mpsc::Receiver<Vec<u8>>>| -> Vec<u8> {
        let Some(rx) = rx else {
            return Vec::new();
        };
        receive(&rx, deadline).unwrap_or_else(|| {
            #[cfg(unix)]
            kill_pgid(child.id());
            receive(&rx, Instant::now() + Duration::from_secs(1)).unwrap_or_default()
        })
    };
    let stdout = take(out);
    let stderr = take(err);
    Ok(Finished {
        ending,
        stdout: tail_bytes_text(stdout),
        stderr: tail_bytes_text(stderr),
    })
}

/// A drained stream's end as text, marked as cut when it filled the tail.
fn tail_bytes_text(bytes: Vec<u8>) -> String {
    let cut = bytes.len() >= TAIL_BYTES;
    tail_text(bytes, cut)
}

/// Kills `child` and, on Unix, the process group it leads (the processes it started).
fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    kill_pgid(child.id());
    let _ = child.kill();
}

/// Sends SIGKILL to process group `pgid`.
#[cfg(unix)]
fn kill_pgid(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid names
    // the process group that the child leads (it was started with `process_group(0)`), so only
    // the script and the processes it started are signalled.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// The end of a stream for a message: its last `max` bytes at most, from a line start when cut.
pub(crate) fn last_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    match rest.find('\n') {
        Some(i) if i + 1 < rest.len() => format!("...\n{}", &rest[i + 1..]),
        _ => format!("...{rest}"),
    }
}

/// `exit status 2`, `killed by signal 9 (SIGKILL)`.
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    status.to_string()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn keeps_the_end_of_each_stream_and_the_status() {
        let f = run(
            &mut sh("echo out; i=0; while [ $i -lt 3000 ]; do echo line $i >&2; i=$((i+1)); done; exit 3"),
            Duration::from_secs(30),
            &|| false,
        )
        .unwrap();
        assert!(matches!(f.ending, Ending::Exited(s) if s.code() == Some(3)));
        assert_eq!(f.stdout, "out\n");
        assert!(f.stderr.starts_with("...\nline "), "{}", &f.stderr[..40]);
        assert!(f.stderr.ends_with("line 2999\n"));
        assert!(f.stderr.len() <= TAIL_BYTES + 4);
    }

    #[test]
    fn a_timeout_kills_the_script_and_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-lived");
        // A child in the background that would write the marker after 2 s, holding the pipes.
        let script = format!(
            "(sleep 2; touch {}) & echo started >&2; sleep 30",
            marker.display()
        );
        let t0 = Instant::now();
        let f = run(&mut sh(&script), Duration::from_millis(300), &|| false).unwrap();
        assert!(matches!(f.ending, Ending::TimedOut), "{f:?}");
        assert_eq!(f.stderr, "started\n");
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            !marker.exists(),
            "the background child outlived the timeout"
        );
    }

    #[test]
    fn cancelling_kills_the_script() {
        let t0 = Instant::now();
        let f = run(&mut sh("sleep 30"), Duration::from_secs(60), &|| {
            t0.elapsed() > Duration::from_millis(200)
        })
        .unwrap();
        assert!(matches!(f.ending, Ending::Cancelled), "{f:?}");
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let e = run(
            &mut Command::new("/nonexistent/interpreter"),
            Duration::from_secs(5),
            &|| false,
        )
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn messages_keep_the_last_lines() {
        assert_eq!(last_bytes("a\nb\nc", 10), "a\nb\nc");
        assert_eq!(last_bytes("first\nsecond\nthird", 9), "...\nthird");
        assert_eq!(last_bytes("ééé", 3), "...é");
    }
}
