//! What-if part 2: the ghost shader as Bevy composes it, trajectories of a
//! real study, the scenario file written and read back, the meeting pack
//! (its PDF and CSVs), and a what-if recommendation on a real broker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use naga_oil::compose::{
    ComposableModuleDescriptor, Composer, ComposerErrorInner, NagaModuleDescriptor, ShaderDefValue,
    ShaderLanguage, ShaderType,
};

use super::repo;

/// Source folders of the locked Bevy crates that hold WGSL modules.
fn bevy_shader_dirs() -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            let n = p["name"].as_str().unwrap_or("");
            n.starts_with("bevy_") && p["version"].as_str().unwrap_or("").starts_with("0.19")
        })
        .filter_map(|p| {
            Path::new(p["manifest_path"].as_str()?)
                .parent()
                .map(|d| d.join("src"))
        })
        .collect()
}

fn wgsl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            wgsl_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "wgsl") {
            out.push(p);
        }
    }
}

/// The definitions Bevy's mesh pipeline sets for a material's fragment
/// shader in the main pass (this app: MSAA on, no prepasses).
fn pipeline_defs() -> HashMap<String, ShaderDefValue> {
    let mut d = HashMap::new();
    for (k, v) in [
        ("MATERIAL_BIND_GROUP", 3),
        ("MAX_DIRECTIONAL_LIGHTS", 10),
        ("MAX_CASCADES_PER_LIGHT", 4),
        ("MAX_RECT_LIGHTS", 8),
        ("AVAILABLE_STORAGE_BUFFER_BINDINGS", 8),
        ("PER_OBJECT_BUFFER_BATCH_SIZE", 0),
    ] {
        d.insert(k.to_string(), ShaderDefValue::UInt(v));
    }
    for k in [
        "MESH_PIPELINE",
        "VERTEX_OUTPUT_INSTANCE_INDEX",
        "VERTEX_POSITIONS",
        "VERTEX_NORMALS",
        "VERTEX_UVS",
        "VERTEX_UVS_A",
        "MULTISAMPLED",
        "TONEMAP_IN_SHADER",
    ] {
        d.insert(k.to_string(), ShaderDefValue::Bool(true));
    }
    d
}

/// Composes `src` as Bevy would: every bevy module its imports need,
/// added in rounds (a module only once the modules it imports are), then
/// the shader itself, validated.
fn compose(src: &str, file: &str) -> Result<naga::Module, String> {
    let mut files = Vec::new();
    for d in bevy_shader_dirs() {
        wgsl_files(&d, &mut files);
    }
    let mut left: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|p| {
            let s = std::fs::read_to_string(&p).ok()?;
            s.contains("#define_import_path").then_some((p, s))
        })
        .collect();
    assert!(
        left.len() > 20,
        "bevy's WGSL modules were not found ({} files)",
        left.len()
    );
    let defs = pipeline_defs();
    let mut composer = Composer::default();
    loop {
        let before = left.len();
        left.retain(|(path, src)| {
            composer
                .add_composable_module(ComposableModuleDescriptor {
                    source: src,
                    file_path: &path.to_string_lossy(),
                    language: ShaderLanguage::Wgsl,
                    as_name: None,
                    additional_imports: &[],
                    shader_defs: defs.clone(),
                })
                .is_err_and(|e| matches!(e.inner, ComposerErrorInner::ImportNotFound(..)))
        });
        if left.len() == before || left.is_empty() {
            break;
        }
    }
    composer
        .make_naga_module(NagaModuleDescriptor {
            source: src,
            file_path: file,
            shader_type: ShaderType::Wgsl,
            shader_defs: defs,
            additional_imports: &[],
        })
        .map_err(|e| e.emit_to_string(&composer))
}

/// shaders/ghost.wgsl composes with bevy_pbr's modules (its imports
/// resolved by naga_oil, as Bevy's shader cache does) and validates.
#[test]
fn ghost_shader_composes() {
    let path = repo("shaders/ghost.wgsl");
    let src = std::fs::read_to_string(&path).unwrap();
    let module = compose(&src, &path.to_string_lossy()).unwrap_or_else(|e| panic!("{e}"));
    let frag = module
        .entry_points
        .iter()
        .find(|e| e.name == "fragment")
        .expect("a fragment entry point");
    assert_eq!(format!("{:?}", frag.stage), "Fragment");
    // The material's uniform sits where Bevy binds materials.
    assert!(
        module.global_variables.iter().any(|(_, g)| g
            .binding
            .as_ref()
            .is_some_and(|b| b.group == 3 && b.binding == 0)),
        "the ghost's uniform is at @group(3) @binding(0)"
    );
}

/// The same text with an error in it does not compose: the check can fail.
#[test]
fn a_broken_ghost_shader_fails_the_check() {
    let src = std::fs::read_to_string(repo("shaders/ghost.wgsl"))
        .unwrap()
        .replace("ghost.rim_power", "ghost.rim_strength");
    let e = compose(&src, "ghost.wgsl").expect_err("a misspelt field must not compose");
    assert!(e.contains("rim_strength"), "{e}");
}

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use mezzanine::whatif::app::{WhatIfOutcome, run_study};
use mezzanine::whatif::model::Rule;
use mezzanine::whatif::model_file::load_model;
use mezzanine::whatif::scenario::{
    Change, Scenario, ScenarioFile, load_scenarios, parse_scenarios,
};
use mezzanine::whatif::{Progress, Replications, SimState};

/// The line model under docs/whatif/mill-down.toml (MILL-1 down from 1 h
/// for 2 h; a rush order with an alternative machine), 10 replications.
fn line_outcome() -> WhatIfOutcome {
    let base = Arc::new(load_model(&repo("tests/data/whatif/line.toml")).unwrap());
    let mut file = load_scenarios(&repo("docs/whatif/mill-down.toml")).unwrap();
    file.replications = Replications::Fixed(10);
    run_study(
        base,
        file,
        Some(2),
        false,
        Vec::new(),
        &Progress::new(),
        &AtomicBool::new(false),
        Instant::now(),
    )
    .unwrap()
}

#[test]
fn trajectories_follow_replication_zero_and_show_the_down_window() {
    let o = line_outcome();
    assert_eq!(o.trajectories.len(), 3, "baseline and two scenarios");
    let horizon_s = o.result.models[0].horizon_s;
    for (v, tr) in o.trajectories.iter().enumerate() {
        assert_eq!(tr.frames.len(), (horizon_s / 60.0).ceil() as usize + 1);
        // The last frame holds exactly the orders replication 0 had not
        // finished: the trajectory is the run the pool made.
        let last = tr.frames.last().unwrap();
        let run = &o.result.runs[v][0];
        for (k, done) in run.order_done_s.iter().enumerate() {
            assert_eq!(
                last.orders[k].is_none(),
                !done.is_nan() || o.result.models[v].orders[k].release_s > horizon_s,
                "variant {v} order {k}: done at {done}"
            );
        }
    }
    // MILL-1 is down from +1 h to +3 h in scenario 1, every minute of it,
    // and not all that time in the baseline.
    let mill = o.result.models[0].station("MILL-1").unwrap() as usize;
    let down = |v: usize| {
        (61..180)
            .filter(|k| o.trajectories[v].frames[*k].machines[mill].state == SimState::Down)
            .count()
    };
    assert_eq!(down(1), 119);
    assert!(down(0) < 119, "baseline down {} of 119 minutes", down(0));
    // Between frames, an order moving between machines is on its way.
    let t0 = o.trajectories[0].origin_us;
    let moving = (0..600)
        .flat_map(|m| o.trajectories[0].orders_at(t0 + m * 60_000_000 + 30_000_000))
        .find(|x| x.from != x.to)
        .expect("some order moves between machines in 10 h");
    assert!((moving.frac - 0.5).abs() < 1e-6, "{moving:?}");
    assert!(!moving.on_machine);
    // Outside the trajectory nothing is shown.
    assert!(o.trajectories[0].machines_at(t0 - 1).is_none());
    assert!(
        o.trajectories[0]
            .machines_at(o.trajectories[0].end_us() + 1)
            .is_none()
    );
}

#[test]
fn a_scenario_file_written_by_the_app_reads_back_the_same() {
    let file = ScenarioFile {
        name: "Every \"kind\" of change".into(),
        horizon_h: Some(6.5),
        replications: Replications::Fixed(30),
        seed: 7,
        scenarios: vec![
            Scenario {
                name: "machines".into(),
                changes: vec![
                    Change::MachineDown {
                        machine: "MILL-1".into(),
                        from_h: 0.5,
                        for_h: 2.0,
                    },
                    Change::CycleTime {
                        machine: "SAW".into(),
                        factor: 1.25,
                    },
                    Change::ScrapRate {
                        machine: "WASH".into(),
                        rate: 0.04,
                    },
                    Change::Mttr {
                        machine: "SAW".into(),
                        factor: 2.0,
                    },
                    Change::Mtbf {
                        machine: "SAW".into(),
                        factor: 0.5,
                    },
                    Change::Dispatch {
                        machine: "*".into(),
                        rule: Rule::Spt,
                    },
                    Change::Buffer {
                        machine: "MILL-2".into(),
                        capacity: None,
                    },
                    Change::Buffer {
                        machine: "MILL-1".into(),
                        capacity: Some(2),
                    },
                ],
            },
            Scenario {
                name: "plant and orders".into(),
                changes: vec![
                    Change::Overtime {
                        from_h: 4.0,
                        for_h: 1.0,
                    },
                    Change::ShiftOff {
                        from_h: 1.0,
                        for_h: 0.5,
                    },
                    Change::RushOrder {
                        id: "RUSH-1".into(),
                        product: "housing".into(),
                        quantity: 20,
                        due_h: Some(3.0),
                        release_h: 0.25,
                    },
                    Change::RushOrder {
                        id: "RUSH-2".into(),
                        product: "like:H-1".into(),
                        quantity: 5,
                        due_h: None,
                        release_h: 0.0,
                    },
                    Change::Alternative {
                        product: "housing".into(),
                        step: 2,
                        machine: "MILL-2".into(),
                    },
                ],
            },
        ],
    };
    let text = file.to_toml();
    let back = parse_scenarios(Path::new("saved.toml"), &text).unwrap();
    assert_eq!(back, file, "{text}");
}

/// A small PNG, as the app's snapshot writes them.
fn picture(path: &Path) {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    img.save(path).unwrap();
}

#[test]
fn the_meeting_pack_has_a_readable_report_and_tables_to_run_it_again() {
    let o = line_outcome();
    let dir = tempfile::tempdir().unwrap();
    let pack =
        std::env::var_os("MZ_KEEP_PACK").map_or_else(|| dir.path().join("pack"), PathBuf::from);
    std::fs::create_dir_all(&pack).unwrap();
    let view = pack.join("view.png");
    picture(&view);
    let files =
        mezzanine::whatif::pack::write_pack(&o, &pack, std::slice::from_ref(&view), "Europe/Paris")
            .unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for want in [
        "scenario.toml",
        "kpis.csv",
        "orders.csv",
        "machines.csv",
        "fingerprint.json",
        "recommended-schedule.b2mml.xml",
        "report.pdf",
        "view.png",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    // The scenario file runs the same study again.
    let again = load_scenarios(&pack.join("scenario.toml")).unwrap();
    assert_eq!(again, o.file);
    // One KPI row per KPI and variant.
    let kpis = std::fs::read_to_string(pack.join("kpis.csv")).unwrap();
    assert_eq!(kpis.lines().count(), 1 + o.report.kpis.len() * 3);
    assert!(
        kpis.lines()
            .nth(1)
            .unwrap()
            .starts_with("throughput,jobs/h,baseline,")
    );
    let orders = std::fs::read_to_string(pack.join("orders.csv")).unwrap();
    assert_eq!(orders.lines().count(), 1 + o.report.orders.len() * 3);
    // The B2MML of the recommended sequence parses.
    let xml = std::fs::read_to_string(pack.join("recommended-schedule.b2mml.xml")).unwrap();
    let s = mezzanine::mes::b2mml::parse(&xml, Path::new("x.xml"), None).unwrap();
    assert!(!s.requests.is_empty());
    // The PDF: a header, four pages (what was asked, charts, orders, the
    // picture), the words a reader needs, and its end.
    let pdf = std::fs::read(pack.join("report.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"));
    let text = String::from_utf8_lossy(&pdf);
    assert_eq!(
        text.matches("/Type /Page").count() - text.matches("/Type /Pages").count(),
        4
    );
    for words in [
        "(What-if: MILL-1 down, or a rush order)",
        "(What was asked)",
        // Text outside ASCII is written as hex: "• MILL-1 down from +1 h for 2 h".
        "<95204D494C4C2D3120646F776E2066726F6D202B31206820666F7220322068>",
        "to get the same answer again",
        "/Subtype /Image",
    ] {
        assert!(text.contains(words), "{words} in the PDF");
    }
    // When poppler is installed, the first page renders to a picture with
    // text on it (CI machines may lack it; the bytes above are checked
    // everywhere).
    if std::process::Command::new("pdftoppm")
        .arg("-v")
        .output()
        .is_ok()
    {
        let out = dir.path().join("page");
        let st = std::process::Command::new("pdftoppm")
            .args(["-png", "-r", "40", "-f", "1", "-l", "1"])
            .arg(pack.join("report.pdf"))
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        let png = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("page"))
            .unwrap()
            .path();
        let img = image::open(png).unwrap().to_luma8();
        let dark = img.pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 500, "page 1 has text ({dark} dark pixels)");
    }
}

#[test]
fn a_whatif_recommendation_reaches_an_independent_subscriber_never_an_mes_topic() {
    use mezzanine::config::MesConfig;
    use mezzanine::mes::recommend::{Broker, publish};
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let o = line_outcome();
    let port = mezzanine::demo::broker::free_port().unwrap();
    let _broker = mezzanine::demo::broker::start_embedded_broker(port).unwrap();
    let (c, mut conn) = Client::new(MqttOptions::new("independent", "127.0.0.1", port), 64);
    c.subscribe("#", QoS::AtLeastOnce).unwrap();
    let mut got = Vec::new();
    let drain = |conn: &mut rumqttc::Connection, got: &mut Vec<(String, Vec<u8>)>, ms: u64| {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(ms) {
            if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                conn.recv_timeout(Duration::from_millis(50))
            {
                got.push((p.topic.clone(), p.payload.to_vec()));
            }
        }
    };
    drain(&mut conn, &mut got, 500);
    let mes = MesConfig::default();
    let id = mezzanine::whatif::app::recommendation_id(1_780_000_000_000_000, 1);
    let rec = o.recommendation(1, &id);
    let broker = Broker {
        host: "127.0.0.1".into(),
        port,
        client_id: "twin-whatif-test".into(),
        username: None,
        password: None,
        tls: None,
    };
    let topic = publish(&broker, &mes, &rec, Duration::from_secs(10)).unwrap();
    assert_eq!(topic, format!("acme/lyon/twin/recommendations/{id}"));
    let mut bad = mes.clone();
    bad.recommendations_topic = "acme/lyon/mes/whatif".into();
    assert!(publish(&broker, &bad, &rec, Duration::from_secs(10)).is_err());
    drain(&mut conn, &mut got, 1500);
    assert_eq!(
        got.len(),
        1,
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    assert_eq!(got[0].0, topic);
    assert!(got.iter().all(|(t, _)| !t.starts_with("acme/lyon/mes")));
    let v: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(v["kind"], "what-if");
    assert_eq!(v["advisory"], true);
    assert_eq!(v["details"]["scenario"], "MILL-1 down 2 h");
    assert_eq!(v["details"]["changes"][0], "MILL-1 down from +1 h for 2 h");
    assert_eq!(v["fingerprint"]["seeds"][0], 1);
    assert_eq!(
        v["fingerprint"]["inputs_sha256"].as_str().unwrap().len(),
        64
    );
    let k = &v["details"]["kpis"][0];
    assert_eq!(k["kpi"], "throughput");
    let d = &o.report.kpis[0].diffs[0];
    assert!((k["difference"].as_f64().unwrap() - d.mean).abs() < 1e-9);
    assert!((k["ci95_half_width"].as_f64().unwrap() - d.half_width).abs() < 1e-9);
}
