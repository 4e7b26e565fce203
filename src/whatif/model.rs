//! The process model: what the engine simulates, as plain data. Built from
//! a model file (`model_file`) or from the live plant (`plant`); changed by
//! hypotheticals (`scenario`); read, never written, by the engine.
//!
//! Times are seconds from the model's origin (`origin_us`, the moment of
//! the fork); quantities are units (parts).

use super::dist::Dist;

/// How a machine picks the next job from its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// First in, first out.
    #[default]
    Fifo,
    /// Earliest due date.
    Edd,
    /// Shortest (expected) processing time.
    Spt,
    /// Smallest critical ratio: time to due ÷ work remaining.
    Cr,
    /// Apparent tardiness cost (Vepsalainen & Morton), look-ahead `k` = 2.
    Atc,
    /// A schedule's sequence: the earliest planned start of the step here
    /// first (orders carry their [`Order::plan`]); unplanned jobs last.
    Planned,
}

impl Rule {
    pub fn parse(s: &str) -> Option<Rule> {
        Some(match s.to_ascii_uppercase().as_str() {
            "FIFO" | "FCFS" => Rule::Fifo,
            "EDD" => Rule::Edd,
            "SPT" => Rule::Spt,
            "CR" => Rule::Cr,
            "ATC" => Rule::Atc,
            "PLANNED" => Rule::Planned,
            _ => return None,
        })
    }
    pub fn label(self) -> &'static str {
        match self {
            Rule::Fifo => "FIFO",
            Rule::Edd => "EDD",
            Rule::Spt => "SPT",
            Rule::Cr => "CR",
            Rule::Atc => "ATC",
            Rule::Planned => "planned",
        }
    }
}

/// What a machine shows while a stop lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// A breakdown, repaired in the stop's duration.
    Down,
    /// A short stop (the twin's `idle` with a machine that has work).
    MicroStop,
    /// A setup or tool change not caused by a product change.
    Setup,
    /// Held by something the model does not contain (downstream).
    Blocked,
    /// Waiting for something the model does not contain (material).
    Starved,
}

/// A way a machine stops: after a running time drawn from `between`, for a
/// time drawn from `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct StopMode {
    pub name: String,
    pub kind: StopKind,
    /// Running (processing) time between two stops of this mode, s.
    pub between: Dist,
    pub duration: Dist,
}

/// A stop under way at the fork: its kind and what is left of it.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialStop {
    pub kind: StopKind,
    pub name: String,
    pub remaining_s: f64,
}

/// A machine (or a pool of identical servers) with its input buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Station {
    pub id: String,
    pub servers: u32,
    /// Jobs that may wait in the input buffer (None: unlimited). A machine
    /// upstream holds a finished job while this is full (blocking after
    /// service).
    pub buffer_capacity: Option<u32>,
    pub rule: Rule,
    pub stops: Vec<StopMode>,
    /// Setup time when the product family changes, s (0: none).
    pub setup_default_s: f64,
    /// Setup time from family a to family b, s (overrides the default).
    pub setups: Vec<(u32, u32, f64)>,
    /// Share of units scrapped at this machine.
    pub scrap_rate: f64,
    /// Share of units processed twice.
    pub rework_rate: f64,
    /// Every processing time here × this (a hypothetical).
    pub time_factor: f64,
    /// Planned downtime windows (start, end), s.
    pub downtime: Vec<(f64, f64)>,
    pub initial_stop: Option<InitialStop>,
    /// The family set up at the fork.
    pub initial_family: Option<u32>,
    /// Stops outside the shift calendar's working time (false: works
    /// around the clock).
    pub follows_calendar: bool,
}

impl Station {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            servers: 1,
            buffer_capacity: None,
            rule: Rule::Fifo,
            stops: Vec::new(),
            setup_default_s: 0.0,
            setups: Vec::new(),
            scrap_rate: 0.0,
            rework_rate: 0.0,
            time_factor: 1.0,
            downtime: Vec::new(),
            initial_stop: None,
            initial_family: None,
            follows_calendar: true,
        }
    }

    pub fn setup_s(&self, from: Option<u32>, to: u32) -> f64 {
        match from {
            None => 0.0,
            Some(f) if f == to => 0.0,
            Some(f) => self
                .setups
                .iter()
                .find(|(a, b, _)| *a == f && *b == to)
                .map_or(self.setup_default_s, |s| s.2),
        }
    }
}

/// One step of a routing: where, how long per unit, and the transport to
/// the next step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Machines that can run it (the first is the routing's own; more are
    /// alternatives, the least loaded taken).
    pub stations: Vec<u32>,
    /// Processing time per unit, s.
    pub time: Dist,
    /// Transport to the next step, s.
    pub transport_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: String,
    pub family: u32,
    pub routing: Vec<Step>,
}

/// An order (a lot of `quantity` units moving together through its
/// product's routing).
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    pub product: u32,
    pub quantity: u32,
    pub release_s: f64,
    pub due_s: Option<f64>,
    pub weight: f64,
    /// The routing step it is at (0 for a new order).
    pub step: u32,
    /// Already in process at the fork on this machine, with this many
    /// units of the step done.
    pub in_process: Option<(u32, u32)>,
    /// A schedule's plan, per routing step: (machine, planned start s).
    /// Empty: none (the machine's rule and the least loaded alternative).
    pub plan: Vec<(u32, f64)>,
}

/// Orders generated by interarrival times.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrivals {
    pub id: String,
    pub product: u32,
    pub interarrival: Dist,
    pub quantity: u32,
    /// Due this long after arrival, s.
    pub due_after_s: Option<f64>,
    pub start_s: f64,
    /// Stop after this many.
    pub limit: Option<u64>,
}

/// The whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    /// The fork moment (µs since the Unix epoch, UTC); 0 for a model file.
    pub origin_us: i64,
    pub horizon_s: f64,
    /// Statistics start here (jobs arriving before it are not counted).
    pub warmup_s: f64,
    pub stations: Vec<Station>,
    pub families: Vec<String>,
    pub products: Vec<Product>,
    pub orders: Vec<Order>,
    pub arrivals: Vec<Arrivals>,
    /// Windows when the shift calendar has the plant off (breaks, nights,
    /// planned downtime, holidays), s; sorted, not overlapping.
    pub off_shift: Vec<(f64, f64)>,
    /// A shift calendar was given (false: all time counts as working).
    pub has_calendar: bool,
    /// The unit reports show times in (`s`, `min` or `h`), and its seconds.
    pub time_unit: &'static str,
    pub time_unit_s: f64,
}

impl Model {
    pub fn station(&self, id: &str) -> Option<u32> {
        self.stations
            .iter()
            .position(|s| s.id == id)
            .map(|i| i as u32)
    }
    pub fn product(&self, id: &str) -> Option<u32> {
        self.products
            .iter()
            .position(|p| p.id == id)
            .map(|i| i as u32)
    }
    pub fn family(&mut self, name: &str) -> u32 {
        match self.families.iter().position(|f| f == name) {
            Some(i) => i as u32,
            None => {
                self.families.push(name.to_string());
                (self.families.len() - 1) as u32
            }
        }
    }

    /// Why the model cannot run, if so (indexes out of range, bad numbers).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let ns = self.stations.len() as u32;
        if !(self.horizon_s.is_finite() && self.horizon_s > 0.0) {
            out.push(format!("horizon {} s must be > 0", self.horizon_s));
        }
        if !(self.warmup_s >= 0.0 && self.warmup_s < self.horizon_s) {
            out.push(format!(
                "warm-up {} s must lie inside the horizon",
                self.warmup_s
            ));
        }
        for s in &self.stations {
            if s.servers == 0 {
                out.push(format!("station {}: servers must be ≥ 1", s.id));
            }
            for r in [s.scrap_rate, s.rework_rate] {
                if !(0.0..1.0).contains(&r) {
                    out.push(format!("station {}: rate {r} must be in [0, 1)", s.id));
                }
            }
            for m in &s.stops {
                for d in [&m.between, &m.duration] {
                    if let Some(p) = d.problem() {
                        out.push(format!("station {} stop {}: {p}", s.id, m.name));
                    }
                }
                if m.between.mean() <= 0.0 {
                    out.push(format!(
                        "station {} stop {}: time between stops must be > 0",
                        s.id, m.name
                    ));
                }
            }
        }
        for p in &self.products {
            if p.routing.is_empty() {
                out.push(format!("product {}: routing is empty", p.id));
            }
            for st in &p.routing {
                if st.stations.is_empty() || st.stations.iter().any(|&s| s >= ns) {
                    out.push(format!("product {}: a step names no known station", p.id));
                }
                if let Some(e) = st.time.problem() {
                    out.push(format!("product {}: {e}", p.id));
                }
            }
        }
        for o in &self.orders {
            match self.products.get(o.product as usize) {
                None => out.push(format!("order {}: unknown product", o.id)),
                Some(p) if o.step as usize >= p.routing.len() => out.push(format!(
                    "order {}: step {} beyond its routing",
                    o.id, o.step
                )),
                _ => {}
            }
            if o.quantity == 0 {
                out.push(format!("order {}: quantity must be ≥ 1", o.id));
            }
        }
        for a in &self.arrivals {
            if a.product as usize >= self.products.len() {
                out.push(format!("arrivals {}: unknown product", a.id));
            }
            if a.interarrival.mean() <= 0.0 {
                out.push(format!("arrivals {}: mean interarrival must be > 0", a.id));
            }
        }
        out
    }

    /// Expected processing time of `units` at `step` of `product` on
    /// station `s`, s (the dispatch rules' estimate).
    pub fn expected_time_s(&self, product: u32, step: u32, s: u32, units: u32) -> f64 {
        let st = &self.products[product as usize].routing[step as usize];
        st.time.mean() * f64::from(units) * self.stations[s as usize].time_factor
    }
}
