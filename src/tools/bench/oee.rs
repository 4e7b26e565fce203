//! `mezzanine bench oee`: OEE for the demo plant's machines × 30 days by
//! shift from a generated history of 100 million samples (10 million with
//! `--quick`), and the live tracker's cost per observed change.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

use crate::calendar::ShiftCalendar;
use crate::history::Store;
use crate::oee::LossRules;
use crate::oee::history::{machine_inputs, machines};
use crate::oee::live::LiveTracker;
use crate::oee::table::{By, periods, table};
use crate::registry::{AssetRegistry, load_registry};
use crate::twin::MachineState;

const DAYS: i64 = 30;

pub fn run_oee_bench(quick: bool) -> anyhow::Result<()> {
    let total_rows: i64 = if quick { 10_000_000 } else { 100_000_000 };
    let registry = AssetRegistry::new(load_registry(&crate::config::shipped(
        "scenes/demo-plant.toml",
    ))?);
    let calendar = ShiftCalendar::load(&crate::config::shipped("docs/whatif/shifts.toml"))?;
    let dir = std::env::temp_dir().join(format!(
        "mezzanine-bench-oee-{}-{}",
        std::process::id(),
        crate::ingest::now_us()
    ));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("oee.duckdb");
    let result = bench(&registry, &calendar, &path, total_rows);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(
    registry: &AssetRegistry,
    calendar: &ShiftCalendar,
    path: &Path,
    total_rows: i64,
) -> anyhow::Result<()> {
    let start_us = 1_780_000_000_000_000i64 - 1_780_000_000_000_000 % 86_400_000_000;
    let end_us = start_us + DAYS * 86_400_000_000;
    let store = Store::open(path, registry).context("creating the bench history")?;
    let c = &store.conn;
    let assets = machines(registry);
    let t0 = Instant::now();
    let mut counter_rows = 0i64;
    let mut filler_ids: Vec<i32> = Vec::new();
    for (m, a) in assets.iter().enumerate() {
        let rec = registry.get(*a).context("asset")?;
        let id = |name: &str| {
            registry
                .property_by_name(*a, name)
                .and_then(|p| store.props.id(p))
        };
        // A state every 5 minutes: running mostly, sometimes down, setup, idle.
        c.execute(
            &format!(
                "INSERT INTO transitions SELECT {start_us} + r * 300000000 + {m} * 1000, '{}',
                   CASE hash(r * 31 + {m}) % 20 WHEN 0 THEN 'down' WHEN 1 THEN 'setup'
                     WHEN 2 THEN 'idle' WHEN 3 THEN 'idle' ELSE 'running' END,
                   CASE hash(r * 31 + {m}) % 20 WHEN 0 THEN 'spindle fault' ELSE NULL END
                 FROM range({}) t(r)",
                rec.id,
                DAYS * 288
            ),
            [],
        )?;
        // Parts at 80 % of the ideal rate, 2 % of them scrap.
        let ideal = crate::oee::history::ideal_cycle_s(registry, *a).unwrap_or(60.0);
        let rate = 0.8 * 60.0 / ideal;
        let parts = id("part_count").or_else(|| id("cycle_count"));
        for (pid, per_minute) in [(parts, rate), (id("scrap_count"), rate * 0.02)] {
            if let Some(pid) = pid {
                c.execute(
                    &format!(
                        "INSERT INTO samples (ts_us, prop_id, value, quality, origin, received_us)
                         SELECT {start_us} + r * 60000000, {pid}, floor(r * {per_minute}), 0, 0,
                                {start_us} + r * 60000000
                         FROM range({}) t(r)",
                        DAYS * 1440
                    ),
                    [],
                )?;
                counter_rows += DAYS * 1440;
            }
        }
        for (pi, p) in rec.properties.iter().enumerate() {
            if !["part_count", "cycle_count", "scrap_count", "state"].contains(&p.name.as_str())
                && let Some(i) = store.props.id(crate::registry::PropertyRef {
                    asset: *a,
                    property: pi as u32,
                })
            {
                filler_ids.push(i);
            }
        }
    }
    // The other properties' samples, evenly over the 30 days.
    let filler = (total_rows - counter_rows).max(0);
    super::fill_samples(c, &filler_ids, start_us, end_us, filler)?;
    let generated_s = t0.elapsed().as_secs_f64();
    let rows: i64 = c.query_row("SELECT count(*) FROM samples", [], |r| r.get(0))?;

    // The 30-day table by shift: read the inputs, compute every shift.
    let rules = LossRules::default();
    let t1 = Instant::now();
    let inputs = machine_inputs(
        c,
        &store.props,
        registry,
        &assets,
        start_us,
        end_us,
        end_us,
        1.0,
    )?;
    let read_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let ps = periods(
        Some(calendar),
        &registry.plant().time_zone,
        start_us,
        end_us,
        By::Shift,
    );
    let (rows_out, total) = table(&inputs, &[], &ps, By::Shift, &rules);
    let compute_s = t2.elapsed().as_secs_f64();

    // Live: the cost of one observed change (a counter reading, a state).
    let mut tracker = LiveTracker::new(
        None,
        rules,
        1.0,
        assets
            .iter()
            .map(|a| (*a, String::new(), Some(60.0)))
            .collect(),
        start_us,
    );
    tracker.roll(start_us);
    let changes: i64 = 10_000_000;
    let t3 = Instant::now();
    for k in 0..changes {
        let i = (k % assets.len() as i64) as usize;
        let ts = start_us + k * 1000;
        if k % 16 == 0 {
            let state = if k % 32 == 0 {
                MachineState::Running
            } else {
                MachineState::Idle
            };
            tracker.observe_state(i, state, None, Some(ts), ts);
        } else {
            tracker.observe_counter(i, false, ts, k as f64);
        }
    }
    let per_change_ns = t3.elapsed().as_secs_f64() * 1e9 / changes as f64;
    let t4 = Instant::now();
    tracker.update(start_us + changes * 1000);
    let live_compute_ms = t4.elapsed().as_secs_f64() * 1e3;

    println!("| step | size | time |");
    println!("|---|---|---|");
    println!(
        "| generate the history | {rows} samples, {} machines × {DAYS} days | {generated_s:.1} s |",
        assets.len()
    );
    println!(
        "| read the OEE inputs (transitions, counters, two scans of the samples) | {} machines | {read_s:.3} s |",
        assets.len()
    );
    println!(
        "| compute the table by shift | {} shifts × {} machines | {compute_s:.3} s |",
        rows_out.len(),
        assets.len()
    );
    println!(
        "| **30-day table, total** | | **{:.3} s** |",
        read_s + compute_s
    );
    println!("| live: one observed change (append) | {changes} changes | {per_change_ns:.1} ns |");
    println!(
        "| live: the once-a-second compute after them | {} machines, {} segments | {live_compute_ms:.1} ms |",
        assets.len(),
        changes / 16
    );
    println!(
        "(plant over 30 days: A {:.1} %, P {:.1} %, Q {:.1} %, OEE {:.1} %; dev profile)",
        total.availability().unwrap_or(0.0) * 100.0,
        total.performance().unwrap_or(0.0) * 100.0,
        total.quality().unwrap_or(0.0) * 100.0,
        total.oee().unwrap_or(0.0) * 100.0
    );
    Ok(())
}
