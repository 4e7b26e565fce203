//! The numbers of a study: outcomes in; KPI rows with 95 % confidence
//! intervals on each scenario − baseline difference, orders, machines, the
//! bottleneck and Little's law out — as text tables and CSV.

use std::fmt::Write as _;

use super::engine::{Outcome, SimState};
use super::model::Model;
use super::pool::StudyResult;
use super::stats::Estimate;

/// One KPI of every variant (baseline first) and each difference.
#[derive(Debug, Clone)]
pub struct KpiRow {
    pub name: &'static str,
    pub unit: &'static str,
    /// Per variant.
    pub values: Vec<Estimate>,
    /// Per scenario (variant 1..): scenario − baseline, paired.
    pub diffs: Vec<Estimate>,
}

/// The KPIs, each a function of one outcome.
/// A KPI: its name, its unit and how to read it off one outcome.
pub type Kpi = (&'static str, &'static str, Box<dyn Fn(&Outcome) -> f64>);

pub fn kpis(model: &Model) -> Vec<Kpi> {
    let (unit, u) = (model.time_unit, model.time_unit_s);
    let due: Vec<Option<f64>> = model.orders.iter().map(|o| o.due_s).collect();
    let due2 = due.clone();
    let n_orders = model.orders.len();
    let mut out: Vec<Kpi> = vec![
        (
            "throughput",
            "jobs/h",
            Box::new(|o: &Outcome| o.throughput_per_h()),
        ),
        (
            "units completed",
            "units",
            Box::new(|o: &Outcome| o.completed_units as f64),
        ),
        (
            "WIP (time average)",
            "jobs",
            Box::new(|o: &Outcome| o.wip()),
        ),
        (
            "mean flow time",
            unit,
            Box::new(move |o: &Outcome| o.mean_flow_s() / u),
        ),
        (
            "mean wait in queue",
            unit,
            Box::new(move |o: &Outcome| o.mean_wait_s() / u),
        ),
    ];
    if n_orders > 0 {
        out.push((
            "orders done",
            "orders",
            Box::new(|o: &Outcome| o.order_done_s.iter().filter(|t| !t.is_nan()).count() as f64),
        ));
        out.push((
            "late orders",
            "orders",
            Box::new(move |o: &Outcome| {
                due.iter()
                    .zip(&o.order_done_s)
                    .filter(|(d, t)| match d {
                        Some(d) => {
                            if t.is_nan() {
                                *d < o.horizon_s
                            } else {
                                **t > *d
                            }
                        }
                        None => false,
                    })
                    .count() as f64
            }),
        ));
        out.push((
            "total tardiness",
            unit,
            Box::new(move |o: &Outcome| {
                due2.iter()
                    .zip(&o.order_done_s)
                    .map(|(d, t)| match d {
                        Some(d) => {
                            let end = if t.is_nan() { o.horizon_s } else { *t };
                            (end - d).max(0.0) / u
                        }
                        None => 0.0,
                    })
                    .sum()
            }),
        ));
    }
    out
}

/// The study in numbers.
#[derive(Debug, Clone)]
pub struct Report {
    pub names: Vec<String>,
    /// The unit of every time in the report (the model's).
    pub time_unit: &'static str,
    pub replications: usize,
    pub kpis: Vec<KpiRow>,
    /// Per order of the baseline: id, due, completion per variant,
    /// differences, and in how many replications it was not done.
    pub orders: Vec<OrderRow>,
    /// Per machine: utilisation per variant and each difference.
    pub machines: Vec<MachineRow>,
    /// Per variant: the machine with the highest mean utilisation.
    pub bottleneck: Vec<(String, f64)>,
    /// Little's law over every run: (largest relative gap L vs λW, largest
    /// relative bookkeeping error ∫WIP vs Σ per-job time).
    pub little_gap_max: f64,
    pub little_gap_mean: f64,
    /// Mean over runs of L (time-average WIP) and of λW (completed jobs).
    pub little_l: f64,
    pub little_lw: f64,
    pub bookkeeping_err_max: f64,
    /// Machines no routing goes through (left out of the machine rows).
    pub unrouted: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: String,
    /// In the model's time unit.
    pub due: Option<f64>,
    pub done: Vec<Estimate>,
    pub diffs: Vec<Estimate>,
    pub not_done: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct MachineRow {
    pub id: String,
    pub utilisation: Vec<Estimate>,
    pub diffs: Vec<Estimate>,
    /// Baseline share of time per state.
    pub time_in_share: [f64; 7],
}

impl Report {
    pub fn new(r: &StudyResult) -> Report {
        let base = &r.models[0];
        let mut kpi_rows = Vec::new();
        for (name, unit, f) in kpis(base) {
            let per: Vec<Vec<f64>> = r.runs.iter().map(|v| v.iter().map(&f).collect()).collect();
            kpi_rows.push(KpiRow {
                name,
                unit,
                values: per
                    .iter()
                    .map(|v| Estimate::of(v.iter().copied()))
                    .collect(),
                diffs: per[1..]
                    .iter()
                    .map(|v| Estimate::paired(&per[0], v))
                    .collect(),
            });
        }
        let mut orders = Vec::new();
        for (oi, o) in base.orders.iter().enumerate() {
            let per: Vec<Vec<f64>> = r
                .runs
                .iter()
                .map(|v| {
                    v.iter()
                        .map(|x| x.order_done_s[oi] / base.time_unit_s)
                        .collect()
                })
                .collect();
            orders.push(OrderRow {
                id: o.id.clone(),
                due: o.due_s.map(|d| d / base.time_unit_s),
                done: per
                    .iter()
                    .map(|v| Estimate::of(v.iter().copied()))
                    .collect(),
                diffs: per[1..]
                    .iter()
                    .map(|v| Estimate::paired(&per[0], v))
                    .collect(),
                not_done: per
                    .iter()
                    .map(|v| v.iter().filter(|x| x.is_nan()).count())
                    .collect(),
            });
        }
        let mut machines = Vec::new();
        let mut unrouted = Vec::new();
        for (si, s) in base.stations.iter().enumerate() {
            // Routed in the baseline or any scenario (an alternative
            // machine may join a routing there).
            let routed = r.models.iter().any(|m| {
                m.products.iter().any(|p| {
                    p.routing
                        .iter()
                        .any(|st| st.stations.contains(&(si as u32)))
                })
            });
            if !routed {
                unrouted.push(s.id.clone());
                continue;
            }
            let per: Vec<Vec<f64>> = r
                .runs
                .iter()
                .map(|v| v.iter().map(|x| x.utilisation(si)).collect())
                .collect();
            let mut share = [0.0; 7];
            for o in &r.runs[0] {
                let total: f64 = o.time_in[si].iter().sum();
                if total > 0.0 {
                    for (k, t) in o.time_in[si].iter().enumerate() {
                        share[k] += t / total / r.runs[0].len() as f64;
                    }
                }
            }
            machines.push(MachineRow {
                id: s.id.clone(),
                utilisation: per
                    .iter()
                    .map(|v| Estimate::of(v.iter().copied()))
                    .collect(),
                diffs: per[1..]
                    .iter()
                    .map(|v| Estimate::paired(&per[0], v))
                    .collect(),
                time_in_share: share,
            });
        }
        let bottleneck = (0..r.runs.len())
            .map(|v| {
                machines
                    .iter()
                    .map(|m| (m.id.clone(), m.utilisation[v].mean))
                    .fold(
                        (String::from("–"), -1.0),
                        |a, b| if b.1 > a.1 { b } else { a },
                    )
            })
            .collect();
        let (mut gmax, mut gsum, mut n, mut bmax) = (0.0f64, 0.0, 0usize, 0.0f64);
        let (mut lsum, mut lwsum) = (0.0, 0.0);
        for o in r.runs.iter().flatten() {
            let (l, lw, g) = o.little();
            gmax = gmax.max(g);
            gsum += g;
            lsum += l;
            lwsum += if lw.is_finite() { lw } else { 0.0 };
            n += 1;
            if o.wip_area > 0.0 {
                bmax = bmax.max((o.wip_area - o.wip_area_by_job).abs() / o.wip_area);
            }
        }
        Report {
            names: r.names.clone(),
            time_unit: base.time_unit,
            replications: r.runs.first().map_or(0, Vec::len),
            kpis: kpi_rows,
            orders,
            machines,
            bottleneck,
            little_gap_max: gmax,
            little_gap_mean: if n == 0 { 0.0 } else { gsum / n as f64 },
            little_l: lsum / n.max(1) as f64,
            little_lw: lwsum / n.max(1) as f64,
            bookkeeping_err_max: bmax,
            unrouted,
        }
    }

    /// The KPI table, the machines, the orders that move, and the checks.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let pm = |e: &Estimate| {
            if e.half_width.is_finite() {
                format!("{:.3} ± {:.3}", e.mean, e.half_width)
            } else {
                format!("{:.3}", e.mean)
            }
        };
        let _ = writeln!(
            s,
            "{} replications per variant; ± is the 95 % confidence half-width; Δ is scenario − baseline, paired (common random numbers).\n",
            self.replications
        );
        let mut header = format!("{:<22} {:<7}", "KPI", "unit");
        for n in &self.names {
            let _ = write!(header, " | {:>22}", clip(n, 22));
        }
        for n in &self.names[1..] {
            let _ = write!(header, " | {:>24}", format!("Δ {}", clip(n, 20)));
        }
        let _ = writeln!(s, "{header}");
        let _ = writeln!(s, "{}", "-".repeat(header.chars().count()));
        for k in &self.kpis {
            let mut line = format!("{:<22} {:<7}", k.name, k.unit);
            for v in &k.values {
                let _ = write!(line, " | {:>22}", pm(v));
            }
            for d in &k.diffs {
                let mark = if d.significant() { " *" } else { "  " };
                let _ = write!(line, " | {:>22}{mark}", pm(d));
            }
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s, "(* the interval excludes 0)\n");
        let _ = writeln!(
            s,
            "Utilisation (running + setup share of time), per machine — {}; then Δ of {}:",
            self.names.join(" | "),
            if self.names.len() > 1 {
                self.names[1..].join(" | ")
            } else {
                "–".into()
            }
        );
        for m in &self.machines {
            let mut line = format!("  {:<14}", m.id);
            for v in &m.utilisation {
                let _ = write!(line, " {:>7.1} %", v.mean * 100.0);
            }
            for d in &m.diffs {
                let _ = write!(
                    line,
                    "  Δ {:+6.1} ± {:4.1} pt",
                    d.mean * 100.0,
                    d.half_width * 100.0
                );
            }
            let shares: Vec<String> = SimState::ALL
                .iter()
                .filter(|st| m.time_in_share[st.index()] >= 0.005)
                .map(|st| {
                    format!(
                        "{} {:.0} %",
                        st.label(),
                        m.time_in_share[st.index()] * 100.0
                    )
                })
                .collect();
            let _ = writeln!(line, "   baseline: {}", shares.join(", "));
            s.push_str(&line);
        }
        if !self.unrouted.is_empty() {
            let _ = writeln!(
                s,
                "  (not in any routing, left out: {})",
                self.unrouted.join(", ")
            );
        }
        let _ = writeln!(s);
        for (n, (m, u)) in self.names.iter().zip(&self.bottleneck) {
            let _ = writeln!(s, "Bottleneck, {n}: {m} ({:.1} % utilised)", u * 100.0);
        }
        let moved: Vec<&OrderRow> = self
            .orders
            .iter()
            .filter(|o| {
                o.diffs
                    .iter()
                    .any(|d| d.mean.abs() > 1e-9 || d.n < o.done[0].n)
            })
            .collect();
        if !self.orders.is_empty() {
            let _ = writeln!(
                s,
                "\nOrders: {} in the model, {} finish at a different time in some scenario.",
                self.orders.len(),
                moved.len()
            );
            for o in moved.iter().take(15) {
                let mut line = format!(
                    "  {:<14} due {:>8}",
                    o.id,
                    o.due
                        .map_or("–".into(), |d| format!("{d:.2} {}", self.time_unit))
                );
                for (v, e) in o.done.iter().enumerate() {
                    let nd = o.not_done[v];
                    let cell = if e.n == 0 {
                        "not done by the horizon".to_string()
                    } else if nd > 0 {
                        format!(
                            "done {:.2} {} in {} of {}",
                            e.mean,
                            self.time_unit,
                            e.n,
                            e.n + nd
                        )
                    } else {
                        format!("done {:.2} {}", e.mean, self.time_unit)
                    };
                    let _ = write!(line, " | {cell:>26}");
                }
                for d in &o.diffs {
                    if d.n == 0 {
                        let _ = write!(line, " | Δ –");
                    } else {
                        let _ = write!(
                            line,
                            " | Δ {:+.2} ± {:.2} {}{}",
                            d.mean,
                            d.half_width,
                            self.time_unit,
                            if d.n < self.replications {
                                format!(" (the {} runs done in both)", d.n)
                            } else {
                                String::new()
                            }
                        );
                    }
                }
                let _ = writeln!(s, "{line}");
            }
        }
        let _ = writeln!(
            s,
            "\nLittle's law over each run's window, L = λ·W with every job present in it counted \
             for its time inside the window: holds in every run to {:.1e} (relative). With \
             completed jobs only (the steady-state form): L {:.2} vs λ·W {:.2} on average, {:.1} % \
             apart (largest {:.1} %) — close in a long run, apart when a run starts or ends with \
             many jobs in the plant.",
            self.bookkeeping_err_max,
            self.little_l,
            self.little_lw,
            self.little_gap_mean * 100.0,
            self.little_gap_max * 100.0
        );
        s
    }

    /// The KPI, order and machine rows as CSV (one row per quantity and
    /// variant).
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "kpi,unit,variant,mean,half_width_95,diff_mean,diff_half_width_95,replications\n",
        );
        for k in &self.kpis {
            self.csv_rows(&mut s, k.name, k.unit, &k.values, &k.diffs);
        }
        for o in &self.orders {
            let name = format!("order {} completion", o.id);
            self.csv_rows(&mut s, &name, self.time_unit, &o.done, &o.diffs);
        }
        for m in &self.machines {
            let name = format!("utilisation {}", m.id);
            self.csv_rows(&mut s, &name, "1", &m.utilisation, &m.diffs);
        }
        s
    }

    /// One quantity: a row per variant, the scenarios' with their difference.
    fn csv_rows(
        &self,
        s: &mut String,
        name: &str,
        unit: &str,
        values: &[Estimate],
        diffs: &[Estimate],
    ) {
        for (v, e) in values.iter().enumerate() {
            let (dm, dh) = match v.checked_sub(1).and_then(|i| diffs.get(i)) {
                Some(d) => (d.mean.to_string(), d.half_width.to_string()),
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                s,
                "{},{unit},{},{},{},{dm},{dh},{}",
                csv(name),
                csv(&self.names[v]),
                e.mean,
                e.half_width,
                e.n
            );
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
