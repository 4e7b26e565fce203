//! A named thread with its own single-threaded tokio runtime, stopped through
//! a shared flag: how every adapter and simulator here runs.
//!
//! A body that panics is not the end of the worker: it is reported through
//! the `on_failure` hook (an adapter shows its link down with the reason)
//! and started again on a fresh runtime after a back-off that doubles up to
//! [`MAX_BACKOFF`], so one bad message cannot silently end a data stream.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::IngestError;

/// First wait before a failed body runs again.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A running worker; dropping it asks it to stop, `stop` also waits for it.
pub struct WorkerThread {
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

/// The text of a panic payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl WorkerThread {
    /// Run `body(stop_flag)` once, to completion, on a thread called
    /// `name` (simulators and pollers: their failure is logged, not retried).
    pub fn spawn<F, Fut>(name: &str, what: &'static str, body: F) -> Result<Self, IngestError>
    where
        F: FnOnce(Arc<AtomicBool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(body(flag)),
                    Err(e) => bevy::log::error!("{thread_name}: cannot start its runtime: {e}"),
                }
            })
            .map_err(|source| IngestError::Thread { what, source })?;
        Ok(Self {
            stop,
            restarts: Arc::new(AtomicU32::new(0)),
            thread: Some(thread),
        })
    }

    /// Run `body(stop_flag)` on a thread called `name` until it returns; a
    /// panic calls `on_failure(reason)` and runs the body again on a fresh
    /// runtime after the back-off (the adapters).
    pub fn supervised<F, Fut, H>(
        name: &str,
        what: &'static str,
        on_failure: H,
        mut body: F,
    ) -> Result<Self, IngestError>
    where
        F: FnMut(Arc<AtomicBool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
        H: Fn(&str) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let restarts = Arc::new(AtomicU32::new(0));
        let (flag, count) = (stop.clone(), restarts.clone());
        let thread_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut backoff = FIRST_BACKOFF;
                loop {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            bevy::log::error!("{thread_name}: cannot start its runtime: {e}");
                            return;
                        }
                    };
                    let run = catch_unwind(AssertUnwindSafe(|| rt.block_on(body(flag.clone()))));
                    drop(rt);
                    let Err(panic) = run else {
                        return; // stopped, or nobody listens any more
                    };
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    let why = panic_text(panic.as_ref());
                    bevy::log::error!(
                        "{thread_name} failed ({why}); starting it again in {} ms",
                        backoff.as_millis()
                    );
                    on_failure(&why);
                    count.fetch_add(1, Ordering::Relaxed);
                    // Sleep the back-off in slices, so a stop is not delayed.
                    let mut left = backoff;
                    while !left.is_zero() && !flag.load(Ordering::Relaxed) {
                        let step = left.min(Duration::from_millis(50));
                        std::thread::sleep(step);
                        left -= step;
                    }
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            })
            .map_err(|source| IngestError::Thread { what, source })?;
        Ok(Self {
            stop,
            restarts,
            thread: Some(thread),
        })
    }

    /// How many times the body failed and was started again.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Ask the worker to stop and wait until it has.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    #[allow(clippy::panic)]
    fn a_body_that_panics_is_reported_and_started_again() {
        let runs = Arc::new(AtomicU32::new(0));
        let reasons = Arc::new(Mutex::new(Vec::<String>::new()));
        let (r, seen) = (runs.clone(), reasons.clone());
        let w = WorkerThread::supervised(
            "test-worker",
            "test worker",
            move |why| {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(why.into())
            },
            move |stop| {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        panic!("bad message number {n}");
                    }
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            },
        )
        .unwrap_or_else(|e| panic!("spawn: {e}"));
        let start = std::time::Instant::now();
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(start.elapsed() < Duration::from_secs(10), "never restarted");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(w.restarts(), 2);
        w.stop();
        assert_eq!(
            *reasons.lock().unwrap_or_else(|p| p.into_inner()),
            vec!["bad message number 0", "bad message number 1"]
        );
        // Stopped cleanly: the third run was not counted as a failure.
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
