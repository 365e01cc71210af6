//! Pull progress: a bar on a terminal, a plain line per layer milestone otherwise (CI logs, SkyPilot).
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

use crate::engine::PullProgress;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;

pub struct PullReporter {
    image: String,
    bar: Option<ProgressBar>,
    /// Bytes done and total per layer, summed for the bar.
    layers: HashMap<String, (u64, u64)>,
    last_status: HashMap<String, String>,
}

impl PullReporter {
    pub fn new(image: &str, terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(format!("pulling {image}"));
            bar
        });
        PullReporter {
            image: image.to_owned(),
            bar,
            layers: HashMap::new(),
            last_status: HashMap::new(),
        }
    }

    pub fn update(&mut self, p: PullProgress) {
        let layer = p.layer.clone().unwrap_or_default();
        if let Some(bar) = &self.bar {
            if let (Some(cur), Some(total)) = (p.current, p.total) {
                if p.status.starts_with("Downloading") {
                    self.layers.insert(
                        layer,
                        (
                            u64::try_from(cur).unwrap_or(0),
                            u64::try_from(total).unwrap_or(0),
                        ),
                    );
                    bar.set_length(self.layers.values().map(|l| l.1).sum());
                    bar.set_position(self.layers.values().map(|l| l.0).sum());
                }
            }
            return;
        }
        // Plain mode: only status changes ("Pulling fs layer", "Download complete", ...), not byte counts.
        if self.last_status.get(&layer) != Some(&p.status) {
            self.last_status.insert(layer.clone(), p.status.clone());
            if layer.is_empty() {
                tracing::info!("pulling {}: {}", self.image, p.status);
            } else {
                tracing::debug!("pulling {}: {layer}: {}", self.image, p.status);
            }
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
