//! The standalone model file: versioned TOML text in, a [`Model`] out, or
//! every problem as `file:line:column: message`. Textbook queueing cases
//! and a user's own line run on the same engine as the plant's fork.
//!
//! ```toml
//! version = 1
//! name = "M/M/1 at utilisation 0.8"
//! time_unit = "min"              # s | min | h: every time below
//! horizon = 50000
//! warmup = 1000
//! off = [[480, 540]]             # plant off (breaks, nights), optional
//!
//! [[station]]
//! id = "server"
//! servers = 1                    # default 1
//! buffer = 10                    # jobs that may wait; default unlimited
//! dispatch = "FIFO"              # FIFO | EDD | SPT | CR | ATC
//! setup = 0                      # on a change of product family
//! scrap_rate = 0.0
//! rework_rate = 0.0
//! [[station.stop]]
//! name = "breakdown"
//! kind = "down"                  # down | micro_stop | setup | blocked | starved
//! between = { dist = "exp", mean = 600 }   # running time between stops
//! duration = { dist = "erlang", mean = 20, k = 2 }
//!
//! [[product]]
//! id = "job"
//! family = "A"
//! [[product.step]]
//! station = "server"             # or stations = ["m1", "m2"] (alternatives)
//! time = { dist = "exp", mean = 0.8 }      # per unit
//! transport = 0                  # to the next step
//!
//! [[arrivals]]
//! product = "job"
//! interarrival = { dist = "exp", mean = 1.0 }
//! quantity = 1
//!
//! [[order]]
//! id = "J1"
//! product = "job"
//! quantity = 3
//! release = 0
//! due = 10
//! ```

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::WhatIfError;
use super::dist::DistSpec;
use super::model::{Arrivals, Model, Order, Product, Rule, Station, Step, StopKind, StopMode};
use crate::registry::line_col;

/// The model file format this build reads.
pub const MODEL_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Spanned<u32>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    time_unit: Option<Spanned<String>>,
    horizon: Spanned<f64>,
    #[serde(default)]
    warmup: f64,
    #[serde(default)]
    off: Vec<Spanned<(f64, f64)>>,
    #[serde(default)]
    station: Vec<StationFile>,
    #[serde(default)]
    product: Vec<ProductFile>,
    #[serde(default)]
    arrivals: Vec<ArrivalsFile>,
    #[serde(default)]
    order: Vec<OrderFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StationFile {
    id: Spanned<String>,
    #[serde(default)]
    servers: Option<Spanned<u32>>,
    #[serde(default)]
    buffer: Option<u32>,
    #[serde(default)]
    dispatch: Option<Spanned<String>>,
    #[serde(default)]
    setup: f64,
    #[serde(default)]
    scrap_rate: Option<Spanned<f64>>,
    #[serde(default)]
    rework_rate: Option<Spanned<f64>>,
    #[serde(default)]
    stop: Vec<StopFile>,
    #[serde(default)]
    setup_time: Vec<SetupFile>,
    #[serde(default = "yes")]
    follows_calendar: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopFile {
    name: String,
    kind: Spanned<String>,
    between: Spanned<DistSpec>,
    duration: Spanned<DistSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupFile {
    from: String,
    to: String,
    time: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductFile {
    id: Spanned<String>,
    #[serde(default)]
    family: Option<String>,
    step: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    #[serde(default)]
    station: Option<Spanned<String>>,
    #[serde(default)]
    stations: Vec<Spanned<String>>,
    time: Spanned<DistSpec>,
    #[serde(default)]
    transport: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrivalsFile {
    #[serde(default)]
    id: Option<String>,
    product: Spanned<String>,
    interarrival: Spanned<DistSpec>,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    due_after: Option<f64>,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    limit: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderFile {
    id: String,
    product: Spanned<String>,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    release: f64,
    #[serde(default)]
    due: Option<f64>,
    #[serde(default = "unit_weight")]
    weight: f64,
}

fn unit_weight() -> f64 {
    1.0
}

/// Seconds per `time_unit`.
pub fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    })
}

fn unit_name(u: &str) -> &'static str {
    match u {
        "min" => "min",
        "h" => "h",
        _ => "s",
    }
}

/// Problems found while reading a file, each at its place.
pub(crate) struct Located<'a> {
    text: &'a str,
    pub problems: Vec<(usize, usize, String)>,
}

impl<'a> Located<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            problems: Vec::new(),
        }
    }
    pub fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (l, c) = line_col(self.text, span.start);
        self.problems.push((l, c, message.into()));
    }
    pub fn into_result<T>(self, path: &Path, v: T) -> Result<T, WhatIfError> {
        if self.problems.is_empty() {
            Ok(v)
        } else {
            Err(WhatIfError::File {
                path: path.to_path_buf(),
                problems: self.problems,
            })
        }
    }
}

/// A TOML error as `file:line:column`.
pub(crate) fn syntax(path: &Path, text: &str, e: &toml::de::Error) -> WhatIfError {
    let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
    WhatIfError::File {
        path: path.to_path_buf(),
        problems: vec![(line, column, e.message().to_string())],
    }
}

/// Reads a model file.
pub fn load_model(path: &Path) -> Result<Model, WhatIfError> {
    let text = std::fs::read_to_string(path).map_err(|source| WhatIfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_model(path, &text)
}

/// Parses model text (`path` names it in errors).
pub fn parse_model(path: &Path, text: &str) -> Result<Model, WhatIfError> {
    let f: File = toml::from_str(text).map_err(|e| syntax(path, text, &e))?;
    let mut c = Located::new(text);
    if *f.version.get_ref() != MODEL_FORMAT_VERSION {
        c.at(
            f.version.span(),
            format!(
                "version {} is not {MODEL_FORMAT_VERSION}, the model format this build reads",
                f.version.get_ref()
            ),
        );
    }
    let (time_unit, unit_s) = match &f.time_unit {
        None => ("s", 1.0),
        Some(u) => match unit_seconds(u.get_ref()) {
            Some(v) => (unit_name(u.get_ref()), v),
            None => {
                c.at(
                    u.span(),
                    format!("time_unit {:?} is not s, min or h", u.get_ref()),
                );
                ("s", 1.0)
            }
        },
    };
    let horizon_s = *f.horizon.get_ref() * unit_s;
    if !(horizon_s.is_finite() && horizon_s > 0.0) {
        c.at(f.horizon.span(), "horizon must be > 0");
    }
    let mut m = Model {
        name: if f.name.is_empty() {
            path.display().to_string()
        } else {
            f.name.clone()
        },
        origin_us: 0,
        horizon_s,
        warmup_s: f.warmup * unit_s,
        stations: Vec::new(),
        families: Vec::new(),
        products: Vec::new(),
        orders: Vec::new(),
        arrivals: Vec::new(),
        off_shift: Vec::new(),
        has_calendar: !f.off.is_empty(),
        time_unit,
        time_unit_s: unit_s,
    };
    for o in &f.off {
        let (a, b) = *o.get_ref();
        if !(b > a && a >= 0.0) {
            c.at(
                o.span(),
                format!("off window [{a}, {b}] must be increasing and ≥ 0"),
            );
        }
        m.off_shift.push((a * unit_s, b * unit_s));
    }
    m.off_shift.sort_by(|a, b| a.0.total_cmp(&b.0));
    for s in &f.station {
        if m.station(s.id.get_ref()).is_some() {
            c.at(
                s.id.span(),
                format!("station {:?} is listed twice", s.id.get_ref()),
            );
        }
        let mut st = Station::new(s.id.get_ref().clone());
        if let Some(n) = &s.servers {
            if *n.get_ref() == 0 {
                c.at(n.span(), "servers must be ≥ 1");
            }
            st.servers = (*n.get_ref()).max(1);
        }
        st.buffer_capacity = s.buffer;
        if let Some(r) = &s.dispatch {
            match Rule::parse(r.get_ref()) {
                Some(rule) => st.rule = rule,
                None => c.at(
                    r.span(),
                    format!(
                        "dispatch {:?} is not FIFO, EDD, SPT, CR or ATC",
                        r.get_ref()
                    ),
                ),
            }
        }
        st.setup_default_s = s.setup * unit_s;
        for (v, name) in [
            (&s.scrap_rate, "scrap_rate"),
            (&s.rework_rate, "rework_rate"),
        ] {
            if let Some(v) = v
                && !(0.0..1.0).contains(v.get_ref())
            {
                c.at(
                    v.span(),
                    format!("{name} {} must be in [0, 1)", v.get_ref()),
                );
            }
        }
        st.scrap_rate = s.scrap_rate.as_ref().map_or(0.0, |v| *v.get_ref());
        st.rework_rate = s.rework_rate.as_ref().map_or(0.0, |v| *v.get_ref());
        st.follows_calendar = s.follows_calendar;
        for stop in &s.stop {
            let kind = match parse_stop_kind(stop.kind.get_ref()) {
                Some(k) => k,
                None => {
                    c.at(
                        stop.kind.span(),
                        format!(
                            "stop kind {:?} is not down, micro_stop, setup, blocked or starved",
                            stop.kind.get_ref()
                        ),
                    );
                    StopKind::Down
                }
            };
            let between = dist(&mut c, &stop.between, unit_s);
            let duration = dist(&mut c, &stop.duration, unit_s);
            if let (Some(between), Some(duration)) = (between, duration) {
                if between.mean() <= 0.0 {
                    c.at(
                        stop.between.span(),
                        "running time between stops must be > 0",
                    );
                }
                st.stops.push(StopMode {
                    name: stop.name.clone(),
                    kind,
                    between,
                    duration,
                });
            }
        }
        m.stations.push(st);
    }
    // Families and setup matrices once all stations are known.
    for p in &f.product {
        let fam = p.family.clone().unwrap_or_else(|| p.id.get_ref().clone());
        m.family(&fam);
    }
    for (si, s) in f.station.iter().enumerate() {
        for x in &s.setup_time {
            let (a, b) = (m.family(&x.from), m.family(&x.to));
            m.stations[si].setups.push((a, b, x.time * unit_s));
        }
    }
    for p in &f.product {
        if m.product(p.id.get_ref()).is_some() {
            c.at(
                p.id.span(),
                format!("product {:?} is listed twice", p.id.get_ref()),
            );
        }
        let fam = p.family.clone().unwrap_or_else(|| p.id.get_ref().clone());
        let family = m.family(&fam);
        let mut routing = Vec::new();
        if p.step.is_empty() {
            c.at(p.id.span(), "a product needs at least one [[product.step]]");
        }
        for st in &p.step {
            let names: Vec<&Spanned<String>> =
                st.station.iter().chain(st.stations.iter()).collect();
            if names.is_empty() {
                c.at(st.time.span(), "step names no station (station = \"…\")");
            }
            let mut stations = Vec::new();
            for n in names {
                match m.station(n.get_ref()) {
                    Some(i) => stations.push(i),
                    None => c.at(
                        n.span(),
                        format!("no station {:?} in this model", n.get_ref()),
                    ),
                }
            }
            if let Some(time) = dist(&mut c, &st.time, unit_s) {
                routing.push(Step {
                    stations,
                    time,
                    transport_s: st.transport * unit_s,
                });
            }
        }
        m.products.push(Product {
            id: p.id.get_ref().clone(),
            family,
            routing,
        });
    }
    for (i, a) in f.arrivals.iter().enumerate() {
        let Some(product) = m.product(a.product.get_ref()) else {
            c.at(
                a.product.span(),
                format!("no product {:?} in this model", a.product.get_ref()),
            );
            continue;
        };
        if let Some(ia) = dist(&mut c, &a.interarrival, unit_s) {
            if ia.mean() <= 0.0 {
                c.at(a.interarrival.span(), "mean interarrival time must be > 0");
            }
            m.arrivals.push(Arrivals {
                id: a
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("arrivals-{}", i + 1)),
                product,
                interarrival: ia,
                quantity: a.quantity.max(1),
                due_after_s: a.due_after.map(|d| d * unit_s),
                start_s: a.start * unit_s,
                limit: a.limit,
            });
        }
    }
    for o in &f.order {
        let Some(product) = m.product(o.product.get_ref()) else {
            c.at(
                o.product.span(),
                format!("no product {:?} in this model", o.product.get_ref()),
            );
            continue;
        };
        m.orders.push(Order {
            id: o.id.clone(),
            product,
            quantity: o.quantity.max(1),
            release_s: o.release * unit_s,
            due_s: o.due.map(|d| d * unit_s),
            weight: o.weight,
            step: 0,
            in_process: None,
            plan: Vec::new(),
        });
    }
    let m = c.into_result(path, m)?;
    let problems = m.problems();
    if !problems.is_empty() {
        return Err(WhatIfError::Model(format!(
            "{}: {}",
            path.display(),
            problems.join("; ")
        )));
    }
    Ok(m)
}

pub(crate) fn parse_stop_kind(s: &str) -> Option<StopKind> {
    Some(match s {
        "down" => StopKind::Down,
        "micro_stop" | "micro-stop" | "idle" => StopKind::MicroStop,
        "setup" => StopKind::Setup,
        "blocked" => StopKind::Blocked,
        "starved" => StopKind::Starved,
        _ => return None,
    })
}

fn dist(c: &mut Located, d: &Spanned<DistSpec>, unit_s: f64) -> Option<super::dist::Dist> {
    match d.get_ref().to_dist(unit_s) {
        Ok(v) => Some(v),
        Err(e) => {
            c.at(d.span(), e);
            None
        }
    }
}
