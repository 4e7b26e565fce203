//! `mezzanine quality …` and `mezzanine audit …`: the history file in;
//! failures, genealogies, rankings and evidence packs, or the audit trail's
//! verification, out (stdout, a folder, the exit code).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::QualityArgs;
use crate::history::audit;
use crate::quality::evidence::{at, write_evidence};
use crate::quality::{compare, genealogy};

pub fn run(
    config: Option<PathBuf>,
    args: QualityArgs,
    demo_inject: Vec<String>,
) -> anyhow::Result<ExitCode> {
    if args.what == "simulate" {
        return simulate(config, &args, demo_inject);
    }
    let (_, registry, store) =
        super::whatif::open_history(config, args.history.clone(), args.registry.clone())?;
    let conn = &store.conn;
    let tz = registry.plant().time_zone.clone();
    let serial = || {
        args.serial
            .clone()
            .ok_or_else(|| anyhow::anyhow!("`quality {}` needs --serial", args.what))
    };
    match args.what.as_str() {
        "failures" => {
            let (_, last) = crate::history::query::recorded_range(conn)?
                .ok_or_else(|| anyhow::anyhow!("the history holds no samples yet"))?;
            let from = last - (args.since_h * 3.6e9) as i64;
            let f = compare::failures(conn, &registry, &store.props, from, last, 500)?;
            println!("| serial | inspected ({tz}) | why |");
            println!("|---|---|---|");
            for x in &f {
                let g = genealogy::part(conn, &registry, &store.props, &x.serial)?;
                println!(
                    "| {} | {} | {} |",
                    x.serial,
                    at(x.ts_us, &tz),
                    g.reasons().join("; ")
                );
            }
            println!(
                "{} failed parts in the last {} h recorded",
                f.len(),
                args.since_h
            );
        }
        "genealogy" => {
            if let Some(lot) = &args.lot {
                for (wo, parts) in genealogy::parts_of_lot(conn, lot)? {
                    println!("lot {lot} → order {wo}: {} parts", parts.len());
                    for p in parts {
                        println!("  {p}");
                    }
                }
            } else if let Some(wo) = &args.work_order {
                let parts = genealogy::parts_of_work_order(conn, wo)?;
                println!("order {wo}: {} parts", parts.len());
                for p in parts {
                    println!("  {p}");
                }
            } else {
                let g = genealogy::part(conn, &registry, &store.props, &serial()?)?;
                println!(
                    "part {} — {:?}; order {}, lot {}",
                    g.serial,
                    g.verdict(),
                    g.work_order().unwrap_or("unknown"),
                    g.material_lots().join(", ")
                );
                println!("| # | asset | in ({tz}) | out | order | lot |");
                println!("|---|---|---|---|---|---|");
                for o in &g.operations {
                    println!(
                        "| {} | {} | {} | {} | {} | {} |",
                        o.seq,
                        o.asset_id,
                        at(o.start_us, &tz),
                        o.end_us
                            .map_or_else(|| "still there".into(), |e| at(e, &tz)),
                        o.work_order.as_deref().unwrap_or("—"),
                        o.material_lot.as_deref().unwrap_or("—")
                    );
                }
                for m in &g.measured {
                    println!(
                        "{} = {:.4} {} (nominal {:.3}, tolerance {}{:.3}){}",
                        m.name,
                        m.value,
                        m.unit,
                        m.nominal,
                        if m.upper_only { "≤ +" } else { "± " },
                        m.tolerance,
                        if m.in_tolerance() {
                            ""
                        } else {
                            "  OUT OF TOLERANCE"
                        }
                    );
                }
                for d in &g.dispositions {
                    println!(
                        "MES disposition {} {} at {}",
                        d.disposition,
                        d.defect_codes.join(","),
                        at(d.ts_us, &tz)
                    );
                }
            }
        }
        "rank" => {
            let r = compare::rank(conn, &registry, &store.props, &serial()?, args.good)?;
            println!(
                "part {} ({:?}): {}",
                r.genealogy.serial,
                r.genealogy.verdict(),
                r.genealogy.reasons().join("; ")
            );
            println!(
                "| # | operation | asset | signal | score | value | good median | good parts |"
            );
            println!("|---|---|---|---|---|---|---|---|");
            for (k, d) in r.differences.iter().take(20).enumerate() {
                println!(
                    "| {} | {} | {} | {}{} | {:+.1}{} | {:.4} | {:.4} | {} |",
                    k + 1,
                    d.operation,
                    d.asset_id,
                    d.property,
                    d.at_hz.map(|h| format!(" @ {h:.0} Hz")).unwrap_or_default(),
                    d.score,
                    if d.alarm() { " ⚠" } else { "" },
                    d.value,
                    d.median,
                    d.n_good
                );
            }
            println!("ranked in {:.0} ms", r.elapsed_ms);
        }
        "batch" => {
            let (_, last) = crate::history::query::recorded_range(conn)?
                .ok_or_else(|| anyhow::anyhow!("the history holds no samples yet"))?;
            let from = last - (args.since_h * 3.6e9) as i64;
            let f = compare::failures(conn, &registry, &store.props, from, last, 200)?;
            let serials: Vec<String> = f.into_iter().map(|x| x.serial).collect();
            let rows = compare::rank_batch(conn, &registry, &store.props, &serials, args.good)?;
            println!(
                "{} failed parts in the last {} h: the signals that separate them from good parts",
                serials.len(),
                args.since_h
            );
            println!(
                "| asset | signal | failed parts through it | of them alarmed | median |score| |"
            );
            println!("|---|---|---|---|---|");
            for r in rows.iter().take(20) {
                println!(
                    "| {} | {} | {} | {} | {:.1} |",
                    r.asset_id, r.property, r.parts, r.alarmed, r.median_abs_score
                );
            }
        }
        "evidence" => {
            let out = args
                .out
                .clone()
                .ok_or_else(|| anyhow::anyhow!("`quality evidence` needs --out DIR"))?;
            let s = serial()?;
            let r = write_evidence(
                conn,
                &registry,
                &store.props,
                &s,
                &out,
                args.good,
                |f, what| {
                    eprintln!("[{:>3.0} %] {what}", f * 100.0);
                },
            )
            .with_context(|| format!("writing the evidence pack for {s}"))?;
            println!(
                "wrote {} ({} files, {} samples, {} spectra); check with `sha256sum -c manifest.sha256` in it",
                r.dir.display(),
                r.files.len() + 2,
                r.samples,
                r.spectra
            );
        }
        other => anyhow::bail!(
            "unknown `quality {other}` (try failures, genealogy, rank, batch, evidence or simulate)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Records the demo plant into the history file, faster than real time,
/// ending now.
fn simulate(
    config: Option<PathBuf>,
    args: &QualityArgs,
    demo_inject: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let cfg = super::tool_config(config, args.history.clone(), args.registry.clone())?;
    let registry = std::sync::Arc::new(crate::registry::AssetRegistry::new(
        crate::registry::load_registry(&cfg.plant.registry)?,
    ));
    let injections = demo_inject
        .iter()
        .chain(&cfg.demo.inject)
        .map(|s| s.parse())
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    let path = cfg.history.db_path();
    let start_us = crate::ingest::now_us() - (args.minutes * 60e6) as i64;
    let run = crate::demo::record::record_demo(
        &path,
        registry,
        &crate::demo::record::RecordSettings {
            seed: args.seed,
            minutes: args.minutes,
            time_scale: cfg.demo.time_scale,
            start_us,
            injections,
            ..Default::default()
        },
        |f| eprintln!("[{:>3.0} %] recording", f * 100.0),
    )
    .with_context(|| format!("recording into {}", path.display()))?;
    let failed = run.parts.iter().filter(|p| p.failed).count();
    println!(
        "recorded {} minutes of the demo plant into {}: {} samples, {} parts finished, {} failed",
        args.minutes,
        path.display(),
        run.samples_written,
        run.parts.len(),
        failed
    );
    for p in run.parts.iter().filter(|p| p.failed).take(10) {
        println!(
            "  failed: {} ({})",
            p.serial,
            p.cause.map_or("natural variation", |c| c.describe())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn audit(
    config: Option<PathBuf>,
    what: &str,
    history: Option<PathBuf>,
    registry: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (_, _, store) = super::whatif::open_history(config, history, registry)?;
    match what {
        "verify" => match audit::verify(&store.conn)? {
            Ok((n, head)) => {
                println!("audit trail intact: {n} records, head hash {head}");
                Ok(ExitCode::SUCCESS)
            }
            Err(b) => {
                println!("audit trail BROKEN at record {}: {}", b.seq, b.reason);
                Ok(ExitCode::from(1))
            }
        },
        "list" => {
            for r in audit::records(&store.conn, None)? {
                let e = &r.entry;
                println!(
                    "{:>5} {} {} {} {}={} {} {} {}",
                    r.seq,
                    at(e.ts_us, &e.time_zone),
                    e.kind,
                    e.subject,
                    e.field,
                    e.value.as_deref().unwrap_or(""),
                    e.signer.as_deref().unwrap_or(""),
                    e.meaning.as_deref().unwrap_or(""),
                    &r.hash[..16]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("unknown `audit {other}` (try verify or list)"),
    }
}
