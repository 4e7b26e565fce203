//! A study in the background, for the app's panels (what-if, schedule): a
//! job in; its history connection asked of the reader (by tag), a thread
//! of its own that runs it with the connection, and its result out on a
//! channel polled once a frame. The frame never waits for any of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, bounded};

use bevy::prelude::{Mut, Resource, World};

use super::Progress;
use crate::history::{History, ReadRequest, WorkerConnections};

/// Where a panel's background job is.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum JobState {
    #[default]
    Idle,
    /// Waiting for the history's connection.
    Starting,
    Running,
    Done,
    Failed(String),
}

/// One job at a time: waiting for its connection, or running.
pub struct Background<J, T> {
    /// The tag the history reader hands the connection back with.
    tag: u8,
    /// The running thread's name.
    thread: &'static str,
    waiting: Option<J>,
    results: Option<Receiver<Result<T, String>>>,
    cancel: Option<Arc<AtomicBool>>,
}

/// What a job's thread is given.
pub struct Run<J> {
    pub job: J,
    /// The history's own read connection (None without a history).
    pub conn: Option<duckdb::Connection>,
    pub progress: Arc<Progress>,
    pub cancel: Arc<AtomicBool>,
}

impl<J: Send + 'static, T: Send + 'static> Background<J, T> {
    pub fn new(tag: u8, thread: &'static str) -> Self {
        Self {
            tag,
            thread,
            waiting: None,
            results: None,
            cancel: None,
        }
    }

    /// Waiting for a connection or running.
    pub fn busy(&self) -> bool {
        self.waiting.is_some() || self.results.is_some()
    }

    /// Asks the history for a connection and keeps `job` until it comes;
    /// without a history, returns the job to run at once.
    pub fn ask(&mut self, history: Option<&History>, job: J) -> Option<J> {
        match history {
            Some(h) => {
                h.ask(ReadRequest::Connection { tag: self.tag });
                self.waiting = Some(job);
                None
            }
            None => Some(job),
        }
    }

    /// The waiting job with its connection once the reader handed it out
    /// (`Err`: the reader could not open one).
    pub fn take_connection(
        &mut self,
        conns: &mut WorkerConnections,
    ) -> Option<(J, Result<duckdb::Connection, String>)> {
        self.waiting.as_ref()?;
        let c = conns.take(self.tag)?;
        let job = self.waiting.take()?;
        Some((
            job,
            c.map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
                .map_err(|e| format!("the history: {e}")),
        ))
    }

    /// The waiting job with its connection, from the `Background` inside
    /// resource `R` (`get` picks it out).
    pub fn take_connection_in<R: Resource>(
        world: &mut World,
        get: fn(&mut R) -> &mut Self,
    ) -> Option<(J, Result<duckdb::Connection, String>)> {
        world.resource_scope(|world, mut r: Mut<R>| {
            let mut conns = world.resource_mut::<WorkerConnections>();
            get(&mut r).take_connection(&mut conns)
        })
    }

    /// Runs `work` on a thread of its own: `Running`, or `Failed` when the
    /// thread cannot start.
    pub fn spawn(
        &mut self,
        job: J,
        conn: Option<duckdb::Connection>,
        progress: Arc<Progress>,
        work: impl FnOnce(Run<J>) -> Result<T, String> + Send + 'static,
    ) -> JobState {
        match self.start_thread(job, conn, progress, work) {
            Ok(()) => JobState::Running,
            Err(e) => JobState::Failed(e),
        }
    }

    fn start_thread(
        &mut self,
        job: J,
        conn: Option<duckdb::Connection>,
        progress: Arc<Progress>,
        work: impl FnOnce(Run<J>) -> Result<T, String> + Send + 'static,
    ) -> Result<(), String> {
        let (tx, rx) = bounded(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let run = Run {
            job,
            conn,
            progress,
            cancel: cancel.clone(),
        };
        std::thread::Builder::new()
            .name(self.thread.into())
            .spawn(move || {
                let _ = tx.send(work(run));
            })
            .map_err(|e| format!("cannot start the study's thread: {e}"))?;
        self.results = Some(rx);
        self.cancel = Some(cancel);
        Ok(())
    }

    /// Stops a waiting job and asks a running one to stop.
    pub fn cancel(&mut self) {
        self.waiting = None;
        if let Some(c) = &self.cancel {
            c.store(true, Ordering::Relaxed);
        }
    }

    /// The result, once (None while running or idle).
    pub fn poll(&mut self) -> Option<Result<T, String>> {
        let r = self.results.as_ref()?.try_recv().ok()?;
        self.results = None;
        self.cancel = None;
        Some(r)
    }
}
