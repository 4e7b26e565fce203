//! `mezzanine schedule --from-history`: the plant as recorded at a moment
//! and the MES plan recorded then in; the twin's schedule against the MES
//! plan (conflicts, per-order differences, robustness with confidence
//! intervals) on stdout, the schedule as B2MML and, on request, published
//! as a recommendation. `mezzanine schedule --jsp file | --fjsp file`: a
//! benchmark instance in, the solver's makespan, its gap to a lower bound
//! and the time to its best out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::ScheduleArgs;
use crate::schedule::instance::{parse_fjsp, parse_jsp};
use crate::schedule::plan::{Objective, check as check_plan};
use crate::schedule::solver::{SolveOptions, check, solve};
use crate::schedule::study::{StudyOptions, run as run_study};

pub fn run(config: Option<PathBuf>, args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    if args.from_history {
        return from_history(config, args);
    }
    benchmark(
        args.jsp.as_deref(),
        args.fjsp.as_deref(),
        args.time_limit_s,
        args.seed,
        args.lower_bound,
    )
}

fn from_history(config: Option<PathBuf>, args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let objective = Objective::parse(&args.objective)?;
    let fork = super::whatif::fork(super::whatif::ForkArgs {
        config,
        at: &args.at,
        horizon_h: args.horizon_h,
        fit_hours: args.fit_hours,
        calendar: args.calendar.clone(),
        history: args.history.clone(),
        registry: args.registry.clone(),
    })?;
    let mes = crate::history::query::schedule_at(&fork.store.conn, fork.at_us)?;
    let alternatives = crate::schedule::live::same_class_alternatives(&fork.registry, &fork.model);
    let opts = StudyOptions {
        objective,
        time_limit: Duration::from_secs_f64(args.time_limit_s.max(0.0)),
        seed: args.seed,
        replications: args.replications,
        threads: args.threads,
    };
    eprintln!(
        "scheduling for {:.0} s, then {} replications of each schedule …",
        args.time_limit_s, args.replications
    );
    let study = super::whatif::with_progress(|progress| {
        run_study(
            &fork.model,
            &fork.fits,
            &alternatives,
            mes.as_ref().map(|(s, src, at)| (s, src.as_str(), *at)),
            opts,
            progress,
            None,
        )
        .map_err(|e| crate::whatif::WhatIfError::Model(e.to_string()))
    })?;
    if let Some(problem) = check_plan(&study.live.problem, &study.twin.best) {
        anyhow::bail!("the solver returned an infeasible schedule: {problem}");
    }
    print!("{}", study.text());
    for line in &fork.text {
        if line.starts_with("note:") {
            println!("{line}");
        }
    }
    let stamp = crate::mes::rfc3339(fork.at_us)
        .replace([':', '-'], "")
        .replace('.', "");
    let id = format!("reschedule-{stamp}");
    if let Some(path) = &args.b2mml {
        crate::mes::recommend::write_b2mml(path, &study.schedule_record(&id))?;
        println!(
            "B2MML ProductionSchedule {id} written to {}",
            path.display()
        );
    }
    if args.publish {
        let broker = broker(&fork.cfg)?;
        let rec = study.recommendation(&id);
        let topic =
            crate::mes::recommend::publish(&broker, &fork.cfg.mes, &rec, Duration::from_secs(10))?;
        println!("recommendation published (retained) on {topic}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The configured broker, for publishing.
fn broker(cfg: &crate::config::AppConfig) -> anyhow::Result<crate::mes::recommend::Broker> {
    let Some(url) = &cfg.mqtt.url else {
        anyhow::bail!(
            "no broker to publish to: set [mqtt] url (or MEZZANINE_MQTT_URL); the embedded demo's broker runs only inside the app"
        );
    };
    let u = crate::ingest::mqtt::parse_mqtt_url(url)?;
    let tls = if u.tls {
        Some(crate::ingest::mqtt::TlsFiles {
            ca_file: cfg
                .mqtt
                .ca_file
                .clone()
                .ok_or_else(|| anyhow::anyhow!("{url} is TLS: set [mqtt] ca_file"))?,
            client_cert_file: cfg.mqtt.client_cert_file.clone(),
            client_key_file: cfg.mqtt.client_key_file.clone(),
        })
    } else {
        None
    };
    Ok(crate::mes::recommend::Broker {
        host: u.host,
        port: u.port,
        client_id: format!(
            "{}-recommend",
            cfg.mqtt.client_id_for(crate::config::MqttRole::Record)?
        ),
        username: cfg.mqtt.username.clone(),
        password: cfg.mqtt.password.clone(),
        tls,
    })
}

fn benchmark(
    jsp: Option<&Path>,
    fjsp: Option<&Path>,
    time_limit_s: f64,
    seed: u64,
    lower_bound: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let (path, flexible) = match (jsp, fjsp) {
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
        _ => anyhow::bail!("give one instance: --jsp file.txt or --fjsp file.fjs"),
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let inst = if flexible {
        parse_fjsp(path, &text)?
    } else {
        parse_jsp(path, &text)?
    };
    let opts = SolveOptions {
        time_limit: Duration::from_secs_f64(time_limit_s.max(0.0)),
        max_iterations: None,
        seed,
    };
    println!(
        "{}: {} jobs, {} machines, {} operations{}; time limit {time_limit_s} s, seed {seed}",
        inst.name,
        inst.jobs.len(),
        inst.machines,
        inst.ops.len(),
        if inst.is_classic() { "" } else { " (flexible)" }
    );
    let r = solve(&inst, opts, None);
    if let Some(problem) = check(&inst, &r.best) {
        anyhow::bail!("the solver returned an infeasible schedule: {problem}");
    }
    let lb = lower_bound.unwrap_or_else(|| inst.trivial_lower_bound());
    println!(
        "makespan {} (start {}), lower bound {lb}{}, gap {:.2} %, best found after {:.3} s, {} iterations in {:.2} s (stopped: {})",
        r.best.makespan,
        r.initial_makespan,
        if lower_bound.is_some() {
            ""
        } else {
            " (trivial)"
        },
        (f64::from(r.best.makespan) - f64::from(lb)) / f64::from(lb.max(1)) * 100.0,
        r.time_to_best.as_secs_f64(),
        r.iterations,
        r.elapsed.as_secs_f64(),
        r.stopped
    );
    for (m, q) in r.best.sequence.iter().enumerate() {
        let ops: Vec<String> = q
            .iter()
            .map(|&o| format!("J{}@{}", inst.ops[o].job + 1, r.best.start[o]))
            .collect();
        println!("  M{m}: {}", ops.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}
