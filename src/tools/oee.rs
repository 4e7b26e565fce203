//! `mezzanine oee`: a period of the history, the shift calendar and the
//! loss rules in; the OEE table by shift, day, machine or line (and the
//! total) on stdout, optionally as CSV; for one machine its loss waterfall
//! and the Pareto of its losses.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::calendar::ShiftCalendar;
use crate::cli::{OeeArgs, parse_time};
use crate::oee::history::{machine_inputs, machines};
use crate::oee::table::{By, periods, table};
use crate::oee::{LossRules, Oee};

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{:.1}", v * 100.0))
}

pub fn run(config: Option<PathBuf>, args: OeeArgs) -> anyhow::Result<ExitCode> {
    let by = By::parse(&args.by)
        .ok_or_else(|| anyhow::anyhow!("--by {}: expected shift, day, machine or line", args.by))?;
    let (cfg, registry, store) =
        super::whatif::open_history(config, args.history.clone(), args.registry.clone())?;
    let conn = &store.conn;
    let range = crate::history::query::recorded_range(conn)?
        .ok_or_else(|| anyhow::anyhow!("the history holds no samples yet"))?;
    let tz = registry.plant().time_zone.clone();
    let time = |s: &str, default: i64| -> anyhow::Result<i64> {
        match s {
            "start" | "end" => Ok(default),
            s => parse_time(s, &tz).map_err(anyhow::Error::msg),
        }
    };
    let from_us = time(&args.from, range.0)?;
    let to_us = time(&args.to, range.1)?;
    if to_us <= from_us {
        anyhow::bail!("--to must be after --from");
    }
    let calendar = match args.calendar.or_else(|| cfg.plant.shift_calendar.clone()) {
        Some(p) => Some(ShiftCalendar::load(&p)?),
        None => None,
    };
    let time_scale = if cfg.embedded_demo() {
        cfg.demo.time_scale
    } else {
        1.0
    };
    let rules = match args.rules.as_ref().or(cfg.plant.oee_rules.as_ref()) {
        Some(p) => LossRules::load(p)?,
        None => LossRules::default(),
    };
    // The embedded demo runs its clock faster: thresholds in recorded time.
    let rules = rules.scaled(time_scale);
    let mut assets = machines(&registry);
    if let Some(m) = &args.machine {
        let idx = registry
            .by_id(m)
            .ok_or_else(|| anyhow::anyhow!("--machine {m}: no such asset in the registry"))?;
        if !assets.contains(&idx) {
            anyhow::bail!("--machine {m}: it has no ideal cycle time in the registry, so no OEE");
        }
        assets = vec![idx];
    }
    let inputs = machine_inputs(
        conn,
        &store.props,
        &registry,
        &assets,
        from_us,
        to_us,
        range.1,
        time_scale,
    )?;
    let lines: Vec<String> = assets
        .iter()
        .map(|a| {
            registry.get(*a).map_or_else(String::new, |r| {
                format!("{}/{}", r.isa95.area, r.isa95.work_center)
            })
        })
        .collect();
    let ps = periods(calendar.as_ref(), &tz, from_us, to_us, by);
    let (rows, total) = table(&inputs, &lines, &ps, by, &rules);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "OEE {} – {} ({tz}) · {} · loss rules: {} (micro-stops < {} s, changeovers {}, start-up rejects within {} s{})",
        crate::mes::rfc3339(from_us),
        crate::mes::rfc3339(to_us),
        match &calendar {
            Some(c) => format!("shift calendar {}", c.source.display()),
            None => "no shift calendar: all time counted as planned".into(),
        },
        rules
            .source
            .as_ref()
            .map_or_else(|| "defaults".into(), |p| p.display().to_string()),
        rules.micro_stop_threshold_s,
        if rules.changeover_counts {
            "against availability"
        } else {
            "planned (excluded)"
        },
        rules.startup_reject_window_s,
        if time_scale == 1.0 {
            String::new()
        } else {
            format!("; recorded time: the demo runs {time_scale}× faster than the plant")
        }
    );
    if by == By::Shift && calendar.is_none() {
        let _ = writeln!(
            out,
            "(no shift calendar: one row per day instead of per shift)"
        );
    }
    let _ = writeln!(
        out,
        "| {} | planned h | run h | A % | P % | Q % | OEE % | produced | good | MES Q % (operations) |",
        args.by
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    let line = |label: &str, o: &Oee| {
        format!(
            "| {label} | {:.2} | {:.2} | {} | {} | {} | {} | {:.0} | {:.0} | {} ({}) |",
            o.planned_s / 3600.0,
            o.run_s / 3600.0,
            pct(o.availability()),
            pct(o.performance()),
            pct(o.quality()),
            pct(o.oee()),
            o.produced,
            o.good,
            pct(o.mes_quality()),
            o.mes_operations
        )
    };
    for r in &rows {
        let _ = writeln!(out, "{}", line(&r.label, &r.oee));
    }
    let _ = writeln!(out, "{}", line("**total**", &total));
    if args.machine.is_some() {
        let _ = writeln!(out, "\nloss waterfall:");
        let mut prev: Option<f64> = None;
        for (name, s) in total.waterfall() {
            let lost = prev.map(|p| p - s);
            let _ = writeln!(
                out,
                "  {name:<24} {:>8.2} h{}",
                s / 3600.0,
                lost.map_or(String::new(), |l| if l >= 0.0 {
                    format!("   (− {:.2} h)", l / 3600.0)
                } else {
                    format!(
                        "   (+ {:.2} h: faster than the ideal cycle time)",
                        -l / 3600.0
                    )
                })
            );
            prev = Some(s);
        }
        let _ = writeln!(
            out,
            "\nlosses, largest first (A, P: time; Q: ideal time of the rejects):"
        );
        for (loss, reason, s) in total.pareto() {
            let _ = writeln!(
                out,
                "  {} {:<22} {:<28} {:>8.1} min",
                loss.factor(),
                loss.label(),
                reason,
                s / 60.0
            );
        }
    }
    let mut warnings = total.warnings.clone();
    warnings.sort();
    warnings.dedup();
    for w in &warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    print!("{out}");
    if let Some(p) = &args.csv {
        let mut csv = String::from(
            "group,planned_h,run_h,net_run_h,fully_productive_h,availability,performance,quality,oee,produced,good,startup_rejects,production_rejects\n",
        );
        let num = |x: Option<f64>| x.map_or_else(String::new, |v| format!("{v:.6}"));
        for r in rows.iter().chain(std::iter::once(&crate::oee::table::Row {
            label: "total".into(),
            oee: total.clone(),
        })) {
            let o = &r.oee;
            let _ = writeln!(
                csv,
                "{},{:.6},{:.6},{:.6},{:.6},{},{},{},{},{},{},{},{}",
                r.label.replace(',', " "),
                o.planned_s / 3600.0,
                o.run_s / 3600.0,
                o.net_run_s / 3600.0,
                o.fully_productive_s / 3600.0,
                num(o.availability()),
                num(o.performance()),
                num(o.quality()),
                num(o.oee()),
                o.produced,
                o.good,
                o.startup_rejects,
                o.production_rejects
            );
        }
        std::fs::write(p, csv).with_context(|| format!("writing {}", p.display()))?;
        println!("CSV written to {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
