//! The run pool: models × replications in, outcomes out, on threads of its
//! own (cores − 1, at least one: Bevy's task pools and the frame keep the
//! last core). Jobs are taken in any order by any worker and merged by
//! index, so the results are identical for any number of threads.
//! Progress is counted per finished replication; cancel is an atomic flag
//! the engine checks every 1,024 events (well under 50 ms).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::engine::{Cancelled, Engine, Outcome, RunOptions};
use super::model::Model;
use super::scenario::Replications;
use super::stats::Estimate;

/// Progress of a study, shared with whoever watches it (a terminal bar,
/// the UI) and the way to cancel it.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    cancel: AtomicBool,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Finished replications and how many are planned so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
    pub fn percent(&self) -> f64 {
        let (d, t) = self.counts();
        if t == 0 {
            0.0
        } else {
            100.0 * d as f64 / t as f64
        }
    }
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    pub fn flag(&self) -> &AtomicBool {
        &self.cancel
    }
}

/// A baseline and its scenarios, to run with common random numbers.
#[derive(Debug, Clone)]
pub struct Study {
    pub baseline: Arc<Model>,
    pub scenarios: Vec<(String, Arc<Model>)>,
    pub seed: u64,
    pub replications: Replications,
    /// Keep replication 0's trace and operation ends.
    pub trace: bool,
}

/// Every outcome of a study: `runs[v][r]`, v = 0 the baseline.
#[derive(Debug, Clone)]
pub struct StudyResult {
    pub names: Vec<String>,
    pub models: Vec<Arc<Model>>,
    pub runs: Vec<Vec<Outcome>>,
    pub threads: usize,
    pub seed: u64,
}

/// A dedicated pool of worker threads.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    threads: usize,
}

impl Pool {
    pub fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
        }
    }
    /// Cores − 1, at least 1.
    pub fn default_size() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.saturating_sub(1).max(1))
    }
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs replications `reps` of each model; `out[m][r - reps.start]`.
    /// `trace`: replication 0 keeps its trace and operation ends.
    pub fn run(
        &self,
        models: &[Arc<Model>],
        reps: std::ops::Range<u32>,
        seed: u64,
        trace: bool,
        progress: &Progress,
    ) -> Result<Vec<Vec<Outcome>>, Cancelled> {
        self.run_with(models, reps, seed, progress, |r| RunOptions {
            record_trace: trace && r == 0,
            record_ops: trace && r == 0,
            max_events: None,
        })
    }

    /// As [`Pool::run`], with the options of each replication.
    pub fn run_with(
        &self,
        models: &[Arc<Model>],
        reps: std::ops::Range<u32>,
        seed: u64,
        progress: &Progress,
        options: impl Fn(u32) -> RunOptions + Sync,
    ) -> Result<Vec<Vec<Outcome>>, Cancelled> {
        let n_rep = (reps.end - reps.start) as usize;
        let total = models.len() * n_rep;
        progress.total.fetch_add(total as u64, Ordering::Relaxed);
        let slots: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; total]);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let work = || {
            loop {
                if progress.cancelled() {
                    failed.store(true, Ordering::Relaxed);
                    return;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    return;
                }
                let (m, r) = (k / n_rep, reps.start + (k % n_rep) as u32);
                let opts = options(r);
                let engine = Engine::new(models[m].clone(), seed, r, opts);
                match engine.run(Some(progress.flag())) {
                    Ok(o) => {
                        if let Ok(mut s) = slots.lock() {
                            s[k] = Some(o);
                        }
                        progress.done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Cancelled) => {
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        };
        let threads = self.threads.min(total.max(1));
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for i in 1..threads {
                let w = &work;
                match std::thread::Builder::new()
                    .name(format!("whatif-{i}"))
                    .spawn_scoped(scope, w)
                {
                    Ok(h) => handles.push(h),
                    // No thread: the others (and this one) do its share.
                    Err(e) => tracing_warn(&e),
                }
            }
            work();
            for h in handles {
                let _ = h.join();
            }
        });
        if failed.load(Ordering::Relaxed) || progress.cancelled() {
            return Err(Cancelled);
        }
        let slots = slots.into_inner().map_err(|_| Cancelled)?;
        let mut out: Vec<Vec<Outcome>> = (0..models.len())
            .map(|_| Vec::with_capacity(n_rep))
            .collect();
        for (k, o) in slots.into_iter().enumerate() {
            out[k / n_rep].push(o.ok_or(Cancelled)?);
        }
        Ok(out)
    }

    /// Runs a study: the baseline and every scenario with the same seeds.
    pub fn run_study(&self, study: &Study, progress: &Progress) -> Result<StudyResult, Cancelled> {
        let mut models = vec![study.baseline.clone()];
        models.extend(study.scenarios.iter().map(|(_, m)| m.clone()));
        let mut names = vec!["baseline".to_string()];
        names.extend(study.scenarios.iter().map(|(n, _)| n.clone()));
        let runs = match study.replications {
            Replications::Fixed(n) => self.run(&models, 0..n, study.seed, study.trace, progress)?,
            Replications::UntilHalfWidth { pct, max } => {
                const BATCH: u32 = 10;
                let mut runs: Vec<Vec<Outcome>> = vec![Vec::new(); models.len()];
                let mut done = 0;
                while done < max {
                    let n = BATCH.min(max - done);
                    let batch =
                        self.run(&models, done..done + n, study.seed, study.trace, progress)?;
                    for (v, b) in runs.iter_mut().zip(batch) {
                        v.extend(b);
                    }
                    done += n;
                    if precise_enough(&runs, pct) {
                        break;
                    }
                }
                runs
            }
        };
        Ok(StudyResult {
            names,
            models,
            runs,
            threads: self.threads,
            seed: study.seed,
        })
    }
}

/// Every scenario's throughput (or, for a single model, the baseline's
/// throughput) is known to within `pct` % of the baseline's.
fn precise_enough(runs: &[Vec<Outcome>], pct: f64) -> bool {
    let tp = |v: &Vec<Outcome>| {
        v.iter()
            .map(Outcome::throughput_per_h)
            .collect::<Vec<f64>>()
    };
    let base = tp(&runs[0]);
    let b = Estimate::of(base.iter().copied());
    if b.mean.is_nan() || b.mean <= 0.0 {
        return true;
    }
    let limit = b.mean * pct / 100.0;
    if runs.len() == 1 {
        return b.half_width <= limit;
    }
    runs[1..]
        .iter()
        .all(|v| Estimate::paired(&base, &tp(v)).half_width <= limit)
}

fn tracing_warn(e: &std::io::Error) {
    bevy::log::warn!("what-if: could not start a worker thread: {e}");
}
