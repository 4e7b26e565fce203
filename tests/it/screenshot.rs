//! The whole app under Xvfb with Mesa's software Vulkan: it renders the demo
//! plant and its panels, saves a PNG, and the PNG is checked for content.
//!
//! Needs `Xvfb` and a Vulkan driver (Debian: xvfb, mesa-vulkan-drivers);
//! `make test` installs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo;

struct Xvfb {
    child: Child,
    display: String,
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM lets Xvfb remove its lock file; SIGKILL would leave it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A display is free if it has no lock file, or its lock names a process
/// that no longer exists (a killed Xvfb leaves its lock behind).
fn display_free(n: u32) -> bool {
    let lock = PathBuf::from(format!("/tmp/.X{n}-lock"));
    let Ok(text) = std::fs::read_to_string(&lock) else {
        return !lock.exists();
    };
    let alive = text
        .trim()
        .parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    if alive {
        return false;
    }
    let _ = std::fs::remove_file(&lock);
    let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
    true
}

fn start_xvfb() -> Xvfb {
    // Pick a display number nobody holds (a lock file marks a held one).
    let n = (90..140)
        .find(|&n| display_free(n))
        .expect("a free X display number");
    let display = format!(":{n}");
    let child = Command::new("Xvfb")
        .args([&display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start Xvfb ({e}); install xvfb, as `make test` does"));
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Xvfb did not come up on {display}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Xvfb { child, display }
}

/// Waits for an app run that exits after its screenshot. The limit guards
/// against a hung renderer; it is not a performance assertion.
fn wait_for_app(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if start.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("{what} did not finish its screenshot within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Counts pixels per colour family, judged by hue and saturation so that
/// lighting and shading do not matter.
fn colour_families(img: &image::RgbImage) -> [usize; 5] {
    // orange (robots, racks), yellow (aisles, fences), green (running machines), teal (lathes), blue (mills, racks)
    let mut counts = [0usize; 5];
    for p in img.pixels() {
        let [r, g, b] = p.0.map(|c| f32::from(c) / 255.0);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        if max < 0.15 || (max - min) / max < 0.35 {
            continue;
        }
        let d = max - min;
        let hue = if max == r {
            60.0 * (((g - b) / d).rem_euclid(6.0))
        } else if max == g {
            60.0 * ((b - r) / d + 2.0)
        } else {
            60.0 * ((r - g) / d + 4.0)
        };
        let family = match hue {
            h if (15.0..40.0).contains(&h) => 0,
            h if (40.0..65.0).contains(&h) => 1,
            h if (90.0..160.0).contains(&h) => 2,
            h if (160.0..195.0).contains(&h) => 3,
            h if (195.0..250.0).contains(&h) => 4,
            _ => continue,
        };
        counts[family] += 1;
    }
    counts
}

#[test]
fn app_renders_the_demo_plant_with_panels() {
    let xvfb = start_xvfb();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshot-test");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let runtime = out_dir.join("xdg-runtime");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let png = out_dir.join("plant.png");
    let history = out_dir.join("history.duckdb");
    let log = out_dir.join("app.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["--window-size", "1440x810", "--screenshot"])
        .arg(&png)
        .arg("--history")
        .arg(&history)
        .arg("--scene")
        .arg(repo("scenes/demo-plant.glb"))
        .arg("--registry")
        .arg(repo("scenes/demo-plant.toml"))
        .env("DISPLAY", &xvfb.display)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(out_dir.join("app.err")).expect("log"))
        .spawn()
        .expect("app starts");
    let status = wait_for_app(&mut child, "the app");
    let err = std::fs::read_to_string(out_dir.join("app.err")).unwrap_or_default();
    assert!(status.success(), "app exited with {status}:\n{err}");
    let img = image::open(&png)
        .unwrap_or_else(|e| panic!("{} unreadable: {e}\n{err}", png.display()))
        .to_rgb8();
    assert_eq!((img.width(), img.height()), (1440, 810));

    // Not blank: luminance varies across the picture.
    let lum: Vec<f64> = img
        .pixels()
        .map(|p| {
            0.2126 * f64::from(p.0[0]) + 0.7152 * f64::from(p.0[1]) + 0.0722 * f64::from(p.0[2])
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    assert!(
        var > 400.0,
        "image looks blank: luminance variance {var:.1}"
    );

    // Machines are there: several distinct paint families cover real area.
    let families = colour_families(&img);
    let present = families.iter().filter(|&&c| c > 150).count();
    assert!(
        present >= 4,
        "too few machine colours in the render: {families:?}"
    );

    // Live state colours: the picture was taken once the embedded plant had
    // reported states, and running machines show green beacons and pads.
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(png.with_extension("json")).expect("sidecar written"),
    )
    .expect("sidecar is JSON");
    let states: Vec<&str> = sidecar["asset_states"]
        .as_array()
        .expect("states")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let live = states.iter().filter(|s| **s != "no data").count();
    assert!(
        live * 10 >= states.len() * 9,
        "too few live states at capture: {states:?}"
    );
    assert!(
        families[2] > 100,
        "no running-green in the render: {families:?} with {states:?}"
    );

    // Panels are there: the plant tree (left) and inspector (right) are dark egui panels.
    let dark = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        p.iter().all(|&c| c < 60)
    };
    assert!(dark(5, 400), "no left panel at x=5");
    assert!(dark(1435, 400), "no right panel at x=1435");
    drop(xvfb);
    replay_of_the_recorded_run(&out_dir, &history);
    whatif_ghosts_over_the_live_plant(&out_dir);
}

/// A third run: the demo scenario file studied as soon as the MES is
/// heard, the cursor half an hour into the future, two scenarios' ghosts
/// over the live plant and the compare panel beside it.
fn whatif_ghosts_over_the_live_plant(out_dir: &Path) {
    let xvfb = start_xvfb();
    let runtime = out_dir.join("xdg-runtime");
    let png = out_dir.join("whatif.png");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["--window-size", "1600x1000", "--screenshot"])
        .arg(&png)
        .arg("--screenshot-settle-frames")
        .arg("40")
        .arg("--history")
        .arg(out_dir.join("whatif.duckdb"))
        .arg("--whatif")
        .arg(repo("docs/whatif/demo-mill3-down.toml"))
        .args(["--whatif-at-h", "0.5"])
        .env("DISPLAY", &xvfb.display)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out_dir.join("whatif.err")).expect("log"))
        .spawn()
        .expect("app starts");
    let status = wait_for_app(&mut child, "the what-if run");
    let err = std::fs::read_to_string(out_dir.join("whatif.err")).unwrap_or_default();
    assert!(status.success(), "what-if run exited with {status}:\n{err}");
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(png.with_extension("json")).expect("sidecar written"),
    )
    .expect("sidecar is JSON");
    // Ghosts of both scenarios on screen (machines, queues, work items);
    // the baseline's off, as the overlay starts.
    let ghosts: Vec<u64> = sidecar["ghosts_visible"]
        .as_array()
        .expect("ghost counts")
        .iter()
        .map(|v| v.as_u64().unwrap_or(0))
        .collect();
    assert_eq!(ghosts[0], 0, "{sidecar}");
    assert!(ghosts[1] >= 10 && ghosts[2] >= 10, "{sidecar}");
    // The legend over the 3D view and the compare panel draw each
    // scenario's colour swatch exactly.
    let img = image::open(&png).expect("what-if png").to_rgb8();
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    for (v, c) in [(1, [255u8, 120, 30]), (2, [190, 90, 255])] {
        let n = count(c);
        assert!(n > 150, "scenario {v}'s colour {c:?}: {n} pixels");
    }
    drop(xvfb);
    whatif_meeting_pack_from_the_window(out_dir);
}

/// The meeting pack as the panel's button writes it (`--whatif-pack`):
/// the window and each chart as PNG, then the tables and the PDF with the
/// pictures in it; the app exits when it is written.
fn whatif_meeting_pack_from_the_window(out_dir: &Path) {
    let xvfb = start_xvfb();
    let runtime = out_dir.join("xdg-runtime");
    let pack = out_dir.join("pack");
    let _ = std::fs::remove_dir_all(&pack);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["--window-size", "1600x1000"])
        .arg("--history")
        .arg(out_dir.join("pack.duckdb"))
        .arg("--whatif")
        .arg(repo("docs/whatif/demo-mill3-down.toml"))
        .args(["--whatif-at-h", "0.5", "--whatif-pack"])
        .arg(&pack)
        .env("DISPLAY", &xvfb.display)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out_dir.join("pack.err")).expect("log"))
        .spawn()
        .expect("app starts");
    let status = wait_for_app(&mut child, "the meeting-pack run");
    let err = std::fs::read_to_string(out_dir.join("pack.err")).unwrap_or_default();
    assert!(
        status.success(),
        "meeting-pack run exited with {status}:\n{err}"
    );
    for f in [
        "view.png",
        "chart-utilisation.png",
        "chart-gantt.png",
        "kpis.csv",
        "orders.csv",
        "scenario.toml",
        "report.pdf",
    ] {
        assert!(pack.join(f).is_file(), "{f} in the pack:\n{err}");
    }
    let view = image::open(pack.join("view.png"))
        .expect("view.png")
        .to_rgb8();
    assert_eq!((view.width(), view.height()), (1600, 1000));
    let chart = image::open(pack.join("chart-utilisation.png"))
        .expect("chart png")
        .to_rgb8();
    assert!(
        chart.width() > 200 && chart.height() > 100,
        "{:?}",
        chart.dimensions()
    );
    // Three pages of text and charts, then the three pictures.
    let pdf = String::from_utf8_lossy(&std::fs::read(pack.join("report.pdf")).unwrap()).to_string();
    assert_eq!(
        pdf.matches("/Type /Page").count() - pdf.matches("/Type /Pages").count(),
        6
    );
    assert_eq!(pdf.matches("/Subtype /Image").count(), 3);
}

/// A second run on the first run's history file, started in replay in the
/// middle of what the first run recorded.
fn replay_of_the_recorded_run(out_dir: &Path, history: &Path) {
    let reg = crate::live::registry();
    let (a, b) = {
        let store = mezzanine::history::Store::open(history, &reg).expect("history of the run");
        mezzanine::history::query::recorded_range(&store.conn)
            .expect("range")
            .expect("the first run recorded samples")
    };
    // Just before the first run's end, where it had seen every machine's state.
    let t = jiff::Timestamp::from_microsecond(b - 300_000).expect("time");
    assert!(
        a < b - 300_000,
        "the first run recorded too little: {a}..{b}"
    );
    let xvfb = start_xvfb();
    let runtime = out_dir.join("xdg-runtime");
    let png = out_dir.join("replay.png");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args([
            "--window-size",
            "1440x810",
            "--select",
            "L1-MILL-01",
            "--screenshot",
        ])
        .arg(&png)
        .arg("--history")
        .arg(history)
        .arg("--replay-at")
        .arg(t.to_string())
        .env("DISPLAY", &xvfb.display)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out_dir.join("replay.err")).expect("log"))
        .spawn()
        .expect("app starts");
    let status = wait_for_app(&mut child, "the replay run");
    let err = std::fs::read_to_string(out_dir.join("replay.err")).unwrap_or_default();
    assert!(status.success(), "replay run exited with {status}:\n{err}");
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(png.with_extension("json")).expect("sidecar written"),
    )
    .expect("sidecar is JSON");
    assert_eq!(sidecar["replay"], serde_json::json!(true), "{sidecar}");
    let states = sidecar["asset_states"].as_array().expect("states");
    let known = states
        .iter()
        .filter(|s| s.as_str() != Some("no data"))
        .count();
    assert!(
        known * 10 >= states.len() * 9,
        "the recorded states were not shown: {sidecar}"
    );
    let img = image::open(&png).expect("replay png").to_rgb8();
    // The timeline strip runs along the bottom, above the status bar.
    let strip = (100..1300)
        .step_by(100)
        .filter(|&x| {
            (300..800).any(|y| {
                let p = img.get_pixel(x, y).0;
                p == [28, 31, 37] || p == [45, 52, 62]
            })
        })
        .count();
    assert!(
        strip >= 10,
        "no timeline strip at the bottom ({strip} columns; column 700: {:?})",
        (300..800)
            .step_by(10)
            .map(|y| img.get_pixel(700, y).0)
            .collect::<Vec<_>>()
    );
}
