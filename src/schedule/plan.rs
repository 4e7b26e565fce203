//! The plant's scheduling problem and its solver: machines with the times
//! they cannot work, orders with release and due dates, operations with
//! alternative machines and setups between product families in; a
//! [`Plan`] (machine, sequence and times of every operation) and its
//! [`Kpis`] out. Pure Rust, no Bevy.
//!
//! Times are seconds from the problem's origin (the fork's *now*). An
//! operation waits for its job's previous operation, its machine's
//! previous operation plus the setup between their families, its order's
//! release and its machine's return; it runs only in the machine's working
//! time (an off window — the shift calendar, planned downtime — suspends it
//! and it resumes after), and a machine's planned tool change interrupts
//! the sequence once its processing since the last change reaches the
//! interval. An operation already running at the fork stays first on its
//! machine.
//!
//! The search: list scheduling with three rules (ATC, EDD, most work
//! remaining), the best of them as the start; then tabu search over the
//! moves around the critical path of the objective's worst term (the
//! latest operation for the makespan, the order with the largest weighted
//! tardiness otherwise): swaps of neighbours in a block, moving an
//! operation to the front of its block, and moving it to another machine
//! that can run it. Deterministic for a seed and an iteration limit;
//! anytime with a time limit and a cancel flag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::ScheduleError;
use super::solver::{Move, NONE, Rng, apply, link};

/// What the schedule minimises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    Makespan,
    /// Σ weight × max(0, completion − due).
    WeightedTardiness,
    /// `tardiness` × Σ weighted tardiness + `makespan` × makespan.
    Mix {
        tardiness: f64,
        makespan: f64,
    },
}

impl Objective {
    /// `makespan`, `tardiness`, or `mix[:W]` (W the tardiness weight, 0–1,
    /// default 0.5; the makespan gets 1 − W).
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let bad = || {
            ScheduleError::Problem(format!(
                "objective {s:?}: expected makespan, tardiness or mix[:W] with W in 0..=1"
            ))
        };
        match s.trim() {
            "makespan" => Ok(Self::Makespan),
            "tardiness" | "weighted-tardiness" => Ok(Self::WeightedTardiness),
            "mix" => Ok(Self::Mix {
                tardiness: 0.5,
                makespan: 0.5,
            }),
            t => {
                let w: f64 = t
                    .strip_prefix("mix:")
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(bad)?;
                if !(0.0..=1.0).contains(&w) {
                    return Err(bad());
                }
                Ok(Self::Mix {
                    tardiness: w,
                    makespan: 1.0 - w,
                })
            }
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Makespan => "makespan".into(),
            Self::WeightedTardiness => "weighted tardiness".into(),
            Self::Mix {
                tardiness,
                makespan,
            } => format!("{tardiness:.2} × weighted tardiness + {makespan:.2} × makespan"),
        }
    }
}

/// A planned tool change: after `after_s` more seconds of processing, then
/// every `interval_s`, the machine stops for `duration_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolChange {
    pub after_s: f64,
    pub interval_s: f64,
    pub duration_s: f64,
}

/// A machine of the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub id: String,
    /// It can start nothing before this (a down machine's expected return).
    pub available_from_s: f64,
    /// Why it is not available at once, for the report.
    pub unavailable_because: Option<String>,
    /// Windows it does not work in, sorted, not overlapping.
    pub off_s: Vec<(f64, f64)>,
    pub setup_default_s: f64,
    /// Setup from family a to family b, s (overrides the default).
    pub setups: Vec<(u32, u32, f64)>,
    /// The family set up at the origin.
    pub initial_family: Option<u32>,
    pub tool_change: Option<ToolChange>,
}

impl Machine {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            available_from_s: 0.0,
            unavailable_because: None,
            off_s: Vec::new(),
            setup_default_s: 0.0,
            setups: Vec::new(),
            initial_family: None,
            tool_change: None,
        }
    }

    fn setup_s(&self, from: Option<u32>, to: u32) -> f64 {
        match from {
            Some(f) if f != to => self
                .setups
                .iter()
                .find(|(a, b, _)| *a == f && *b == to)
                .map_or(self.setup_default_s, |s| s.2),
            _ => 0.0,
        }
    }

    /// The first working moment at or after `t`.
    pub fn working_from(&self, mut t: f64) -> f64 {
        for &(a, b) in &self.off_s {
            if t >= a && t < b {
                t = b;
            }
        }
        t
    }

    /// When `work_s` of working time started at `t` ends.
    pub fn finish(&self, t: f64, work_s: f64) -> f64 {
        let mut t = self.working_from(t);
        let mut left = work_s;
        for &(a, b) in &self.off_s {
            if b <= t {
                continue;
            }
            if t + left <= a {
                break;
            }
            left -= (a - t).max(0.0);
            t = t.max(b);
        }
        t + left
    }
}

/// An order of the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub product: String,
    pub quantity: u32,
    pub family: u32,
    pub release_s: f64,
    pub due_s: Option<f64>,
    pub weight: f64,
    /// Its operations still to do, in routing order (indexes into `ops`).
    pub ops: Vec<usize>,
}

/// One operation still to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub job: usize,
    /// The routing step (0 = first).
    pub step: u32,
    /// (machine, processing time s) for each machine that can run it.
    pub alternatives: Vec<(usize, f64)>,
    /// Running at the origin: it stays first on its (only) machine.
    pub in_progress: bool,
}

/// The problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub origin_us: i64,
    pub machines: Vec<Machine>,
    pub jobs: Vec<Job>,
    pub ops: Vec<Op>,
    pub objective: Objective,
}

/// A schedule of the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub machine: Vec<usize>,
    pub sequence: Vec<Vec<usize>>,
    /// Processing start and end of each operation, s.
    pub start_s: Vec<f64>,
    pub end_s: Vec<f64>,
    /// Setup (and tool change) time before each operation, s.
    pub setup_s: Vec<f64>,
    pub kpis: Kpis,
}

/// What a plan achieves.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Kpis {
    pub makespan_s: f64,
    pub weighted_tardiness_s: f64,
    pub tardy_jobs: u32,
    pub objective: f64,
}

impl Problem {
    /// Checks the problem's shape: every operation has a machine, jobs
    /// hold their own operations, running operations have one machine.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let mut owner = vec![usize::MAX; self.ops.len()];
        for (j, job) in self.jobs.iter().enumerate() {
            for &o in &job.ops {
                if o >= self.ops.len() || owner[o] != usize::MAX || self.ops[o].job != j {
                    return Err(ScheduleError::Problem(format!(
                        "order {}: operation {o} is not its own",
                        job.id
                    )));
                }
                owner[o] = j;
            }
        }
        for (o, op) in self.ops.iter().enumerate() {
            let job = self.jobs.get(op.job).map_or("?", |j| j.id.as_str());
            if owner[o] == usize::MAX {
                return Err(ScheduleError::Problem(format!(
                    "operation {o} of order {job} belongs to no order's list"
                )));
            }
            if op.alternatives.is_empty()
                || op
                    .alternatives
                    .iter()
                    .any(|(m, d)| *m >= self.machines.len() || !d.is_finite() || *d < 0.0)
            {
                return Err(ScheduleError::Problem(format!(
                    "order {job}, step {}: no machine can run it, or a time is not a positive number",
                    op.step + 1
                )));
            }
            if op.in_progress && op.alternatives.len() != 1 {
                return Err(ScheduleError::Problem(format!(
                    "order {job}, step {}: running, so it has exactly one machine",
                    op.step + 1
                )));
            }
        }
        Ok(())
    }

    fn family(&self, o: usize) -> u32 {
        self.jobs[self.ops[o].job].family
    }

    fn duration(&self, o: usize, m: usize) -> Option<f64> {
        self.ops[o]
            .alternatives
            .iter()
            .find(|a| a.0 == m)
            .map(|a| a.1)
    }

    /// The problem's numbers for a job completing at `end`.
    fn tardiness(&self, j: usize, end: f64) -> f64 {
        let job = &self.jobs[j];
        job.due_s.map_or(0.0, |d| job.weight * (end - d).max(0.0))
    }

    fn objective_of(&self, k: &Kpis) -> f64 {
        match self.objective {
            Objective::Makespan => k.makespan_s,
            Objective::WeightedTardiness => k.weighted_tardiness_s,
            Objective::Mix {
                tardiness,
                makespan,
            } => tardiness * k.weighted_tardiness_s + makespan * k.makespan_s,
        }
    }
}

/// What bound an operation's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Free,
    Job,
    Machine,
}

/// Evaluates plans: buffers kept between calls.
pub struct Evaluator<'a> {
    p: &'a Problem,
    job_prev: Vec<usize>,
    job_next: Vec<usize>,
    mach_prev: Vec<usize>,
    mach_next: Vec<usize>,
    indeg: Vec<u8>,
    order: Vec<usize>,
    ready: Vec<f64>,
    bound: Vec<Bound>,
    start: Vec<f64>,
    end: Vec<f64>,
    setup: Vec<f64>,
    used: Vec<f64>,
    next_tool: Vec<f64>,
}

impl<'a> Evaluator<'a> {
    pub fn new(p: &'a Problem) -> Self {
        let n = p.ops.len();
        let (mut job_prev, mut job_next) = (vec![NONE; n], vec![NONE; n]);
        link(
            p.jobs.iter().map(|j| j.ops.as_slice()),
            &mut job_prev,
            &mut job_next,
        );
        Self {
            p,
            job_prev,
            job_next,
            mach_prev: vec![NONE; n],
            mach_next: vec![NONE; n],
            indeg: vec![0; n],
            order: Vec::with_capacity(n),
            ready: vec![0.0; n],
            bound: vec![Bound::Free; n],
            start: vec![0.0; n],
            end: vec![0.0; n],
            setup: vec![0.0; n],
            used: vec![0.0; p.machines.len()],
            next_tool: vec![0.0; p.machines.len()],
        }
    }

    /// The KPIs of (machine, sequence), or None when the sequences
    /// contradict the jobs' order, leave an operation out, put one on a
    /// machine that cannot run it, or put one before a running operation.
    pub fn eval(&mut self, machine: &[usize], seq: &[Vec<usize>]) -> Option<Kpis> {
        let p = self.p;
        let n = p.ops.len();
        let placed = link(
            seq.iter().map(Vec::as_slice),
            &mut self.mach_prev,
            &mut self.mach_next,
        );
        // A running operation cannot wait behind another.
        if placed != n
            || seq
                .iter()
                .any(|s| s.iter().skip(1).any(|&o| p.ops[o].in_progress))
        {
            return None;
        }
        for (o, &mi) in machine.iter().enumerate().take(n) {
            p.duration(o, mi)?;
            self.indeg[o] =
                u8::from(self.job_prev[o] != NONE) + u8::from(self.mach_prev[o] != NONE);
            let job = &p.jobs[p.ops[o].job];
            let m = &p.machines[mi];
            self.ready[o] = job.release_s.max(m.available_from_s).max(0.0);
            self.bound[o] = Bound::Free;
        }
        for (m, mach) in p.machines.iter().enumerate() {
            self.used[m] = 0.0;
            self.next_tool[m] = mach.tool_change.map_or(f64::INFINITY, |t| t.after_s);
        }
        self.order.clear();
        for o in 0..n {
            if self.indeg[o] == 0 {
                self.order.push(o);
            }
        }
        let mut i = 0;
        let mut k = Kpis::default();
        while i < self.order.len() {
            let o = self.order[i];
            i += 1;
            let mi = machine[o];
            let m = &p.machines[mi];
            let prev = self.mach_prev[o];
            let from = if prev == NONE {
                m.initial_family
            } else {
                Some(p.family(prev))
            };
            let mut setup = m.setup_s(from, p.family(o));
            if let Some(tc) = m.tool_change
                && self.used[mi] >= self.next_tool[mi]
            {
                setup += tc.duration_s;
                self.next_tool[mi] += tc.interval_s.max(1.0);
            }
            let d = p.duration(o, mi).unwrap_or(0.0);
            let begin = m.working_from(self.ready[o]);
            let start = if setup > 0.0 {
                m.working_from(m.finish(begin, setup))
            } else {
                begin
            };
            let end = m.finish(start, d);
            self.setup[o] = setup;
            self.start[o] = start;
            self.end[o] = end;
            self.used[mi] += d;
            k.makespan_s = k.makespan_s.max(end);
            let jn = self.job_next[o];
            if jn == NONE {
                let t = p.tardiness(p.ops[o].job, end);
                k.weighted_tardiness_s += t;
                k.tardy_jobs += u32::from(t > 0.0);
            }
            for (s, b) in [(jn, Bound::Job), (self.mach_next[o], Bound::Machine)] {
                if s != NONE {
                    if end > self.ready[s] {
                        self.ready[s] = end;
                        self.bound[s] = b;
                    }
                    self.indeg[s] -= 1;
                    if self.indeg[s] == 0 {
                        self.order.push(s);
                    }
                }
            }
        }
        if self.order.len() != n {
            return None;
        }
        k.objective = p.objective_of(&k);
        Some(k)
    }

    /// The plan of the last `eval`.
    fn plan(&self, machine: &[usize], seq: &[Vec<usize>], kpis: Kpis) -> Plan {
        Plan {
            machine: machine.to_vec(),
            sequence: seq.to_vec(),
            start_s: self.start.clone(),
            end_s: self.end.clone(),
            setup_s: self.setup.clone(),
            kpis,
        }
    }

    /// The operation the objective's worst term ends at (after `eval`).
    fn target(&self, rng: &mut Rng) -> Option<usize> {
        let p = self.p;
        let latest = || {
            (0..p.ops.len()).max_by(|&a, &b| self.end[a].total_cmp(&self.end[b]).then(b.cmp(&a)))
        };
        if p.objective == Objective::Makespan {
            return latest();
        }
        // The last operations of tardy jobs, one drawn by its weighted
        // tardiness (the worst most often).
        let tardy: Vec<(usize, f64)> = p
            .jobs
            .iter()
            .enumerate()
            .filter_map(|(j, job)| {
                let last = *job.ops.last()?;
                let t = p.tardiness(j, self.end[last]);
                (t > 0.0).then_some((last, t))
            })
            .collect();
        if tardy.is_empty() {
            return match p.objective {
                Objective::Mix { makespan, .. } if makespan > 0.0 => latest(),
                _ => None,
            };
        }
        let total: f64 = tardy.iter().map(|t| t.1).sum();
        let mut x = rng.unit() * total;
        for (o, t) in &tardy {
            x -= t;
            if x <= 0.0 {
                return Some(*o);
            }
        }
        tardy.last().map(|t| t.0)
    }

    /// The critical path into `o` (after `eval`), first operation first.
    fn path_to(&self, mut o: usize) -> Vec<usize> {
        let mut path = vec![o];
        loop {
            o = match self.bound[o] {
                Bound::Free => break,
                Bound::Job => self.job_prev[o],
                Bound::Machine => self.mach_prev[o],
            };
            if o == NONE {
                break;
            }
            path.push(o);
        }
        path.reverse();
        path
    }
}

/// The dispatching rules of the constructive start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Apparent tardiness cost (look-ahead 2).
    Atc,
    /// Earliest due date.
    Edd,
    /// Most work remaining.
    Mwkr,
}

/// List scheduling with `rule`: at each step the operations that could
/// start before the earliest possible finish compete (an active
/// schedule), the rule picks one, and it goes to the machine where it
/// finishes first.
pub fn construct(p: &Problem, rule: Rule) -> (Vec<usize>, Vec<Vec<usize>>) {
    let n = p.ops.len();
    let mut machine = vec![0; n];
    let mut seq = vec![Vec::new(); p.machines.len()];
    let mut next = vec![0usize; p.jobs.len()];
    let mut job_free: Vec<f64> = p.jobs.iter().map(|j| j.release_s.max(0.0)).collect();
    let mut mach_free: Vec<f64> = p.machines.iter().map(|m| m.available_from_s).collect();
    let mut last_family: Vec<Option<u32>> = p.machines.iter().map(|m| m.initial_family).collect();
    let min_d = |o: usize| {
        p.ops[o]
            .alternatives
            .iter()
            .map(|a| a.1)
            .fold(f64::INFINITY, f64::min)
    };
    let mut work_left: Vec<f64> = p
        .jobs
        .iter()
        .map(|j| j.ops.iter().map(|&o| min_d(o)).sum())
        .collect();
    let mean_d = p.ops.iter().map(min_d_of).sum::<f64>() / n.max(1) as f64;
    for _ in 0..n {
        // (job, machine, start, end) of every candidate.
        let mut cands: Vec<(usize, usize, f64, f64)> = Vec::new();
        for (j, job) in p.jobs.iter().enumerate() {
            let Some(&o) = job.ops.get(next[j]) else {
                continue;
            };
            for &(mi, d) in &p.ops[o].alternatives {
                // A running operation goes first on its machine.
                if p.ops[o].in_progress && !seq[mi].is_empty() {
                    continue;
                }
                let m = &p.machines[mi];
                let setup = m.setup_s(last_family[mi], job.family);
                let begin = m.working_from(job_free[j].max(mach_free[mi]));
                let start = m.working_from(m.finish(begin, setup));
                cands.push((j, mi, begin, m.finish(start, d)));
            }
        }
        // Running operations first, wherever they are.
        let running: Vec<&(usize, usize, f64, f64)> = cands
            .iter()
            .filter(|c| p.ops[p.jobs[c.0].ops[next[c.0]]].in_progress)
            .collect();
        let pick = if let Some(c) = running.first() {
            **c
        } else {
            let Some(t_star) = cands.iter().map(|c| c.3).min_by(f64::total_cmp) else {
                break;
            };
            let now = cands.iter().map(|c| c.2).fold(f64::INFINITY, f64::min);
            let key = |c: &(usize, usize, f64, f64)| -> f64 {
                let job = &p.jobs[c.0];
                match rule {
                    Rule::Edd => job.due_s.unwrap_or(f64::MAX / 4.0),
                    Rule::Mwkr => -work_left[c.0],
                    Rule::Atc => {
                        let d = (c.3 - c.2).max(1e-9);
                        let slack = job.due_s.map_or(1e12, |due| (due - d - now).max(0.0));
                        -(job.weight / d) * (-slack / (2.0 * mean_d.max(1e-9))).exp()
                    }
                }
            };
            let Some(c) = cands
                .iter()
                .filter(|c| c.2 < t_star)
                .min_by(|a, b| {
                    key(a)
                        .total_cmp(&key(b))
                        .then(a.3.total_cmp(&b.3))
                        .then(a.0.cmp(&b.0))
                        .then(a.1.cmp(&b.1))
                })
                .or_else(|| cands.iter().min_by(|a, b| a.3.total_cmp(&b.3)))
            else {
                break;
            };
            *c
        };
        let (j, mi, _, end) = pick;
        let o = p.jobs[j].ops[next[j]];
        machine[o] = mi;
        seq[mi].push(o);
        next[j] += 1;
        job_free[j] = end;
        mach_free[mi] = end;
        last_family[mi] = Some(p.jobs[j].family);
        work_left[j] -= min_d(o);
    }
    (machine, seq)
}

fn min_d_of(o: &Op) -> f64 {
    o.alternatives
        .iter()
        .map(|a| a.1)
        .fold(f64::INFINITY, f64::min)
}

/// How long to search.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    pub time_limit: Duration,
    pub max_iterations: Option<u64>,
    pub seed: u64,
}

/// What the search did.
#[derive(Debug, Clone)]
pub struct PlanReport {
    pub best: Plan,
    /// The rule the start came from, and its KPIs.
    pub start_rule: Rule,
    pub initial: Kpis,
    /// When the first schedule (the constructive start) was ready.
    pub first_schedule: Duration,
    pub iterations: u64,
    pub time_to_best: Duration,
    pub elapsed: Duration,
    pub stopped: &'static str,
}

/// What a move's reverse is tabu under: the pair it reorders, or the
/// operation and the machine it left.
fn reverse_key(machine: &[usize], seq: &[Vec<usize>], mv: Move) -> (usize, usize) {
    match mv {
        Move::Swap { m, i } => (seq[m][i + 1], seq[m][i]),
        Move::Insert { m, from, .. } => (seq[m][from], seq[m][from]),
        Move::Reassign { o, .. } => (o, (1 << 40) + machine[o]),
    }
}

/// What a move is tabu under (the reverse of an earlier one).
fn key_of(seq: &[Vec<usize>], mv: Move) -> (usize, usize) {
    match mv {
        Move::Swap { m, i } => (seq[m][i], seq[m][i + 1]),
        Move::Insert { m, from, .. } => (seq[m][from], seq[m][from]),
        Move::Reassign { o, m, .. } => (o, (1 << 40) + m),
    }
}

/// Schedules the problem.
pub fn solve(
    p: &Problem,
    opts: PlanOptions,
    cancel: Option<&AtomicBool>,
) -> Result<PlanReport, ScheduleError> {
    p.validate()?;
    let t0 = Instant::now();
    let mut ev = Evaluator::new(p);
    type Start = (Rule, Vec<usize>, Vec<Vec<usize>>, Kpis);
    let mut start: Option<Start> = None;
    for rule in [Rule::Atc, Rule::Edd, Rule::Mwkr] {
        let (m, s) = construct(p, rule);
        let Some(k) = ev.eval(&m, &s) else { continue };
        if start.as_ref().is_none_or(|b| k.objective < b.3.objective) {
            start = Some((rule, m, s, k));
        }
    }
    let Some((start_rule, mut machine, mut seq, initial)) = start else {
        return Err(ScheduleError::Problem(
            "no dispatching rule found a schedule (a running operation on a machine it cannot run on?)"
                .into(),
        ));
    };
    let first_schedule = t0.elapsed();
    let mut rng = Rng(opts.seed ^ 0xA11C_E5CE_D0CE_0001);
    let mut cur = initial;
    let mut best = (machine.clone(), seq.clone(), cur);
    let mut time_to_best = first_schedule;
    let mut tabu: HashMap<(usize, usize), u64> = HashMap::new();
    let n = p.ops.len().max(1);
    let stall = (n as u64 * 4).clamp(300, 3_000);
    let (mut iter, mut since_improve, mut restarts) = (0u64, 0u64, 0u64);
    let stopped;
    loop {
        if best.2.objective <= 0.0 && p.objective != Objective::Makespan {
            stopped = "no order is late";
            break;
        }
        if opts.max_iterations.is_some_and(|m| iter >= m) {
            stopped = "iteration limit";
            break;
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            stopped = "cancelled";
            break;
        }
        if opts.max_iterations.is_none() && t0.elapsed() >= opts.time_limit {
            stopped = "time limit";
            break;
        }
        iter += 1;
        since_improve += 1;
        if ev.eval(&machine, &seq).is_none() {
            stopped = "internal: the current schedule is not acyclic";
            break;
        }
        let Some(target) = ev.target(&mut rng) else {
            stopped = "nothing left to improve";
            break;
        };
        let path = ev.path_to(target);
        let pos = |seq: &[Vec<usize>], o: usize, m: usize| seq[m].iter().position(|&x| x == o);
        let mut moves: Vec<Move> = Vec::new();
        // Blocks: runs of the path on one machine, back to back.
        let mut s = 0;
        for k in 1..=path.len() {
            let cut = k == path.len()
                || machine[path[k]] != machine[path[s]]
                || ev.mach_prev[path[k]] != path[k - 1];
            if !cut {
                continue;
            }
            let block = &path[s..k];
            s = k;
            let m = machine[block[0]];
            let Some(front) = pos(&seq, block[0], m) else {
                continue;
            };
            for x in 1..block.len() {
                if p.ops[block[x - 1]].in_progress {
                    continue;
                }
                moves.push(Move::Swap {
                    m,
                    i: front + x - 1,
                });
                if x > 1 {
                    moves.push(Move::Insert {
                        m,
                        from: front + x,
                        to: front,
                    });
                }
            }
            // The operation before the block on its machine, swapped in.
            if front > 0 && !p.ops[seq[m][front - 1]].in_progress {
                moves.push(Move::Swap { m, i: front - 1 });
            }
        }
        for &o in &path {
            if p.ops[o].in_progress {
                continue;
            }
            for &(m, _) in &p.ops[o].alternatives {
                if m == machine[o] {
                    continue;
                }
                let h = ev.start[o];
                let at = seq[m]
                    .iter()
                    .position(|&x| ev.start[x] > h && !p.ops[x].in_progress)
                    .unwrap_or(seq[m].len());
                moves.push(Move::Reassign { o, m, p: at });
            }
        }
        // Large neighbourhoods: a sample, drawn per iteration.
        const MAX_MOVES: usize = 48;
        while moves.len() > MAX_MOVES {
            let i = rng.below(moves.len());
            moves.swap_remove(i);
        }
        let mut chosen: Option<(f64, Move)> = None;
        let mut fallback: Option<(u64, Move)> = None;
        for &mv in &moves {
            let (mut mm, mut ss) = (machine.clone(), seq.clone());
            let key = key_of(&seq, mv);
            apply(&mut mm, &mut ss, mv);
            let Some(k) = ev.eval(&mm, &ss) else { continue };
            let until = tabu.get(&key).copied().unwrap_or(0);
            if until > iter && k.objective >= best.2.objective {
                if fallback.is_none_or(|f| until < f.0) {
                    fallback = Some((until, mv));
                }
                continue;
            }
            if chosen.is_none_or(|c| k.objective < c.0) {
                chosen = Some((k.objective, mv));
            }
        }
        let mv = chosen.map(|c| c.1).or(fallback.map(|f| f.1));
        if mv.is_none() || since_improve >= stall {
            // Restart from the best with a few random swaps on its machines.
            machine.clone_from(&best.0);
            seq.clone_from(&best.1);
            tabu.clear();
            since_improve = 0;
            restarts += 1;
            for _ in 0..(2 + restarts % 8) {
                let m = rng.below(seq.len());
                if seq[m].len() < 2 {
                    continue;
                }
                let i = rng.below(seq[m].len() - 1);
                if p.ops[seq[m][i]].in_progress {
                    continue;
                }
                apply(&mut machine, &mut seq, Move::Swap { m, i });
                if ev.eval(&machine, &seq).is_none() {
                    apply(&mut machine, &mut seq, Move::Swap { m, i });
                }
            }
            cur = ev.eval(&machine, &seq).unwrap_or(best.2);
            if restarts > 200 && mv.is_none() {
                stopped = "nothing left to improve";
                break;
            }
            continue;
        }
        let Some(mv) = mv else { continue };
        let back = reverse_key(&machine, &seq, mv);
        apply(&mut machine, &mut seq, mv);
        tabu.insert(back, iter + 6 + rng.below(6) as u64 + n as u64 / 100);
        cur = ev.eval(&machine, &seq).unwrap_or(cur);
        if cur.objective < best.2.objective - 1e-9 {
            best = (machine.clone(), seq.clone(), cur);
            time_to_best = t0.elapsed();
            since_improve = 0;
            restarts = 0;
        }
    }
    let kpis = ev.eval(&best.0, &best.1).ok_or_else(|| {
        ScheduleError::Problem("internal: the best schedule is not acyclic".into())
    })?;
    Ok(PlanReport {
        best: ev.plan(&best.0, &best.1, kpis),
        start_rule,
        initial,
        first_schedule,
        iterations: iter,
        time_to_best,
        elapsed: t0.elapsed(),
        stopped,
    })
}

/// The plan that (machine, sequence) gives, if it is one.
pub fn evaluate(p: &Problem, machine: &[usize], seq: &[Vec<usize>]) -> Option<Plan> {
    let mut ev = Evaluator::new(p);
    let k = ev.eval(machine, seq)?;
    Some(ev.plan(machine, seq, k))
}

/// Why a plan is not feasible for the problem, if it is not: an operation
/// on a machine that cannot run it or with the wrong length, two
/// operations (with their setups) overlapping on a machine, an operation
/// before its job's previous one, its order's release or its machine's
/// return, processing inside an off window, a running operation not first.
pub fn check(p: &Problem, plan: &Plan) -> Option<String> {
    const EPS: f64 = 1e-6;
    let n = p.ops.len();
    for o in 0..n {
        let mi = plan.machine[o];
        let Some(d) = p.duration(o, mi) else {
            return Some(format!(
                "operation {o} on machine {mi}, which cannot run it"
            ));
        };
        let m = &p.machines[mi];
        // Working time inside [start, end] must be the processing time.
        let off: f64 = m
            .off_s
            .iter()
            .map(|&(a, b)| (b.min(plan.end_s[o]) - a.max(plan.start_s[o])).max(0.0))
            .sum();
        if (plan.end_s[o] - plan.start_s[o] - off - d).abs() > EPS * (1.0 + d) {
            return Some(format!(
                "operation {o} runs {:.3} s of working time, not its {d:.3} s",
                plan.end_s[o] - plan.start_s[o] - off
            ));
        }
        if m.off_s
            .iter()
            .any(|&(a, b)| plan.start_s[o] >= a && plan.start_s[o] < b - EPS)
        {
            return Some(format!("operation {o} starts in an off window of {}", m.id));
        }
        let job = &p.jobs[p.ops[o].job];
        let earliest = job.release_s.max(m.available_from_s).max(0.0) + plan.setup_s[o];
        if plan.start_s[o] + EPS < earliest {
            return Some(format!(
                "operation {o} of {} starts before its release, its machine's return or its setup",
                job.id
            ));
        }
    }
    for (mi, q) in plan.sequence.iter().enumerate() {
        for (i, &o) in q.iter().enumerate() {
            if plan.machine[o] != mi {
                return Some(format!(
                    "machine {mi}'s sequence holds operation {o}, assigned elsewhere"
                ));
            }
            if p.ops[o].in_progress && i > 0 {
                return Some(format!(
                    "running operation {o} is not first on {}",
                    p.machines[mi].id
                ));
            }
        }
        for w in q.windows(2) {
            if plan.end_s[w[0]] > plan.start_s[w[1]] - plan.setup_s[w[1]] + EPS {
                return Some(format!(
                    "operations {} and {} overlap on {}",
                    w[0], w[1], p.machines[mi].id
                ));
            }
        }
    }
    for j in &p.jobs {
        for w in j.ops.windows(2) {
            if plan.end_s[w[0]] > plan.start_s[w[1]] + EPS {
                return Some(format!(
                    "order {}: operation {} starts before {} ends",
                    j.id, w[1], w[0]
                ));
            }
        }
    }
    let placed: usize = plan.sequence.iter().map(Vec::len).sum();
    (placed != n).then(|| format!("{placed} operations placed of {n}"))
}
