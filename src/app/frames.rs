//! Frame timing of what-if in the window (`--whatif-bench-frames N` with
//! `--whatif FILE`): the frames while the study runs on its thread, then,
//! with the cursor in the study's future, N frames with two scenarios'
//! ghosts, N with none and N with the ghosts again, all in one run; the
//! table goes to the log and the app exits.

use std::time::Instant;

use bevy::prelude::*;

use crate::render::ghost::{GhostMode, GhostView, MAX_GHOSTS};
use crate::whatif::app::WhatIfView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    Waiting,
    Study,
    Settle(u32),
    Ghosts,
    None,
    GhostsAgain,
    Done,
}

/// Frame times per phase, ms.
#[derive(Resource, Default)]
pub struct FrameBench {
    pub frames_per_phase: u32,
    phase: Phase,
    last: Option<Instant>,
    study: Vec<f64>,
    ghosts: Vec<f64>,
    none: Vec<f64>,
    ghosts_again: Vec<f64>,
}

impl FrameBench {
    pub fn new(frames_per_phase: u32) -> Self {
        Self {
            frames_per_phase: frames_per_phase.max(10),
            ..default()
        }
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    let p99 = s[(s.len() * 99 / 100).min(s.len() - 1)];
    (1000.0 / mean.max(1e-9), mean, p99)
}

pub fn frame_bench(
    mut bench: ResMut<FrameBench>,
    view: Option<Res<WhatIfView>>,
    mut ghosts: ResMut<GhostView>,
    mut exit: MessageWriter<AppExit>,
) {
    let now = Instant::now();
    let dt_ms = bench
        .last
        .replace(now)
        .map(|t| now.duration_since(t).as_secs_f64() * 1e3);
    let n = bench.frames_per_phase as usize;
    let busy = view.as_ref().is_some_and(|v| v.busy());
    let done = view.as_ref().is_some_and(|v| v.outcome.is_some());
    let two_scenarios = {
        let mut e = [false; MAX_GHOSTS];
        e[1] = true;
        e[2] = true;
        e
    };
    match bench.phase {
        Phase::Waiting => {
            if busy {
                bench.phase = Phase::Study;
            }
        }
        Phase::Study => {
            if let Some(d) = dt_ms {
                bench.study.push(d);
            }
            if done && !busy {
                bench.phase = Phase::Settle(0);
            }
        }
        Phase::Settle(k) => {
            // The cursor moves to the future; pipelines compile.
            ghosts.mode = GhostMode::Overlay;
            ghosts.enabled = two_scenarios;
            bench.phase = if k > 60 {
                Phase::Ghosts
            } else {
                Phase::Settle(k + 1)
            };
        }
        Phase::Ghosts => {
            bench.ghosts.extend(dt_ms);
            if bench.ghosts.len() >= n {
                ghosts.enabled = [false; MAX_GHOSTS];
                bench.phase = Phase::None;
            }
        }
        Phase::None => {
            bench.none.extend(dt_ms);
            if bench.none.len() >= n {
                ghosts.enabled = two_scenarios;
                bench.phase = Phase::GhostsAgain;
            }
        }
        Phase::GhostsAgain => {
            bench.ghosts_again.extend(dt_ms);
            if bench.ghosts_again.len() >= n {
                bench.phase = Phase::Done;
                let mut table = String::from(
                    "\nframes of the what-if ghosts (one run):\n| phase | frames | fps | mean ms | p99 ms |\n|---|---|---|---|---|\n",
                );
                for (name, v) in [
                    ("study running (its thread)", &bench.study),
                    ("two scenarios' ghosts", &bench.ghosts),
                    ("no ghosts", &bench.none),
                    ("two scenarios' ghosts again", &bench.ghosts_again),
                ] {
                    let (fps, mean, p99) = stats(v);
                    table.push_str(&format!(
                        "| {name} | {} | {fps:.1} | {mean:.2} | {p99:.2} |\n",
                        v.len()
                    ));
                }
                let with: Vec<f64> = bench
                    .ghosts
                    .iter()
                    .chain(&bench.ghosts_again)
                    .copied()
                    .collect();
                let ratio = stats(&with).0 / stats(&bench.none).0.max(1e-9);
                table.push_str(&format!("frame rate with ghosts / without: {ratio:.2}\n"));
                info!("{table}");
                exit.write(AppExit::Success);
            }
        }
        Phase::Done => {}
    }
}
