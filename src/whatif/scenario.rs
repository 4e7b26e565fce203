//! Scenarios: a versioned TOML scenario file in, composable hypotheticals
//! out, each applied to a copy of the baseline [`Model`] (never to the
//! live plant).
//!
//! ```toml
//! version = 1
//! name = "Mill 3 down for two hours"
//! horizon_h = 8            # optional: the model's own horizon otherwise
//! replications = 20        # or: target_half_width_pct = 5 (max_replications)
//! seed = 1
//!
//! [[scenario]]
//! name = "Mill 3 down"
//! [[scenario.change]]
//! kind = "machine_down"
//! machine = "L1-MILL-03"
//! from_h = 0.5
//! for_h = 2
//! ```
//!
//! Kinds: `machine_down` (machine, from_h, for_h), `cycle_time` (machine,
//! factor), `scrap_rate` (machine, rate), `mttr` / `mtbf` (machine,
//! factor: every down stop's duration / running time between), `overtime`
//! (from_h, for_h: work where the calendar had the plant off),
//! `shift_off` (from_h, for_h: the plant off), `rush_order` (id, product
//! or like, quantity, due_h, release_h), `dispatch` (machine or "*",
//! rule), `alternative` (product or like, step, machine: one more
//! machine that can run a routing step), `buffer` (machine, capacity).

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::WhatIfError;
use super::model::{Model, Order, Rule, StopKind};
use super::model_file::{Located, syntax};

/// The scenario file format this build reads.
pub const SCENARIO_FORMAT_VERSION: u32 = 1;

/// One hypothetical.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    MachineDown {
        machine: String,
        from_h: f64,
        for_h: f64,
    },
    CycleTime {
        machine: String,
        factor: f64,
    },
    ScrapRate {
        machine: String,
        rate: f64,
    },
    Mttr {
        machine: String,
        factor: f64,
    },
    Mtbf {
        machine: String,
        factor: f64,
    },
    Overtime {
        from_h: f64,
        for_h: f64,
    },
    ShiftOff {
        from_h: f64,
        for_h: f64,
    },
    RushOrder {
        id: String,
        product: String,
        quantity: u32,
        due_h: Option<f64>,
        release_h: f64,
    },
    Dispatch {
        machine: String,
        rule: Rule,
    },
    Alternative {
        product: String,
        step: u32,
        machine: String,
    },
    Buffer {
        machine: String,
        capacity: Option<u32>,
    },
}

impl Change {
    /// The machine the hypothetical is about, if one.
    pub fn machine(&self) -> Option<&str> {
        match self {
            Change::MachineDown { machine, .. }
            | Change::CycleTime { machine, .. }
            | Change::ScrapRate { machine, .. }
            | Change::Mttr { machine, .. }
            | Change::Mtbf { machine, .. }
            | Change::Dispatch { machine, .. }
            | Change::Alternative { machine, .. }
            | Change::Buffer { machine, .. } => Some(machine.as_str()).filter(|m| *m != "*"),
            Change::Overtime { .. } | Change::ShiftOff { .. } | Change::RushOrder { .. } => None,
        }
    }

    /// One line for tables and reports.
    pub fn describe(&self) -> String {
        match self {
            Change::MachineDown {
                machine,
                from_h,
                for_h,
            } => {
                format!("{machine} down from +{from_h} h for {for_h} h")
            }
            Change::CycleTime { machine, factor } => format!("{machine} cycle time × {factor}"),
            Change::ScrapRate { machine, rate } => {
                format!("{machine} scrap rate {:.1} %", rate * 100.0)
            }
            Change::Mttr { machine, factor } => format!("{machine} MTTR × {factor}"),
            Change::Mtbf { machine, factor } => format!("{machine} MTBF × {factor}"),
            Change::Overtime { from_h, for_h } => {
                format!("overtime from +{from_h} h for {for_h} h")
            }
            Change::ShiftOff { from_h, for_h } => {
                format!("plant off from +{from_h} h for {for_h} h")
            }
            Change::RushOrder {
                id,
                product,
                quantity,
                due_h,
                ..
            } => format!(
                "rush order {id}: {quantity} × {product}{}",
                due_h.map_or(String::new(), |d| format!(", due +{d} h"))
            ),
            Change::Dispatch { machine, rule } => format!("{machine} dispatch {}", rule.label()),
            Change::Alternative {
                product,
                step,
                machine,
            } => format!("{product} step {step} may also run on {machine}"),
            Change::Buffer { machine, capacity } => match capacity {
                Some(c) => format!("{machine} buffer {c} jobs"),
                None => format!("{machine} buffer unlimited"),
            },
        }
    }
}

/// A named set of hypotheticals.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub changes: Vec<Change>,
}

/// How many replications.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Replications {
    Fixed(u32),
    /// Until the 95 % half-width of every scenario's throughput difference
    /// is below `pct` % of the baseline's (checked every 10), at most `max`.
    UntilHalfWidth {
        pct: f64,
        max: u32,
    },
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioFile {
    pub name: String,
    pub horizon_h: Option<f64>,
    pub replications: Replications,
    pub seed: u64,
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    version: Spanned<u32>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    horizon_h: Option<Spanned<f64>>,
    #[serde(default)]
    replications: Option<Spanned<u32>>,
    #[serde(default)]
    target_half_width_pct: Option<Spanned<f64>>,
    #[serde(default)]
    max_replications: Option<u32>,
    #[serde(default = "one")]
    seed: u64,
    #[serde(default)]
    scenario: Vec<ScenarioToml>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioToml {
    name: Spanned<String>,
    #[serde(default)]
    change: Vec<ChangeToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeToml {
    kind: Spanned<String>,
    machine: Option<Spanned<String>>,
    from_h: Option<f64>,
    for_h: Option<f64>,
    factor: Option<Spanned<f64>>,
    rate: Option<Spanned<f64>>,
    id: Option<String>,
    product: Option<Spanned<String>>,
    like: Option<Spanned<String>>,
    quantity: Option<u32>,
    due_h: Option<f64>,
    release_h: Option<f64>,
    rule: Option<Spanned<String>>,
    step: Option<u32>,
    capacity: Option<i64>,
}

impl ScenarioFile {
    /// The file as TOML, in the format [`parse_scenarios`] reads (what the
    /// app saves and puts in a meeting pack, to run it again).
    pub fn to_toml(&self) -> String {
        use std::fmt::Write as _;
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        // TOML's own float syntax (nan and inf included).
        let f = |x: f64| toml::Value::Float(x).to_string();
        let mut t = String::new();
        let _ = writeln!(t, "version = {SCENARIO_FORMAT_VERSION}");
        let _ = writeln!(t, "name = {}", q(&self.name));
        if let Some(h) = self.horizon_h {
            let _ = writeln!(t, "horizon_h = {}", f(h));
        }
        match self.replications {
            Replications::Fixed(n) => {
                let _ = writeln!(t, "replications = {n}");
            }
            Replications::UntilHalfWidth { pct, max } => {
                let _ = writeln!(
                    t,
                    "target_half_width_pct = {}\nmax_replications = {max}",
                    f(pct)
                );
            }
        }
        let _ = writeln!(t, "seed = {}", self.seed);
        for sc in &self.scenarios {
            let _ = writeln!(t, "\n[[scenario]]\nname = {}", q(&sc.name));
            for c in &sc.changes {
                let _ = writeln!(t, "[[scenario.change]]");
                let mut kv = |k: &str, v: String| {
                    let _ = writeln!(t, "{k} = {v}");
                };
                let product = |p: &str| match p.strip_prefix("like:") {
                    Some(l) => ("like", q(l)),
                    None => ("product", q(p)),
                };
                match c {
                    Change::MachineDown {
                        machine,
                        from_h,
                        for_h,
                    } => {
                        kv("kind", q("machine_down"));
                        kv("machine", q(machine));
                        kv("from_h", f(*from_h));
                        kv("for_h", f(*for_h));
                    }
                    Change::CycleTime { machine, factor } => {
                        kv("kind", q("cycle_time"));
                        kv("machine", q(machine));
                        kv("factor", f(*factor));
                    }
                    Change::ScrapRate { machine, rate } => {
                        kv("kind", q("scrap_rate"));
                        kv("machine", q(machine));
                        kv("rate", f(*rate));
                    }
                    Change::Mttr { machine, factor } | Change::Mtbf { machine, factor } => {
                        let kind = if matches!(c, Change::Mttr { .. }) {
                            "mttr"
                        } else {
                            "mtbf"
                        };
                        kv("kind", q(kind));
                        kv("machine", q(machine));
                        kv("factor", f(*factor));
                    }
                    Change::Overtime { from_h, for_h } | Change::ShiftOff { from_h, for_h } => {
                        let kind = if matches!(c, Change::Overtime { .. }) {
                            "overtime"
                        } else {
                            "shift_off"
                        };
                        kv("kind", q(kind));
                        kv("from_h", f(*from_h));
                        kv("for_h", f(*for_h));
                    }
                    Change::RushOrder {
                        id,
                        product: p,
                        quantity,
                        due_h,
                        release_h,
                    } => {
                        kv("kind", q("rush_order"));
                        kv("id", q(id));
                        let (k, v) = product(p);
                        kv(k, v);
                        kv("quantity", quantity.to_string());
                        if let Some(d) = due_h {
                            kv("due_h", f(*d));
                        }
                        kv("release_h", f(*release_h));
                    }
                    Change::Dispatch { machine, rule } => {
                        kv("kind", q("dispatch"));
                        kv("machine", q(machine));
                        kv("rule", q(rule.label()));
                    }
                    Change::Alternative {
                        product: p,
                        step,
                        machine,
                    } => {
                        kv("kind", q("alternative"));
                        let (k, v) = product(p);
                        kv(k, v);
                        kv("step", step.to_string());
                        kv("machine", q(machine));
                    }
                    Change::Buffer { machine, capacity } => {
                        kv("kind", q("buffer"));
                        kv("machine", q(machine));
                        kv("capacity", capacity.map_or(-1, i64::from).to_string());
                    }
                }
            }
        }
        t
    }
}

/// Reads a scenario file.
pub fn load_scenarios(path: &Path) -> Result<ScenarioFile, WhatIfError> {
    let text = std::fs::read_to_string(path).map_err(|source| WhatIfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_scenarios(path, &text)
}

/// Parses scenario text. Machines and products are checked against the
/// model when the changes are applied ([`apply`]).
pub fn parse_scenarios(path: &Path, text: &str) -> Result<ScenarioFile, WhatIfError> {
    let f: FileToml = toml::from_str(text).map_err(|e| syntax(path, text, &e))?;
    let mut c = Located::new(text);
    if *f.version.get_ref() != SCENARIO_FORMAT_VERSION {
        c.at(
            f.version.span(),
            format!(
                "version {} is not {SCENARIO_FORMAT_VERSION}, the scenario format this build reads",
                f.version.get_ref()
            ),
        );
    }
    if let Some(h) = &f.horizon_h
        && !(h.get_ref().is_finite() && *h.get_ref() > 0.0)
    {
        c.at(h.span(), "horizon_h must be > 0");
    }
    let replications = match (&f.replications, &f.target_half_width_pct) {
        (Some(r), None) => {
            if *r.get_ref() < 2 {
                c.at(
                    r.span(),
                    "replications must be ≥ 2 (a confidence interval needs two)",
                );
            }
            Replications::Fixed(*r.get_ref())
        }
        (None, Some(p)) => {
            if p.get_ref().is_nan() || *p.get_ref() <= 0.0 {
                c.at(p.span(), "target_half_width_pct must be > 0");
            }
            Replications::UntilHalfWidth {
                pct: *p.get_ref(),
                max: f.max_replications.unwrap_or(200).max(10),
            }
        }
        (Some(r), Some(_)) => {
            c.at(
                r.span(),
                "give replications or target_half_width_pct, not both",
            );
            Replications::Fixed(20)
        }
        (None, None) => Replications::Fixed(20),
    };
    let mut scenarios = Vec::new();
    for s in &f.scenario {
        let mut changes = Vec::new();
        for ch in &s.change {
            if let Some(x) = change(&mut c, ch) {
                changes.push(x);
            }
        }
        scenarios.push(Scenario {
            name: s.name.get_ref().clone(),
            changes,
        });
    }
    c.into_result(
        path,
        ScenarioFile {
            name: f.name,
            horizon_h: f.horizon_h.map(|h| *h.get_ref()),
            replications,
            seed: f.seed,
            scenarios,
        },
    )
}

fn change(c: &mut Located, ch: &ChangeToml) -> Option<Change> {
    let kind = ch.kind.get_ref().as_str();
    let span = ch.kind.span();
    let machine = |c: &mut Located| match &ch.machine {
        Some(m) => Some(m.get_ref().clone()),
        None => {
            c.at(span.clone(), format!("{kind} needs machine = \"…\""));
            None
        }
    };
    let window = |c: &mut Located| match (ch.from_h, ch.for_h) {
        (Some(a), Some(d)) if a >= 0.0 && d > 0.0 && a.is_finite() && d.is_finite() => Some((a, d)),
        _ => {
            c.at(
                span.clone(),
                format!("{kind} needs from_h ≥ 0 and for_h > 0"),
            );
            None
        }
    };
    let factor = |c: &mut Located| match &ch.factor {
        Some(f) if *f.get_ref() > 0.0 && f.get_ref().is_finite() => Some(*f.get_ref()),
        Some(f) => {
            c.at(f.span(), "factor must be > 0");
            None
        }
        None => {
            c.at(span.clone(), format!("{kind} needs factor = …"));
            None
        }
    };
    let product = |c: &mut Located| match (&ch.product, &ch.like) {
        (Some(p), _) => Some(p.get_ref().clone()),
        (None, Some(l)) => Some(format!("like:{}", l.get_ref())),
        (None, None) => {
            c.at(
                span.clone(),
                format!("{kind} needs product = \"…\" or like = \"<order>\""),
            );
            None
        }
    };
    Some(match kind {
        "machine_down" => {
            let m = machine(c);
            let (from_h, for_h) = window(c)?;
            Change::MachineDown {
                machine: m?,
                from_h,
                for_h,
            }
        }
        "cycle_time" => {
            let m = machine(c);
            Change::CycleTime {
                factor: factor(c)?,
                machine: m?,
            }
        }
        "mttr" => {
            let m = machine(c);
            Change::Mttr {
                factor: factor(c)?,
                machine: m?,
            }
        }
        "mtbf" => {
            let m = machine(c);
            Change::Mtbf {
                factor: factor(c)?,
                machine: m?,
            }
        }
        "scrap_rate" => {
            let m = machine(c);
            let rate = match &ch.rate {
                Some(r) if (0.0..1.0).contains(r.get_ref()) => *r.get_ref(),
                Some(r) => {
                    c.at(r.span(), "rate must be in [0, 1)");
                    return None;
                }
                None => {
                    c.at(span, "scrap_rate needs rate = …");
                    return None;
                }
            };
            Change::ScrapRate { machine: m?, rate }
        }
        "overtime" => {
            let (from_h, for_h) = window(c)?;
            Change::Overtime { from_h, for_h }
        }
        "shift_off" => {
            let (from_h, for_h) = window(c)?;
            Change::ShiftOff { from_h, for_h }
        }
        "rush_order" => {
            let p = product(c)?;
            Change::RushOrder {
                id: ch.id.clone().unwrap_or_else(|| "RUSH".into()),
                product: p,
                quantity: ch.quantity.unwrap_or(1).max(1),
                due_h: ch.due_h,
                release_h: ch.release_h.unwrap_or(0.0).max(0.0),
            }
        }
        "dispatch" => {
            let m = machine(c);
            let rule = match &ch.rule {
                Some(r) => match Rule::parse(r.get_ref()) {
                    Some(rule) => rule,
                    None => {
                        c.at(
                            r.span(),
                            format!("rule {:?} is not FIFO, EDD, SPT, CR or ATC", r.get_ref()),
                        );
                        return None;
                    }
                },
                None => {
                    c.at(
                        span,
                        "dispatch needs rule = \"EDD\" (or FIFO, SPT, CR, ATC)",
                    );
                    return None;
                }
            };
            Change::Dispatch { machine: m?, rule }
        }
        "alternative" => {
            let m = machine(c);
            let p = product(c)?;
            Change::Alternative {
                product: p,
                step: ch.step.unwrap_or(1).max(1),
                machine: m?,
            }
        }
        "buffer" => {
            let m = machine(c);
            let capacity = match ch.capacity {
                Some(n) if n >= 0 => Some(n as u32),
                Some(_) => None,
                None => {
                    c.at(span, "buffer needs capacity = N (a negative N: unlimited)");
                    return None;
                }
            };
            Change::Buffer {
                machine: m?,
                capacity,
            }
        }
        other => {
            c.at(
                span,
                format!(
                    "kind {other:?} is not one of machine_down, cycle_time, scrap_rate, mttr, \
                     mtbf, overtime, shift_off, rush_order, dispatch, alternative, buffer"
                ),
            );
            return None;
        }
    })
}

/// The baseline with the scenario's changes applied, or what does not fit
/// the model (an unknown machine or product).
pub fn apply(base: &Model, changes: &[Change]) -> Result<Model, String> {
    let mut m = base.clone();
    let station = |m: &Model, id: &str| {
        m.station(id)
            .ok_or_else(|| format!("no machine {id:?} in the model of {}", m.name))
    };
    for ch in changes {
        match ch {
            Change::MachineDown {
                machine,
                from_h,
                for_h,
            } => {
                let s = station(&m, machine)?;
                let a = from_h * 3600.0;
                m.stations[s as usize]
                    .downtime
                    .push((a, a + for_h * 3600.0));
            }
            Change::CycleTime { machine, factor } => {
                let s = station(&m, machine)?;
                m.stations[s as usize].time_factor *= factor;
            }
            Change::ScrapRate { machine, rate } => {
                let s = station(&m, machine)?;
                m.stations[s as usize].scrap_rate = *rate;
            }
            Change::Mttr { machine, factor } | Change::Mtbf { machine, factor } => {
                let s = station(&m, machine)?;
                let mttr = matches!(ch, Change::Mttr { .. });
                for stop in &mut m.stations[s as usize].stops {
                    if stop.kind == StopKind::Down {
                        if mttr {
                            stop.duration = stop.duration.scaled(*factor);
                        } else {
                            stop.between = stop.between.scaled(*factor);
                        }
                    }
                }
            }
            Change::Overtime { from_h, for_h } => {
                let (a, b) = (from_h * 3600.0, (from_h + for_h) * 3600.0);
                let mut out = Vec::new();
                for &(x, y) in &m.off_shift {
                    if y <= a || x >= b {
                        out.push((x, y));
                    } else {
                        if x < a {
                            out.push((x, a));
                        }
                        if y > b {
                            out.push((b, y));
                        }
                    }
                }
                m.off_shift = out;
            }
            Change::ShiftOff { from_h, for_h } => {
                let a = from_h * 3600.0;
                m.off_shift.push((a, a + for_h * 3600.0));
                m.off_shift.sort_by(|x, y| x.0.total_cmp(&y.0));
                // Merge overlaps so a machine is never switched off twice.
                let mut merged: Vec<(f64, f64)> = Vec::new();
                for w in std::mem::take(&mut m.off_shift) {
                    match merged.last_mut() {
                        Some(last) if w.0 <= last.1 => last.1 = last.1.max(w.1),
                        _ => merged.push(w),
                    }
                }
                m.off_shift = merged;
                m.has_calendar = true;
            }
            Change::RushOrder {
                id,
                product,
                quantity,
                due_h,
                release_h,
            } => {
                let p = resolve_product(&m, product)?;
                m.orders.push(Order {
                    id: id.clone(),
                    product: p,
                    quantity: *quantity,
                    release_s: release_h * 3600.0,
                    due_s: due_h.map(|d| d * 3600.0),
                    weight: 10.0,
                    step: 0,
                    in_process: None,
                    plan: Vec::new(),
                });
            }
            Change::Dispatch { machine, rule } => {
                if machine == "*" {
                    for s in &mut m.stations {
                        s.rule = *rule;
                    }
                } else {
                    let s = station(&m, machine)?;
                    m.stations[s as usize].rule = *rule;
                }
            }
            Change::Alternative {
                product,
                step,
                machine,
            } => {
                let p = resolve_product(&m, product)?;
                let s = station(&m, machine)?;
                let routing = &mut m.products[p as usize].routing;
                let Some(st) = routing.get_mut(*step as usize - 1) else {
                    return Err(format!("{product} has no step {step}"));
                };
                if !st.stations.contains(&s) {
                    st.stations.push(s);
                }
            }
            Change::Buffer { machine, capacity } => {
                let s = station(&m, machine)?;
                m.stations[s as usize].buffer_capacity = *capacity;
            }
        }
    }
    let problems = m.problems();
    if problems.is_empty() {
        Ok(m)
    } else {
        Err(problems.join("; "))
    }
}

/// A product by id, or `like:<order>` for the product of that order.
fn resolve_product(m: &Model, p: &str) -> Result<u32, String> {
    if let Some(order) = p.strip_prefix("like:") {
        return m
            .orders
            .iter()
            .find(|o| o.id == order)
            .map(|o| o.product)
            .ok_or_else(|| format!("no order {order:?} in the model of {}", m.name));
    }
    m.product(p)
        .ok_or_else(|| format!("no product {p:?} in the model of {}", m.name))
}
