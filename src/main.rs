//! The `mezzanine` binary: command line and configuration in, the desktop
//! app (or a headless tool: `check`, `generate-demo-plant`) out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bevy::prelude::*;
use bevy::window::WindowResolution;
use bevy_egui::EguiPlugin;
use clap::{Parser, Subcommand};

use mezzanine::config::AppConfig;
use mezzanine::registry::{AssetRegistry, asset_refs, load_registry};
use mezzanine::render::{CaptureRequest, RenderOptions, RenderPlugin};
use mezzanine::scene::layout::{Binder, Layout};
use mezzanine::{TwinCorePlugins, demo, scene, ui};

#[derive(Parser, Debug)]
#[command(
    name = "mezzanine",
    version,
    about = "A desktop digital twin for manufacturing (ISA-95 Level 3.5)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Debug, Default)]
struct RunArgs {
    /// Configuration file (TOML); defaults run the embedded demo plant.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Plant layout (glTF/GLB), overriding the config.
    #[arg(long)]
    scene: Option<PathBuf>,
    /// Asset registry (TOML), overriding the config.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Window size, e.g. 1280x800.
    #[arg(long, value_parser = parse_size)]
    window_size: Option<(u32, u32)>,
    /// Turn shadows off (helps software rendering).
    #[arg(long)]
    no_shadows: bool,
    /// Turn multisampling off (helps software rendering).
    #[arg(long)]
    no_msaa: bool,
    /// Save a screenshot of the plant to this PNG once it is shown, then exit.
    #[arg(long)]
    screenshot: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the desktop app (the default).
    Run(RunArgs),
    /// Check that a layout and a registry agree; exit code 1 if anything is unbound.
    Check {
        /// Plant layout (glTF/GLB).
        scene: PathBuf,
        /// Asset registry (TOML).
        registry: PathBuf,
    },
    /// Regenerate the demo plant's layout and registry.
    GenerateDemoPlant {
        /// Output folder.
        #[arg(long, default_value = "scenes")]
        out: PathBuf,
    },
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in `{s}`"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in `{s}`"))?;
    if w < 320 || h < 240 {
        return Err(format!("`{s}` is smaller than 320x240"));
    }
    Ok((w, h))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(RunArgs {
            config: args.config.or(cli.run.config),
            ..args
        }),
        Some(Command::Check { scene, registry }) => check(&scene, &registry),
        Some(Command::GenerateDemoPlant { out }) => generate(&out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check(scene: &std::path::Path, registry: &std::path::Path) -> anyhow::Result<ExitCode> {
    let reg = load_registry(registry)?;
    let layout = Layout::read(scene)?;
    let report = layout.bind(&Binder::new(asset_refs(&reg)));
    print!("{}", report.to_text());
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn generate(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let spec = demo::plant::PlantSpec::demo();
    let (glb, toml) = demo::write_plant(&spec, out, "demo-plant")?;
    println!(
        "wrote {} ({} machines) and {}",
        glb.display(),
        spec.machines.len(),
        toml.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = AppConfig::load(args.config.as_deref())?;
    if let Some(s) = args.scene {
        cfg.plant.scene = s;
    }
    if let Some(r) = args.registry {
        cfg.plant.registry = r;
    }
    if let Some((w, h)) = args.window_size {
        cfg.window.width_px = w;
        cfg.window.height_px = h;
    }
    cfg.render.shadows &= !args.no_shadows;
    cfg.render.msaa &= !args.no_msaa;
    cfg.validate()?;
    let registry = load_registry(&cfg.plant.registry)
        .with_context(|| "the asset registry must load before the plant can be shown")?;

    let mut app = App::new();
    scene::register_plant_source(&mut app, &cfg.plant.scene);
    app.add_plugins(DefaultPlugins.set(WindowPlugin {
        primary_window: Some(Window {
            title: format!("Mezzanine — {}", registry.plant.name),
            resolution: WindowResolution::new(cfg.window.width_px, cfg.window.height_px),
            ..default()
        }),
        ..default()
    }))
    .add_plugins(EguiPlugin::default())
    .add_plugins(TwinCorePlugins {
        registry: AssetRegistry::new(registry),
        layout_path: cfg.plant.scene.clone(),
    })
    .add_plugins(RenderPlugin {
        options: RenderOptions {
            shadows: cfg.render.shadows,
            msaa: cfg.render.msaa,
        },
        capture: args.screenshot.map(|path| CaptureRequest {
            path,
            settle_frames: 20,
            exit_after: true,
            max_frames: 3_000,
        }),
    })
    .add_plugins(ui::UiPlugin);
    Ok(match app.run() {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    })
}
