//! Draws pull and push progress the way docker does: one line per blob, a bar while bytes move.
//! On a terminal the lines update in place; otherwise each state change prints one plain line.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;

use berth_client::progress::{Phase, Progress};
use berth_oci::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// docker's short ID: the first 12 hex digits.
pub fn short_id(digest: &Digest) -> String {
    digest.hex().chars().take(12).collect()
}

/// Progress on stdout (or stderr), with bars on a terminal.
pub struct LayerBars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<Digest, (ProgressBar, Phase)>>,
    on_stderr: bool,
}

impl LayerBars {
    /// On stderr when `on_stderr` (`berth run`, whose stdout is the container's).
    pub fn on(on_stderr: bool) -> Self {
        let (terminal, target) = if on_stderr {
            (
                std::io::stderr().is_terminal(),
                ProgressDrawTarget::stderr(),
            )
        } else {
            (
                std::io::stdout().is_terminal(),
                ProgressDrawTarget::stdout(),
            )
        };
        LayerBars {
            multi: terminal.then(|| MultiProgress::with_draw_target(target)),
            bars: Mutex::new(HashMap::new()),
            on_stderr,
        }
    }

    /// Leaves the final state of every bar on screen.
    pub fn finish(&self) {
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        for (bar, _) in bars.values() {
            bar.abandon();
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn text_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Progress for LayerBars {
    fn phase(&self, digest: &Digest, size: u64, phase: Phase) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let Some(multi) = &self.multi else {
            // Plain output: one line per change of state, repeats suppressed.
            let entry = bars
                .entry(digest.clone())
                .or_insert_with(|| (ProgressBar::hidden(), Phase::Waiting));
            if entry.1 != phase || matches!(phase, Phase::Retrying(_)) {
                if self.on_stderr {
                    eprintln!("{}: {}", short_id(digest), phase.label());
                } else {
                    println!("{}: {}", short_id(digest), phase.label());
                }
                entry.1 = phase;
            }
            return;
        };
        let (bar, current) = bars.entry(digest.clone()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(size));
            bar.set_prefix(short_id(digest));
            bar.set_style(text_style());
            (bar, Phase::Waiting)
        });
        let moving = matches!(phase, Phase::Downloading | Phase::Pushing);
        bar.set_style(if moving { bar_style() } else { text_style() });
        bar.set_message(phase.label());
        if phase.is_final() {
            bar.finish();
        }
        *current = phase;
    }

    fn bytes(&self, digest: &Digest, done: u64) {
        if self.multi.is_none() {
            return;
        }
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bar, _)) = bars.get(digest) {
            bar.set_position(done);
        }
    }
}
