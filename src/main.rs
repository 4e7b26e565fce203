//! The `mezzanine` binary: the command line in, the desktop app
//! (`mezzanine::app`) or a headless tool (`mezzanine::tools`) out, and the
//! exit code (2 on an error, printed with its causes).

use std::process::ExitCode;

use clap::Parser;

use mezzanine::cli::{Cli, Command, RunArgs};
use mezzanine::{app, tools};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.run.config.clone();
    let result = match cli.command {
        None => app::run(cli.run).map_err(anyhow::Error::from),
        Some(Command::Run(args)) => app::run(RunArgs {
            config: args.config.or(config),
            ..args
        })
        .map_err(anyhow::Error::from),
        Some(Command::Check { scene, registry }) => tools::check::run(&scene, &registry),
        Some(Command::GenerateDemoPlant { out }) => tools::generate::run(&out),
        Some(Command::Bench {
            what,
            quick,
            minutes,
            rate,
        }) => tools::bench::run(&what, quick, minutes, rate),
        Some(Command::Opcua { what, thumbprint }) => match what.as_str() {
            "trust" => tools::opcua_trust::run(config, thumbprint),
            other => Err(anyhow::anyhow!(
                "unknown `opcua {other}` (try `opcua trust`)"
            )),
        },
        Some(Command::Drill {
            what,
            quick,
            kills,
            registry,
            recorders,
            messages,
        }) => match what.as_str() {
            "kill" => tools::drill::run(quick, kills, registry),
            "share" => tools::share::drill(recorders, messages, registry),
            other => Err(anyhow::anyhow!(
                "unknown drill `{other}` (try `kill` or `share`)"
            )),
        },
        Some(Command::Record {
            history,
            registry,
            exit_after_idle_s,
        }) => tools::record::run(
            config,
            history,
            registry,
            exit_after_idle_s,
            cli.run.demo_inject.clone(),
        ),
        Some(Command::Export {
            from,
            to,
            out,
            history,
        }) => tools::export::run(config, &from, &to, &out, history),
        Some(Command::ImportSchedule {
            file,
            history,
            registry,
        }) => tools::import_schedule::run(config, &file, history, registry),
        Some(Command::Whatif(args)) => tools::whatif::run(config, args),
        Some(Command::Schedule(args)) => tools::schedule::run(config, args),
        Some(Command::Oee(args)) => tools::oee::run(config, args),
        Some(Command::Quality(args)) => {
            tools::quality::run(config, args, cli.run.demo_inject.clone())
        }
        Some(Command::Lake { what, lake }) => tools::lake::run(config, &what, lake),
        Some(Command::Audit {
            what,
            history,
            registry,
        }) => tools::quality::audit(config, &what, history, registry),
        Some(Command::DemoPlant {
            mqtt,
            opcua,
            registry,
            seed,
            time_scale,
        }) => tools::demo_plant::run(&mqtt, opcua.as_deref(), registry, seed, time_scale),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
