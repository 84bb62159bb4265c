//! Progress while a recipe runs. On a terminal: an indicatif bar for the plan and one per running
//! node (a spinner until the node reports how much work it has, then a bar with throughput and
//! ETA). Otherwise: one plain line per finished node, which is what logs and tests read.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_core::{ProgressSink, Summary};
use flow_engine::{Event, NodeReport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::format_ms;

/// Progress of one run, fed by the engine's events and the nodes' [`ProgressSink`].
pub struct Progress {
    total: usize,
    done: Mutex<usize>,
    bars: Option<Bars>,
}

/// The bars drawn on a terminal.
struct Bars {
    multi: MultiProgress,
    plan: ProgressBar,
    nodes: Mutex<HashMap<String, ProgressBar>>,
}

fn node_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "  {prefix:<16} [{bar:28}] {pos}/{len} {per_sec:>9} ETA {eta:<4} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("  {spinner} {prefix:<16} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Progress {
    /// Progress for a plan of `total` nodes: bars when stderr is a terminal (and `NO_COLOR` /
    /// `FLOW_NO_PROGRESS` are unset), plain lines otherwise.
    pub fn new(total: usize) -> Arc<Self> {
        let tty = std::io::stderr().is_terminal()
            && std::env::var_os("FLOW_NO_PROGRESS").is_none()
            && std::env::var_os("NO_COLOR").is_none();
        let bars = tty.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let plan = multi.add(ProgressBar::new(total as u64));
            plan.set_style(
                ProgressStyle::with_template("[{pos:>2}/{len}] nodes {wide_bar} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Bars {
                multi,
                plan,
                nodes: Mutex::new(HashMap::new()),
            }
        });
        Arc::new(Progress {
            total,
            done: Mutex::new(0),
            bars,
        })
    }

    /// The sink that nodes report their progress to.
    pub fn sink(self: &Arc<Self>) -> ProgressSink {
        let me = Arc::clone(self);
        ProgressSink::new(move |id, done, total| me.node_progress(id, done, total))
    }

    fn node_progress(&self, id: &str, done: u64, total: u64) {
        let Some(bars) = &self.bars else { return };
        let nodes = bars.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = nodes.get(id) {
            if bar.length() != Some(total) {
                bar.set_style(node_style());
                bar.set_length(total);
                bar.disable_steady_tick();
            }
            bar.set_position(done);
        }
    }

    /// Handles one engine event.
    pub fn event(&self, event: &Event) {
        match event {
            Event::Begin { .. } => {}
            Event::Started { id, loading } => {
                if let Some(bars) = &self.bars {
                    let bar = bars.multi.add(ProgressBar::new_spinner());
                    bar.set_style(spinner_style());
                    bar.set_prefix(id.clone());
                    bar.set_message(if *loading { "loading" } else { "running" });
                    bar.enable_steady_tick(Duration::from_millis(120));
                    let mut nodes = bars.nodes.lock().unwrap_or_else(|e| e.into_inner());
                    nodes.insert(id.clone(), bar);
                }
            }
            Event::Finished(r) => {
                let n = {
                    let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
                    *done += 1;
                    *done
                };
                let mut lines = vec![self.finished_line(n, r)];
                lines.extend(r.warnings.iter().map(|w| format!("        warning: {w}")));
                match &self.bars {
                    Some(bars) => {
                        let mut nodes = bars.nodes.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(bar) = nodes.remove(&r.id) {
                            bar.finish_and_clear();
                            bars.multi.remove(&bar);
                        }
                        for line in lines {
                            let _ = bars.multi.println(line);
                        }
                        bars.plan.inc(1);
                    }
                    None => {
                        let mut err = std::io::stderr().lock();
                        for line in lines {
                            let _ = writeln!(err, "{line}");
                        }
                    }
                }
            }
            Event::Warning(w) => match &self.bars {
                Some(bars) => {
                    let _ = bars.multi.println(format!("warning: {w}"));
                }
                None => eprintln!("warning: {w}"),
            },
        }
    }

    fn finished_line(&self, n: usize, r: &NodeReport) -> String {
        format!(
            "[{:>2}/{}] {:<9} {:<16} {:>8}  {}",
            n,
            self.total,
            r.status.as_str(),
            r.id,
            format_ms(r.duration_ms),
            r.output.as_ref().map(Summary::short).unwrap_or_default()
        )
    }

    /// Removes the bars from the terminal (at the end of the run).
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            let nodes = bars.nodes.lock().unwrap_or_else(|e| e.into_inner());
            for bar in nodes.values() {
                bar.finish_and_clear();
            }
            bars.plan.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }
}
