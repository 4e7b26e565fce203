//! The event engine: a [`Model`], a seed and a replication number in; the
//! simulated plant over time and an [`Outcome`] out.
//!
//! Discrete events on one binary heap ordered by (time, sequence), so equal
//! times resolve in the order they were scheduled, deterministically. The
//! hot state is plain arrays indexed by station, server and job, allocated
//! once when the engine is built: handling an event allocates nothing
//! (generated jobs reuse freed slots; queues keep their capacity).
//!
//! Semantics, per station: jobs wait in the input buffer and are picked by
//! the station's dispatch rule; a job is set up (when the product family
//! changes) and processed unit by unit; stops (breakdowns, micro-stops,
//! external blocking or starving, tool changes) come after running time
//! drawn per mode and suspend the work in progress, which resumes where it
//! was (preemptive-resume); planned downtime and the shift calendar's off
//! time suspend it the same way. A finished job goes to the least loaded
//! machine of its next step if that buffer has room (a place is reserved
//! for the transport), else the machine holds it, blocked, until room
//! frees (blocking after service). Released orders wait in an order pool
//! in front of their first machine, which its buffer capacity does not
//! limit (the capacity is for what upstream machines pass on).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use super::model::{Model, Rule, StopKind};
use super::rng::{Purpose, Stream, entity_key};

/// No job, no order.
pub const NONE: u32 = u32::MAX;

/// What a simulated machine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimState {
    Running,
    Setup,
    /// No work (nothing in the buffer).
    Starved,
    /// Holding a finished job: the next buffer is full.
    Blocked,
    Down,
    MicroStop,
    /// Planned off: outside shifts, a break, planned downtime.
    Off,
}

impl SimState {
    pub const ALL: [SimState; 7] = [
        SimState::Running,
        SimState::Setup,
        SimState::Starved,
        SimState::Blocked,
        SimState::Down,
        SimState::MicroStop,
        SimState::Off,
    ];
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn label(self) -> &'static str {
        match self {
            SimState::Running => "running",
            SimState::Setup => "setup",
            SimState::Starved => "starved",
            SimState::Blocked => "blocked",
            SimState::Down => "down",
            SimState::MicroStop => "micro-stop",
            SimState::Off => "off",
        }
    }
    fn of_stop(k: StopKind) -> SimState {
        match k {
            StopKind::Down => SimState::Down,
            StopKind::MicroStop => SimState::MicroStop,
            StopKind::Setup => SimState::Setup,
            StopKind::Blocked => SimState::Blocked,
            StopKind::Starved => SimState::Starved,
        }
    }
}

/// Why a run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

#[derive(Debug, Clone, Copy)]
struct Ev {
    t: f64,
    seq: u64,
    kind: Kind,
    a: u32,
    b: u32,
}

impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    // Reversed: the heap pops the earliest (time, sequence).
    fn cmp(&self, o: &Self) -> Ordering {
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Arrival stream `a` generates an order.
    Arrival,
    /// Order job `a` is released.
    Release,
    /// Job `a` reaches station `b`'s buffer.
    Arrive,
    /// Server `a`'s setup or processing ends (valid for epoch `b`).
    Phase,
    /// Station `a` stops (valid for stop epoch `b`).
    Stop,
    /// Station `a`'s stop ends.
    StopEnd,
    /// Planned downtime starts on station `a` (`NONE`: the calendar, all).
    PlanStart,
    PlanEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Setup,
    Run,
    Blocked,
}

#[derive(Debug, Clone)]
struct Server {
    station: u32,
    job: u32,
    phase: Phase,
    done_at: f64,
    remaining: f64,
    /// Length of the current phase, s (for the share of it done).
    length: f64,
    /// Units this job's step processes here (fewer than the job's for an
    /// order already in process at the fork).
    units: u32,
    suspended: bool,
    epoch: u32,
    family: Option<u32>,
    /// Where a blocked job waits to go.
    dest: u32,
}

#[derive(Debug, Clone)]
struct Job {
    order: u32,
    product: u32,
    step: u32,
    units: u32,
    entered_s: f64,
    due_s: f64,
    weight: f64,
    queued_s: f64,
    counted: bool,
    in_system: bool,
    /// Waiting as a released order (in the order pool before its first
    /// machine), not in the machine's physical buffer.
    pooled: bool,
    /// The station it is at or travelling to.
    station: u32,
}

#[derive(Debug, Clone)]
struct StationRt {
    queue: Vec<u32>,
    /// Jobs in the queue that came from upstream (the buffer's content;
    /// released orders wait in the order pool and do not count).
    physical: u32,
    /// Places reserved for jobs on their way from upstream.
    reserved: u32,
    blocked: VecDeque<u32>,
    servers: std::ops::Range<u32>,
    stop: Option<StopKind>,
    stop_mode: u8,
    planned: u32,
    running: u32,
    run_clock: f64,
    clock_since: f64,
    mode_next: Vec<f64>,
    stop_epoch: u32,
    state: SimState,
    since: f64,
    time_in: [f64; 7],
    units_done: u64,
    jobs_done: u64,
    process: Stream,
    quality: Stream,
    between: Vec<Stream>,
    duration: Vec<Stream>,
}

/// One row of a trace: a machine changed state, or a job moved.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceRow {
    State {
        t_s: f64,
        station: u32,
        state: SimState,
    },
    /// A job entered a station's buffer (`queued`), started there
    /// (`started`), finished (`finished`) or left the plant (`done`).
    Job {
        t_s: f64,
        order: u32,
        job: u32,
        station: u32,
        what: &'static str,
    },
}

/// What one replication produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub replication: u32,
    pub horizon_s: f64,
    pub warmup_s: f64,
    pub events: u64,
    /// Per order of the model: completion time, s (NaN: not done by the horizon).
    pub order_done_s: Vec<f64>,
    pub order_good: Vec<u32>,
    /// Per station: seconds in each [`SimState`] (after the warm-up).
    pub time_in: Vec<[f64; 7]>,
    pub units_done: Vec<u64>,
    /// Units of the jobs in process at the end, by the share of their
    /// processing done (what a part counter would have counted of them).
    pub units_in_process: Vec<f64>,
    pub jobs_done: Vec<u64>,
    /// Jobs that arrived after the warm-up and completed.
    pub completed: u64,
    pub completed_units: u64,
    pub flow_sum_s: f64,
    pub wait_sum_s: f64,
    pub waits: u64,
    /// ∫ jobs in system dt over [warm-up, horizon].
    pub wip_area: f64,
    /// Σ over jobs of their time in system inside [warm-up, horizon],
    /// computed per job (equals `wip_area`: the bookkeeping check).
    pub wip_area_by_job: f64,
    /// Operation ends (order, step, station, time), when recorded.
    pub ops: Vec<(u32, u32, u32, f64)>,
    pub trace: Vec<TraceRow>,
}

impl Outcome {
    pub fn window_s(&self) -> f64 {
        self.horizon_s - self.warmup_s
    }
    /// Time-average jobs in the system.
    pub fn wip(&self) -> f64 {
        self.wip_area / self.window_s()
    }
    /// Completed jobs per hour.
    pub fn throughput_per_h(&self) -> f64 {
        self.completed as f64 / self.window_s() * 3600.0
    }
    pub fn mean_flow_s(&self) -> f64 {
        if self.completed == 0 {
            f64::NAN
        } else {
            self.flow_sum_s / self.completed as f64
        }
    }
    pub fn mean_wait_s(&self) -> f64 {
        if self.waits == 0 {
            0.0
        } else {
            self.wait_sum_s / self.waits as f64
        }
    }
    /// Little's law on this run: (L, λ·W, relative gap). The gap is small
    /// in a long run; in a short one, jobs in the system at its ends make it.
    pub fn little(&self) -> (f64, f64, f64) {
        let l = self.wip();
        let lw = self.completed as f64 / self.window_s() * self.mean_flow_s();
        let gap = if l > 0.0 && lw.is_finite() {
            (l - lw).abs() / l
        } else {
            0.0
        };
        (l, lw, gap)
    }
    /// Share of time station `s` works (running or in setup).
    pub fn utilisation(&self, s: usize) -> f64 {
        let t = &self.time_in[s];
        let total: f64 = t.iter().sum();
        if total <= 0.0 {
            0.0
        } else {
            (t[SimState::Running.index()] + t[SimState::Setup.index()]) / total
        }
    }
    /// A hash of everything this outcome says (bit-exact).
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |x: u64| {
            h ^= x;
            h = h.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(7);
        };
        eat(self.events);
        for v in &self.order_done_s {
            eat(v.to_bits());
        }
        for t in &self.time_in {
            for v in t {
                eat(v.to_bits());
            }
        }
        for v in &self.units_done {
            eat(*v);
        }
        eat(self.completed);
        eat(self.flow_sum_s.to_bits());
        eat(self.wip_area.to_bits());
        h
    }
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub record_trace: bool,
    pub record_ops: bool,
    /// Stop (as cancelled) after this many events: a bound for inputs
    /// nobody checked (the fuzzer's models).
    pub max_events: Option<u64>,
}

/// One replication of a model, stepped to a time or run to its horizon.
pub struct Engine {
    model: Arc<Model>,
    replication: u32,
    now: f64,
    seq: u64,
    events: u64,
    heap: BinaryHeap<Ev>,
    stations: Vec<StationRt>,
    servers: Vec<Server>,
    jobs: Vec<Job>,
    free: Vec<u32>,
    arrivals: Vec<(Stream, u64)>,
    wip: u32,
    wip_last: f64,
    out: Outcome,
    opts: RunOptions,
    /// Expected remaining work per (product, step), s (for CR and ATC).
    remaining_work: Vec<Vec<f64>>,
}

impl Engine {
    pub fn new(model: Arc<Model>, seed: u64, replication: u32, opts: RunOptions) -> Self {
        let m = &*model;
        let mut servers = Vec::new();
        let mut stations = Vec::with_capacity(m.stations.len());
        let expected_jobs = m.orders.len() + 64;
        for (si, st) in m.stations.iter().enumerate() {
            let key = entity_key(&st.id);
            let first = servers.len() as u32;
            for _ in 0..st.servers {
                servers.push(Server {
                    station: si as u32,
                    job: NONE,
                    phase: Phase::Idle,
                    done_at: 0.0,
                    remaining: 0.0,
                    length: 0.0,
                    units: 0,
                    suspended: false,
                    epoch: 0,
                    family: st.initial_family,
                    dest: NONE,
                });
            }
            let mut between: Vec<Stream> = (0..st.stops.len())
                .map(|k| Stream::new(seed, replication, key, Purpose::StopBetween(k as u8)))
                .collect();
            let mode_next = st
                .stops
                .iter()
                .zip(between.iter_mut())
                .map(|(mode, s)| mode.between.sample(s))
                .collect();
            stations.push(StationRt {
                queue: Vec::with_capacity(expected_jobs.min(4096)),
                physical: 0,
                reserved: 0,
                blocked: VecDeque::with_capacity(8),
                servers: first..servers.len() as u32,
                stop: None,
                stop_mode: u8::MAX,
                planned: 0,
                running: 0,
                run_clock: 0.0,
                clock_since: 0.0,
                mode_next,
                stop_epoch: 0,
                state: SimState::Starved,
                since: 0.0,
                time_in: [0.0; 7],
                units_done: 0,
                jobs_done: 0,
                process: Stream::new(seed, replication, key, Purpose::Process),
                quality: Stream::new(seed, replication, key, Purpose::Quality),
                between,
                duration: (0..st.stops.len())
                    .map(|k| Stream::new(seed, replication, key, Purpose::StopDuration(k as u8)))
                    .collect(),
            });
        }
        let remaining_work = m
            .products
            .iter()
            .map(|p| {
                let mut acc = 0.0;
                let mut v: Vec<f64> = p
                    .routing
                    .iter()
                    .rev()
                    .map(|st| {
                        acc += st.time.mean();
                        acc
                    })
                    .collect();
                v.reverse();
                v
            })
            .collect();
        let arrivals = m
            .arrivals
            .iter()
            .map(|a| {
                (
                    Stream::new(seed, replication, entity_key(&a.id), Purpose::Arrival),
                    0,
                )
            })
            .collect();
        let n_orders = m.orders.len();
        let n_st = m.stations.len();
        let mut e = Engine {
            replication,
            now: 0.0,
            seq: 0,
            events: 0,
            heap: BinaryHeap::with_capacity(4 * (n_orders + servers.len() + n_st) + 64),
            stations,
            servers,
            jobs: Vec::with_capacity(expected_jobs),
            free: Vec::with_capacity(64),
            arrivals,
            wip: 0,
            wip_last: 0.0,
            out: Outcome {
                replication,
                horizon_s: m.horizon_s,
                warmup_s: m.warmup_s,
                events: 0,
                order_done_s: vec![f64::NAN; n_orders],
                order_good: vec![0; n_orders],
                time_in: vec![[0.0; 7]; n_st],
                units_done: vec![0; n_st],
                units_in_process: vec![0.0; n_st],
                jobs_done: vec![0; n_st],
                completed: 0,
                completed_units: 0,
                flow_sum_s: 0.0,
                wait_sum_s: 0.0,
                waits: 0,
                wip_area: 0.0,
                wip_area_by_job: 0.0,
                ops: Vec::new(),
                trace: Vec::new(),
            },
            opts,
            remaining_work,
            model,
        };
        e.init();
        e
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    pub fn now_s(&self) -> f64 {
        self.now
    }
    pub fn events(&self) -> u64 {
        self.events
    }
    pub fn replication(&self) -> u32 {
        self.replication
    }

    fn push(&mut self, t: f64, kind: Kind, a: u32, b: u32) {
        self.seq += 1;
        self.heap.push(Ev {
            t,
            seq: self.seq,
            kind,
            a,
            b,
        });
    }

    fn init(&mut self) {
        let model = self.model.clone();
        for (si, st) in model.stations.iter().enumerate() {
            let s = si as u32;
            if let Some(stop) = &st.initial_stop {
                self.stations[si].stop = Some(stop.kind);
                self.push(stop.remaining_s.max(0.0), Kind::StopEnd, s, 0);
            }
            for &(a, b) in &st.downtime {
                if b > a && b > 0.0 {
                    self.push(a.max(0.0), Kind::PlanStart, s, 0);
                    self.push(b, Kind::PlanEnd, s, 0);
                }
            }
        }
        for &(a, b) in &model.off_shift {
            if b > a && b > 0.0 {
                self.push(a.max(0.0), Kind::PlanStart, NONE, 0);
                self.push(b, Kind::PlanEnd, NONE, 0);
            }
        }
        for (oi, o) in model.orders.iter().enumerate() {
            let j = self.new_job(oi as u32, o.product, o.quantity, o.due_s, o.weight);
            self.jobs[j as usize].step = o.step;
            if let Some((station, done)) = o.in_process {
                // Already on the machine: it goes on with the units left.
                let left = o.quantity.saturating_sub(done).max(1);
                self.enter_system(j, o.release_s.min(0.0));
                self.place_in_process(j, station, left);
            } else if o.release_s <= 0.0 {
                // In the buffer at the start: every rule sees all of them
                // before the first pick.
                self.enter_system(j, o.release_s);
                let s = self.pick_station(j);
                self.jobs[j as usize].station = s;
                self.jobs[j as usize].queued_s = 0.0;
                self.jobs[j as usize].pooled = true;
                self.stations[s as usize].queue.push(j);
            } else {
                self.push(o.release_s, Kind::Release, j, 0);
            }
        }
        for (ai, a) in model.arrivals.iter().enumerate() {
            let t = a.start_s.max(0.0);
            self.push(t, Kind::Arrival, ai as u32, 0);
        }
        for s in 0..self.stations.len() {
            self.try_start(s as u32);
            self.touch(s as u32);
        }
    }

    fn new_job(&mut self, order: u32, product: u32, units: u32, due: Option<f64>, w: f64) -> u32 {
        let job = Job {
            order,
            product,
            step: 0,
            units,
            entered_s: 0.0,
            due_s: due.unwrap_or(f64::INFINITY),
            weight: w,
            queued_s: 0.0,
            counted: false,
            in_system: false,
            pooled: false,
            station: NONE,
        };
        match self.free.pop() {
            Some(j) => {
                self.jobs[j as usize] = job;
                j
            }
            None => {
                self.jobs.push(job);
                (self.jobs.len() - 1) as u32
            }
        }
    }

    /// Adds the jobs-in-system area up to now.
    fn close_area(&mut self) {
        let t0 = self.wip_last.max(self.model.warmup_s);
        if self.now > t0 {
            self.out.wip_area += f64::from(self.wip) * (self.now - t0);
        }
        self.wip_last = self.now;
    }

    fn wip_change(&mut self, up: bool) {
        self.close_area();
        if up {
            self.wip += 1;
        } else {
            self.wip -= 1;
        }
    }

    fn enter_system(&mut self, j: u32, at: f64) {
        self.wip_change(true);
        let job = &mut self.jobs[j as usize];
        job.entered_s = at;
        job.in_system = true;
        job.counted = at >= self.model.warmup_s;
    }

    /// The least loaded machine that can run the job's current step.
    fn pick_station(&self, j: u32) -> u32 {
        let job = &self.jobs[j as usize];
        let step = &self.model.products[job.product as usize].routing[job.step as usize];
        if step.stations.len() == 1 {
            return step.stations[0];
        }
        // A planned machine, when the plan names one that can run the step.
        if let Some(&(s, _)) = self
            .model
            .orders
            .get(job.order as usize)
            .and_then(|o| o.plan.get(job.step as usize))
            && step.stations.contains(&s)
        {
            return s;
        }
        let mut best = step.stations[0];
        let mut best_load = u32::MAX;
        for &s in &step.stations {
            let st = &self.stations[s as usize];
            let busy = st
                .servers
                .clone()
                .filter(|&v| self.servers[v as usize].job != NONE)
                .count() as u32;
            let load = st.queue.len() as u32 + st.reserved + busy;
            if load < best_load {
                best = s;
                best_load = load;
            }
        }
        best
    }

    fn has_room(&self, s: u32) -> bool {
        let st = &self.stations[s as usize];
        match self.model.stations[s as usize].buffer_capacity {
            None => true,
            Some(cap) => (st.physical + st.reserved) < cap,
        }
    }

    /// Sends a job to station `s`'s buffer after `transport` seconds (a
    /// released order to its order pool, not taking a buffer place).
    fn route(&mut self, j: u32, s: u32, transport: f64, pooled: bool) {
        self.jobs[j as usize].pooled = pooled;
        if !pooled {
            self.stations[s as usize].reserved += 1;
        }
        self.jobs[j as usize].station = s;
        self.push(self.now + transport, Kind::Arrive, j, s);
    }

    fn place_in_process(&mut self, j: u32, s: u32, units: u32) {
        let Some(v) = self.stations[s as usize]
            .servers
            .clone()
            .find(|&v| self.servers[v as usize].job == NONE)
        else {
            // More jobs in process than servers: queue it first.
            self.stations[s as usize].queue.insert(0, j);
            self.jobs[j as usize].station = s;
            self.jobs[j as usize].pooled = true;
            return;
        };
        let family = self.model.products[self.jobs[j as usize].product as usize].family;
        self.jobs[j as usize].station = s;
        self.servers[v as usize].job = j;
        self.servers[v as usize].family = Some(family);
        self.servers[v as usize].units = units;
        let work = self.draw_work(j, s, units);
        self.start_phase(v, Phase::Run, work);
    }

    fn can_work(&self, s: u32) -> bool {
        let st = &self.stations[s as usize];
        st.stop.is_none() && st.planned == 0
    }

    fn advance_clock(&mut self, s: u32) {
        let now = self.now;
        let st = &mut self.stations[s as usize];
        if st.running > 0 {
            st.run_clock += now - st.clock_since;
        }
        st.clock_since = now;
    }

    /// Schedules the station's next stop on its running clock.
    fn reschedule_stop(&mut self, s: u32) {
        let st = &mut self.stations[s as usize];
        st.stop_epoch = st.stop_epoch.wrapping_add(1);
        if st.running == 0 || st.stop.is_some() || st.mode_next.is_empty() {
            return;
        }
        let (mut k, mut next) = (0usize, f64::INFINITY);
        for (i, &v) in st.mode_next.iter().enumerate() {
            if v < next {
                (k, next) = (i, v);
            }
        }
        st.stop_mode = k as u8;
        let t = self.now + (next - st.run_clock).max(0.0);
        let epoch = st.stop_epoch;
        self.push(t, Kind::Stop, s, epoch);
    }

    fn draw_work(&mut self, j: u32, s: u32, units: u32) -> f64 {
        let job = &self.jobs[j as usize];
        let step = &self.model.products[job.product as usize].routing[job.step as usize];
        let mst = &self.model.stations[s as usize];
        let st = &mut self.stations[s as usize];
        let mut w = 0.0;
        for _ in 0..units {
            w += step.time.sample(&mut st.process);
            if mst.rework_rate > 0.0 && st.quality.chance(mst.rework_rate) {
                w += step.time.sample(&mut st.process);
            }
        }
        w * mst.time_factor
    }

    fn start_phase(&mut self, v: u32, phase: Phase, dur: f64) {
        let s = self.servers[v as usize].station;
        let working = self.can_work(s);
        if phase == Phase::Run && working {
            self.advance_clock(s);
            self.stations[s as usize].running += 1;
        }
        let now = self.now;
        let sv = &mut self.servers[v as usize];
        sv.phase = phase;
        sv.length = dur;
        sv.epoch = sv.epoch.wrapping_add(1);
        if working {
            sv.suspended = false;
            sv.done_at = now + dur;
            let (t, ep) = (sv.done_at, sv.epoch);
            self.push(t, Kind::Phase, v, ep);
        } else {
            sv.suspended = true;
            sv.remaining = dur;
        }
        if phase == Phase::Run && working {
            self.reschedule_stop(s);
        }
        if phase == Phase::Run && self.opts.record_trace {
            let job = self.servers[v as usize].job;
            self.trace_job(job, s, "started");
        }
    }

    fn trace_job(&mut self, j: u32, s: u32, what: &'static str) {
        let order = self.jobs[j as usize].order;
        self.out.trace.push(TraceRow::Job {
            t_s: self.now,
            order,
            job: j,
            station: s,
            what,
        });
    }

    /// Starts jobs on idle servers while the station can work.
    fn try_start(&mut self, s: u32) {
        loop {
            if !self.can_work(s) || self.stations[s as usize].queue.is_empty() {
                return;
            }
            let Some(v) = self.stations[s as usize]
                .servers
                .clone()
                .find(|&v| self.servers[v as usize].job == NONE)
            else {
                return;
            };
            let qi = self.choose(s);
            let j = self.stations[s as usize].queue.remove(qi);
            if !self.jobs[j as usize].pooled {
                self.stations[s as usize].physical -= 1;
            }
            let (counted, queued_s) = {
                let job = &self.jobs[j as usize];
                (job.counted, job.queued_s)
            };
            if counted {
                self.out.wait_sum_s += self.now - queued_s;
                self.out.waits += 1;
            }
            let family = self.model.products[self.jobs[j as usize].product as usize].family;
            let setup =
                self.model.stations[s as usize].setup_s(self.servers[v as usize].family, family);
            self.servers[v as usize].job = j;
            self.servers[v as usize].family = Some(family);
            self.servers[v as usize].units = self.jobs[j as usize].units;
            if setup > 0.0 {
                self.start_phase(v, Phase::Setup, setup);
            } else {
                let units = self.jobs[j as usize].units;
                let w = self.draw_work(j, s, units);
                self.start_phase(v, Phase::Run, w);
            }
            self.release_blocked(s);
        }
    }

    /// The queue position the station's rule picks.
    fn choose(&self, s: u32) -> usize {
        let st = &self.stations[s as usize];
        let rule = self.model.stations[s as usize].rule;
        if rule == Rule::Fifo || st.queue.len() == 1 {
            return 0;
        }
        let p_of = |j: u32| {
            let job = &self.jobs[j as usize];
            self.model
                .expected_time_s(job.product, job.step, s, job.units)
        };
        let p_bar = if rule == Rule::Atc {
            st.queue.iter().map(|&j| p_of(j)).sum::<f64>() / st.queue.len() as f64
        } else {
            0.0
        };
        let mut best = 0;
        let mut best_key = f64::INFINITY;
        for (i, &j) in st.queue.iter().enumerate() {
            let job = &self.jobs[j as usize];
            let key = match rule {
                Rule::Fifo => i as f64,
                Rule::Edd => job.due_s,
                Rule::Spt => p_of(j),
                Rule::Cr => {
                    let rem = self.remaining_work[job.product as usize][job.step as usize]
                        * f64::from(job.units);
                    if job.due_s.is_finite() {
                        (job.due_s - self.now) / rem.max(1e-9)
                    } else {
                        f64::INFINITY
                    }
                }
                Rule::Atc => {
                    let p = p_of(j).max(1e-9);
                    let slack = if job.due_s.is_finite() {
                        (job.due_s - p - self.now).max(0.0)
                    } else {
                        1e12
                    };
                    -(job.weight / p) * (-slack / (2.0 * p_bar.max(1e-9))).exp()
                }
                Rule::Planned => self
                    .model
                    .orders
                    .get(job.order as usize)
                    .and_then(|o| o.plan.get(job.step as usize))
                    .map_or(f64::MAX, |p| p.1),
            };
            if key < best_key {
                best = i;
                best_key = key;
            }
        }
        best
    }

    /// Lets blocked machines upstream pass their jobs on while there is room.
    fn release_blocked(&mut self, s: u32) {
        while self.has_room(s) {
            let Some(v) = self.stations[s as usize].blocked.pop_front() else {
                return;
            };
            let j = self.servers[v as usize].job;
            let up = self.servers[v as usize].station;
            let transport = self.transport_from(j);
            self.servers[v as usize].job = NONE;
            self.servers[v as usize].phase = Phase::Idle;
            self.servers[v as usize].dest = NONE;
            self.route(j, s, transport, false);
            self.try_start(up);
            self.touch(up);
        }
    }

    /// Transport time after the job's previous step.
    fn transport_from(&self, j: u32) -> f64 {
        let job = &self.jobs[j as usize];
        match job.step.checked_sub(1) {
            Some(prev) => {
                self.model.products[job.product as usize].routing[prev as usize].transport_s
            }
            None => 0.0,
        }
    }

    fn state_of(&self, s: u32) -> SimState {
        let st = &self.stations[s as usize];
        if let Some(k) = st.stop {
            return SimState::of_stop(k);
        }
        if st.planned > 0 {
            return SimState::Off;
        }
        let mut out = SimState::Starved;
        for v in st.servers.clone() {
            match self.servers[v as usize].phase {
                Phase::Run => return SimState::Running,
                Phase::Setup => out = SimState::Setup,
                Phase::Blocked if out == SimState::Starved => out = SimState::Blocked,
                _ => {}
            }
        }
        out
    }

    /// Accounts the time in the station's current state and takes its new one.
    fn touch(&mut self, s: u32) {
        let new = self.state_of(s);
        let warm = self.model.warmup_s;
        let now = self.now;
        let st = &mut self.stations[s as usize];
        if new == st.state {
            return;
        }
        let from = st.since.max(warm);
        if now > from {
            st.time_in[st.state.index()] += now - from;
        }
        st.state = new;
        st.since = now;
        if self.opts.record_trace {
            self.out.trace.push(TraceRow::State {
                t_s: now,
                station: s,
                state: new,
            });
        }
    }

    fn suspend(&mut self, s: u32) {
        self.advance_clock(s);
        let now = self.now;
        for v in self.stations[s as usize].servers.clone() {
            let sv = &mut self.servers[v as usize];
            if matches!(sv.phase, Phase::Setup | Phase::Run) && !sv.suspended {
                sv.remaining = (sv.done_at - now).max(0.0);
                sv.suspended = true;
                sv.epoch = sv.epoch.wrapping_add(1);
            }
        }
        self.stations[s as usize].running = 0;
        self.reschedule_stop(s);
    }

    fn resume(&mut self, s: u32) {
        if !self.can_work(s) {
            return;
        }
        self.advance_clock(s);
        let now = self.now;
        let mut running = 0;
        for v in self.stations[s as usize].servers.clone() {
            let sv = &mut self.servers[v as usize];
            if sv.suspended {
                sv.suspended = false;
                sv.epoch = sv.epoch.wrapping_add(1);
                sv.done_at = now + sv.remaining;
                let (t, ep) = (sv.done_at, sv.epoch);
                self.push(t, Kind::Phase, v, ep);
            }
            if self.servers[v as usize].phase == Phase::Run {
                running += 1;
            }
        }
        self.stations[s as usize].running = running;
        self.reschedule_stop(s);
        self.try_start(s);
    }

    fn finish(&mut self, v: u32) {
        let s = self.servers[v as usize].station;
        let j = self.servers[v as usize].job;
        self.advance_clock(s);
        self.stations[s as usize].running -= 1;
        let mst = &self.model.stations[s as usize];
        let units = self.servers[v as usize].units;
        let scrap = {
            let st = &mut self.stations[s as usize];
            let mut scrap = 0;
            if mst.scrap_rate > 0.0 {
                for _ in 0..units {
                    if st.quality.chance(mst.scrap_rate) {
                        scrap += 1;
                    }
                }
            }
            scrap
        };
        if self.now >= self.model.warmup_s {
            self.stations[s as usize].units_done += u64::from(units);
            self.stations[s as usize].jobs_done += 1;
        }
        let job = &mut self.jobs[j as usize];
        job.units -= scrap;
        let (order, step) = (job.order, job.step);
        job.step += 1;
        if self.opts.record_ops && order != NONE {
            self.out.ops.push((order, step, s, self.now));
        }
        if self.opts.record_trace {
            self.trace_job(j, s, "finished");
        }
        let job = &self.jobs[j as usize];
        let routing_len = self.model.products[job.product as usize].routing.len() as u32;
        if job.units == 0 || job.step >= routing_len {
            self.complete(j);
            let sv = &mut self.servers[v as usize];
            sv.job = NONE;
            sv.phase = Phase::Idle;
        } else {
            let d = self.pick_station(j);
            if self.has_room(d) {
                let transport = self.transport_from(j);
                let sv = &mut self.servers[v as usize];
                sv.job = NONE;
                sv.phase = Phase::Idle;
                self.route(j, d, transport, false);
            } else {
                let sv = &mut self.servers[v as usize];
                sv.phase = Phase::Blocked;
                sv.dest = d;
                self.stations[d as usize].blocked.push_back(v);
            }
        }
        self.reschedule_stop(s);
        self.try_start(s);
        self.touch(s);
    }

    fn complete(&mut self, j: u32) {
        self.wip_change(false);
        let warm = self.model.warmup_s;
        let now = self.now;
        self.jobs[j as usize].in_system = false;
        let job = self.jobs[j as usize].clone();
        self.out.wip_area_by_job += (now - job.entered_s.max(warm)).max(0.0);
        if job.counted {
            self.out.completed += 1;
            self.out.completed_units += u64::from(job.units);
            self.out.flow_sum_s += now - job.entered_s;
        }
        if job.order != NONE {
            self.out.order_done_s[job.order as usize] = now;
            self.out.order_good[job.order as usize] = job.units;
        } else {
            self.free.push(j);
        }
        if self.opts.record_trace {
            self.trace_job(j, NONE, "done");
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev.kind {
            Kind::Arrival => {
                let ai = ev.a as usize;
                let model = self.model.clone();
                let a = &model.arrivals[ai];
                let due = a.due_after_s.map(|d| self.now + d);
                let j = self.new_job(NONE, a.product, a.quantity, due, 1.0);
                self.enter_system(j, self.now);
                let s = self.pick_station(j);
                self.route(j, s, 0.0, true);
                let (stream, n) = &mut self.arrivals[ai];
                *n += 1;
                if a.limit.is_none_or(|l| *n < l) {
                    let dt = a.interarrival.sample(stream);
                    self.push(self.now + dt, Kind::Arrival, ev.a, 0);
                }
            }
            Kind::Release => {
                self.enter_system(ev.a, self.now);
                let s = self.pick_station(ev.a);
                self.route(ev.a, s, 0.0, true);
            }
            Kind::Arrive => {
                let (j, s) = (ev.a, ev.b);
                let st = &mut self.stations[s as usize];
                if !self.jobs[j as usize].pooled {
                    st.reserved -= 1;
                    st.physical += 1;
                }
                st.queue.push(j);
                self.jobs[j as usize].queued_s = self.now;
                if self.opts.record_trace {
                    self.trace_job(j, s, "queued");
                }
                self.try_start(s);
                self.touch(s);
            }
            Kind::Phase => {
                let v = ev.a;
                if self.servers[v as usize].epoch != ev.b {
                    return;
                }
                let s = self.servers[v as usize].station;
                match self.servers[v as usize].phase {
                    Phase::Setup => {
                        let j = self.servers[v as usize].job;
                        let units = self.jobs[j as usize].units;
                        let w = self.draw_work(j, s, units);
                        self.start_phase(v, Phase::Run, w);
                        self.touch(s);
                    }
                    Phase::Run => self.finish(v),
                    _ => {}
                }
            }
            Kind::Stop => {
                let s = ev.a;
                if self.stations[s as usize].stop_epoch != ev.b {
                    return;
                }
                self.suspend(s);
                let k = self.stations[s as usize].stop_mode as usize;
                let model = self.model.clone();
                let mode = &model.stations[s as usize].stops[k];
                let st = &mut self.stations[s as usize];
                st.stop = Some(mode.kind);
                let dur = mode.duration.sample(&mut st.duration[k]);
                let next = st.run_clock + mode.between.sample(&mut st.between[k]);
                st.mode_next[k] = next;
                self.push(self.now + dur, Kind::StopEnd, s, 0);
                self.touch(s);
            }
            Kind::StopEnd => {
                let s = ev.a;
                self.stations[s as usize].stop = None;
                self.resume(s);
                self.touch(s);
            }
            Kind::PlanStart | Kind::PlanEnd => {
                let all = ev.a == NONE;
                let range = if all {
                    0..self.stations.len() as u32
                } else {
                    ev.a..ev.a + 1
                };
                for s in range {
                    if all && !self.model.stations[s as usize].follows_calendar {
                        continue;
                    }
                    if ev.kind == Kind::PlanStart {
                        self.stations[s as usize].planned += 1;
                        if self.stations[s as usize].planned == 1
                            && self.stations[s as usize].stop.is_none()
                        {
                            self.suspend(s);
                        }
                    } else {
                        let st = &mut self.stations[s as usize];
                        st.planned = st.planned.saturating_sub(1);
                        if st.planned == 0 {
                            self.resume(s);
                        }
                    }
                    self.touch(s);
                }
            }
        }
    }

    /// Runs events up to `t_s` (or the horizon, if earlier). Checks `cancel`
    /// every 1,024 events.
    pub fn run_until(&mut self, t_s: f64, cancel: Option<&AtomicBool>) -> Result<(), Cancelled> {
        let end = t_s.min(self.model.horizon_s);
        while let Some(ev) = self.heap.peek() {
            if ev.t > end {
                break;
            }
            let ev = *ev;
            self.heap.pop();
            self.now = ev.t;
            self.events += 1;
            self.handle(ev);
            if self.events & 1023 == 0
                && (cancel.is_some_and(|c| c.load(AtomicOrdering::Relaxed))
                    || self.opts.max_events.is_some_and(|m| self.events >= m))
            {
                return Err(Cancelled);
            }
        }
        self.now = self.now.max(end);
        Ok(())
    }

    /// Runs to the horizon and returns the outcome.
    pub fn run(mut self, cancel: Option<&AtomicBool>) -> Result<Outcome, Cancelled> {
        self.run_until(self.model.horizon_s, cancel)?;
        Ok(self.finish_outcome())
    }

    /// Closes the accounts at the present time.
    pub fn finish_outcome(mut self) -> Outcome {
        for s in 0..self.stations.len() as u32 {
            let warm = self.model.warmup_s;
            let st = &mut self.stations[s as usize];
            let from = st.since.max(warm);
            if self.now > from {
                st.time_in[st.state.index()] += self.now - from;
            }
            st.since = self.now;
            self.out.time_in[s as usize] = st.time_in;
            self.out.units_done[s as usize] = st.units_done;
            self.out.jobs_done[s as usize] = st.jobs_done;
            for v in st.servers.clone() {
                let sv = &self.servers[v as usize];
                if sv.phase == Phase::Run && sv.length > 0.0 {
                    let left = if sv.suspended {
                        sv.remaining
                    } else {
                        (sv.done_at - self.now).max(0.0)
                    };
                    let done = (1.0 - left / sv.length).clamp(0.0, 1.0);
                    self.out.units_in_process[s as usize] += done * f64::from(sv.units);
                }
            }
        }
        // Jobs still in the system count their time up to now.
        let warm = self.model.warmup_s;
        for job in &self.jobs {
            if job.in_system {
                self.out.wip_area_by_job += (self.now - job.entered_s.max(warm)).max(0.0);
            }
        }
        self.close_area();
        self.out.horizon_s = self.now;
        self.out.events = self.events;
        self.out
    }

    // --- read access for the fork's world (once per frame, not per event) ---

    /// The station's state now.
    pub fn station_state(&self, s: u32) -> SimState {
        self.stations[s as usize].state
    }
    /// Jobs waiting in the station's buffer.
    pub fn queue_len(&self, s: u32) -> u32 {
        self.stations[s as usize].queue.len() as u32
    }
    /// The order on the station's first busy server.
    pub fn order_on(&self, s: u32) -> Option<u32> {
        self.stations[s as usize].servers.clone().find_map(|v| {
            let j = self.servers[v as usize].job;
            (j != NONE).then(|| self.jobs[j as usize].order)
        })
    }
    /// Where each order of the model is: (station it is at or going to,
    /// routing step), None once done or before release.
    pub fn order_position(&self, o: u32) -> Option<(u32, u32)> {
        // Order jobs are created first, in order: job index == order index.
        let job = self.jobs.get(o as usize)?;
        if job.order != o || !self.out.order_done_s[o as usize].is_nan() || job.station == NONE {
            return None;
        }
        Some((job.station, job.step))
    }
    pub fn order_done_s(&self, o: u32) -> Option<f64> {
        let v = *self.out.order_done_s.get(o as usize)?;
        (!v.is_nan()).then_some(v)
    }
    pub fn units_done(&self, s: u32) -> u64 {
        self.stations[s as usize].units_done
    }
}
