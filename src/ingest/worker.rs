//! A named thread with its own single-threaded tokio runtime, stopped through
//! a shared flag: how every adapter and simulator here runs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::IngestError;

/// A running worker; dropping it asks it to stop, `stop` also waits for it.
pub struct WorkerThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerThread {
    /// Run `body(stop_flag)` to completion on a thread called `name`.
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
            thread: Some(thread),
        })
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
