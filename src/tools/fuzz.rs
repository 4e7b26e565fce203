//! Fuzz entry points: arbitrary bytes in, "accepted or refused" out, and
//! never a panic. One [`Target`] per parser that reads data from outside
//! (payloads, MES events, schedules, files). The coverage-guided targets in
//! `fuzz/` (cargo-fuzz) and the corpus replay in `cargo test` call the same
//! function, so a crash found by the fuzzer replays in every test run once
//! its input is in `fuzz/corpus/<target>/`.

use std::path::Path;
use std::sync::OnceLock;

use crate::calendar::ShiftCalendar;
use crate::config::AppConfig;
use crate::config::PayloadPreset;
use crate::contract::Contract;
use crate::ingest::decode::{decode_json_as, decode_spectrum};
use crate::ingest::payload::JsonLayout;
use crate::ingest::sparkplug::{self, AliasBook};
use crate::reconcile::ReconcileRules;
use crate::registry::{AssetRegistry, parse_registry};
use crate::whatif::model_file::parse_model;
use crate::whatif::scenario::parse_scenarios;
use crate::whatif::{Engine, RunOptions};

/// A parser under fuzzing; the name is the cargo-fuzz target's and the
/// corpus folder's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// UNS JSON sample payloads (`decode_json_as`) in each preset layout,
    /// for a quantity and for a unitless property.
    UnsJson,
    /// Vibration spectra (`decode_spectrum`).
    Spectrum,
    /// Sparkplug B payloads, read as a birth and then as data (aliases).
    Sparkplug,
    /// MES event envelopes, their payload schemas and the v1 upcaster.
    MesEvent,
    /// B2MML schedules, checked against the demo plant's registry.
    B2mml,
    /// Asset registry TOML.
    Registry,
    /// The application config TOML.
    Config,
    /// Reconciliation rules TOML.
    ReconcileRules,
    /// What-if model files (TOML).
    WhatifModel,
    /// What-if scenario files (TOML).
    WhatifScenario,
    /// Shift calendars (TOML).
    ShiftCalendar,
    /// OEE loss rules (TOML).
    OeeRules,
}

impl Target {
    pub const ALL: [Target; 12] = [
        Target::UnsJson,
        Target::Spectrum,
        Target::Sparkplug,
        Target::MesEvent,
        Target::B2mml,
        Target::Registry,
        Target::Config,
        Target::ReconcileRules,
        Target::WhatifModel,
        Target::WhatifScenario,
        Target::ShiftCalendar,
        Target::OeeRules,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::UnsJson => "uns_json",
            Target::Spectrum => "spectrum",
            Target::Sparkplug => "sparkplug",
            Target::MesEvent => "mes_event",
            Target::B2mml => "b2mml",
            Target::Registry => "registry",
            Target::Config => "config",
            Target::ReconcileRules => "reconcile_rules",
            Target::WhatifModel => "whatif_model",
            Target::WhatifScenario => "whatif_scenario",
            Target::ShiftCalendar => "shift_calendar",
            Target::OeeRules => "oee_rules",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Feeds one input; `Ok(true)` when the parser accepted it, `Ok(false)`
    /// when it refused it with an error. `Err` only for a defect of this
    /// build rather than of the input: the fixtures (the built-in MES
    /// contract, the demo registry) do not load, or a scenario file the app
    /// would save does not read back the same.
    pub fn feed(self, data: &[u8]) -> Result<bool, String> {
        let text = || String::from_utf8_lossy(data);
        Ok(match self {
            // A quantity (numbers only) and a unitless property (text too),
            // in each preset layout.
            Target::UnsJson => {
                let mut ok = false;
                for preset in [
                    PayloadPreset::Mezzanine,
                    PayloadPreset::Umh,
                    PayloadPreset::Iso,
                ] {
                    let layout = JsonLayout::preset(preset);
                    ok |= decode_json_as(data, "rpm", &layout).is_ok();
                    ok |= decode_json_as(data, "1", &layout).is_ok();
                }
                ok
            }
            Target::Spectrum => decode_spectrum(data).is_ok(),
            Target::Sparkplug => {
                let birth = sparkplug::parse_topic("spBv1.0/plant/DBIRTH/line1/robot01")
                    .ok_or("the birth topic does not parse")?;
                let data_topic = sparkplug::parse_topic("spBv1.0/plant/DDATA/line1/robot01")
                    .ok_or("the data topic does not parse")?;
                let mut book = AliasBook::default();
                let born = book.decode(&birth, data).is_ok();
                book.decode(&data_topic, data).is_ok() || born
            }
            Target::MesEvent => fixtures()?.contract.decode(data, "fuzz").is_ok(),
            Target::B2mml => crate::mes::b2mml::parse(
                &text(),
                Path::new("fuzz.xml"),
                Some(&fixtures()?.registry),
            )
            .is_ok(),
            Target::Registry => parse_registry(&text(), Path::new("fuzz.toml")).is_ok(),
            Target::Config => AppConfig::from_toml(&text(), Path::new("fuzz.toml")).is_ok(),
            Target::ReconcileRules => {
                ReconcileRules::parse(&text(), Path::new("fuzz.toml")).is_ok()
            }
            // A model that parses is also run, briefly: its numbers must
            // not panic the engine either.
            Target::WhatifModel => match parse_model(Path::new("fuzz.toml"), &text()) {
                Ok(mut m) => {
                    m.horizon_s = m.horizon_s.min(m.warmup_s + 1_000.0);
                    let opts = RunOptions {
                        max_events: Some(100_000),
                        ..RunOptions::default()
                    };
                    let engine = Engine::new(std::sync::Arc::new(m), 1, 0, opts);
                    // Stopped at the bound is fine: the point is no panic.
                    let _ = engine.run(None);
                    true
                }
                Err(_) => false,
            },
            Target::WhatifScenario => match parse_scenarios(Path::new("fuzz.toml"), &text()) {
                Ok(file) => {
                    // What the app saves reads back the same.
                    let saved = file.to_toml();
                    match parse_scenarios(Path::new("saved.toml"), &saved) {
                        // Compared as text: NaN (which TOML allows) is
                        // never equal to itself.
                        Ok(back) if back.to_toml() == saved => true,
                        Ok(back) => {
                            return Err(format!(
                                "a saved scenario file reads back differently:\n{saved}\n{back:?}\nvs {file:?}"
                            ));
                        }
                        Err(e) => {
                            return Err(format!(
                                "a saved scenario file does not read back: {e}\n{saved}"
                            ));
                        }
                    }
                }
                Err(_) => false,
            },
            Target::ShiftCalendar => match ShiftCalendar::parse(Path::new("fuzz.toml"), &text()) {
                Ok(c) => {
                    // A week of working windows from a fixed Monday.
                    let from = 1_796_342_400_000_000;
                    c.working(from, from + 7 * 86_400_000_000);
                    true
                }
                Err(_) => false,
            },
            Target::OeeRules => {
                match crate::oee::LossRules::parse(Path::new("fuzz.toml"), &text()) {
                    Ok(rules) => {
                        // Every state through the rules, in one computation.
                        let states = crate::twin::MachineState::ALL;
                        let segments = states
                            .iter()
                            .enumerate()
                            .map(|(i, s)| crate::oee::Segment {
                                start_us: i as i64 * 60_000_000,
                                end_us: (i as i64 + 1) * 60_000_000,
                                state: *s,
                                reason: "micro-stop".into(),
                            })
                            .collect();
                        let input = crate::oee::MachineInput {
                            asset_id: "fuzz".into(),
                            ideal_cycle_s: Some(10.0),
                            segments,
                            part_counter: vec![(0, 0.0), (60_000_000, 5.0)],
                            ..Default::default()
                        };
                        let end = states.len() as i64 * 60_000_000;
                        crate::oee::compute(&input, &[(0, end)], &rules);
                        true
                    }
                    Err(_) => false,
                }
            }
        })
    }
}

/// A config touching every section, for the `config` target's corpus.
const CONFIG_SEED: &str = r#"[plant]
scene = "plant.glb"
registry = "plant.toml"
[window]
width_px = 1600
height_px = 900
[render]
shadows = true
msaa = false
[mqtt]
url = "mqtts://broker.plant.local:8883"
client_id = "twin"
username = "twin"
password = "secret"
topic_roots = ["acme/lyon/#", "spBv1.0/acme/#"]
[opcua]
endpoint = "opc.tcp://127.0.0.1:4840/"
security_policy = "Basic256Sha256"
security_mode = "SignAndEncrypt"
sampling_interval_ms = 100
[ingest]
earliest_source_time = "2000-01-01T00:00:00Z"
max_source_ahead_s = 300
[mes]
events_topic = "acme/lyon/mes/events/#"
reorder_window_ms = 2000
heartbeat_topic = "acme/lyon/mes/heartbeat"
heartbeat_timeout_ms = 10000
api_url = "https://mes.example:8443"
poll_interval_ms = 10000
[mes.domains]
work_orders = "events"
schedule = "polling"
[history]
path = "history.duckdb"
flush_interval_ms = 100
max_batch_rows = 50000
keyframe_interval_s = 60
"#;

/// A time inside every plausibility window: 2026-11-24T06:00:00Z.
const SEED_TS_US: i64 = 1_795_500_000_000_000;

impl Target {
    /// Valid inputs to start a corpus from (and for the seeded sweep in
    /// `cargo test`): what each parser meets in a healthy plant.
    pub fn seeds(self) -> Result<Vec<Vec<u8>>, String> {
        use crate::ingest::SampleValue;
        use crate::ingest::decode::{encode_json, encode_spectrum};
        let text = |s: &str| s.as_bytes().to_vec();
        Ok(match self {
            Target::UnsJson => vec![
                encode_json(&SampleValue::Number(1480.5), SEED_TS_US, None),
                encode_json(&SampleValue::Number(0.0), SEED_TS_US, Some("tool change")),
                encode_json(&SampleValue::Bool(true), SEED_TS_US, None),
                encode_json(&SampleValue::Text("RUNNING".into()), SEED_TS_US, None),
                text(r#"{"value": 21.5, "ts": 1795500000000}"#),
                text(r#"{"value": 3}"#),
                text(r#"{"timestamp_ms": 1795500000123, "spindle_load": 61.5}"#),
                text(r#"{"value": 7000, "timestamp": "2026-11-24T07:00:00.123+01:00"}"#),
            ],
            Target::Spectrum => vec![
                encode_spectrum(12.5, &[0.1, 0.4, 2.5, 0.3], SEED_TS_US),
                encode_spectrum(1.0, &[], SEED_TS_US),
            ],
            Target::Sparkplug => vec![
                sparkplug::encode(
                    &[
                        ("power", &SampleValue::Number(11.5)),
                        ("running", &SampleValue::Bool(true)),
                        ("program", &SampleValue::Text("P-100".into())),
                    ],
                    (SEED_TS_US / 1000) as u64,
                    0,
                ),
                sparkplug::encode(&[], (SEED_TS_US / 1000) as u64, 1),
            ],
            Target::MesEvent => MES_EXAMPLES.iter().map(|e| text(e)).collect(),
            Target::B2mml => {
                let registry = &fixtures()?.registry;
                let mut sim = crate::demo::mes::MesSim::new(registry, 3, SEED_TS_US, 60.0);
                // A plant minute of planning: orders released on every line.
                let end_us = SEED_TS_US + 60_000_000;
                for t_us in (SEED_TS_US..end_us).step_by(1_000_000) {
                    sim.step(t_us, None);
                }
                let schedule = sim.schedule_b2mml(end_us);
                vec![crate::mes::b2mml::write(&schedule).into_bytes()]
            }
            Target::Registry => vec![text(include_str!("../../scenes/demo-plant.toml"))],
            Target::Config => vec![text(CONFIG_SEED)],
            Target::ReconcileRules => vec![text(include_str!("../../config/reconcile.toml"))],
            Target::WhatifModel => vec![
                text(include_str!("../../tests/data/whatif/line.toml")),
                text(include_str!("../../tests/data/whatif/mm1.toml")),
                text(include_str!("../../tests/data/whatif/flow-shop.toml")),
            ],
            Target::WhatifScenario => vec![text(include_str!("../../docs/whatif/mill-down.toml"))],
            Target::ShiftCalendar => vec![text(include_str!("../../docs/whatif/shifts.toml"))],
            Target::OeeRules => vec![text(include_str!("../../config/oee-losses.toml"))],
        })
    }
}

/// The contract's example events, v1 (through the upcaster) and v2.
const MES_EXAMPLES: &[&str] = &[
    include_str!("../../schemas/mes/examples/equipment.mode_changed.v1.json"),
    include_str!("../../schemas/mes/examples/equipment.mode_changed.v2.json"),
    include_str!("../../schemas/mes/examples/material.issued.v1.json"),
    include_str!("../../schemas/mes/examples/material.issued.v2.json"),
    include_str!("../../schemas/mes/examples/operation.completed.v1.json"),
    include_str!("../../schemas/mes/examples/operation.completed.v2.json"),
    include_str!("../../schemas/mes/examples/operation.started.v1.json"),
    include_str!("../../schemas/mes/examples/operation.started.v2.json"),
    include_str!("../../schemas/mes/examples/quality.disposition.v1.json"),
    include_str!("../../schemas/mes/examples/quality.disposition.v2.json"),
    include_str!("../../schemas/mes/examples/work_order.completed.v1.json"),
    include_str!("../../schemas/mes/examples/work_order.completed.v2.json"),
    include_str!("../../schemas/mes/examples/work_order.held.v1.json"),
    include_str!("../../schemas/mes/examples/work_order.held.v2.json"),
    include_str!("../../schemas/mes/examples/work_order.released.v1.json"),
    include_str!("../../schemas/mes/examples/work_order.released.v2.json"),
    include_str!("../../schemas/mes/examples/work_order.started.v1.json"),
    include_str!("../../schemas/mes/examples/work_order.started.v2.json"),
];

struct Fixtures {
    contract: Contract,
    registry: AssetRegistry,
}

/// Loaded once per process: the fuzzer calls `feed` millions of times.
fn fixtures() -> Result<&'static Fixtures, String> {
    static FIXTURES: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    FIXTURES
        .get_or_init(|| {
            let contract = Contract::load().map_err(|e| format!("MES contract: {e}"))?;
            let assets = parse_registry(
                include_str!("../../scenes/demo-plant.toml"),
                Path::new("scenes/demo-plant.toml"),
            )
            .map_err(|e| format!("demo registry: {e}"))?;
            Ok(Fixtures {
                contract,
                registry: AssetRegistry::new(assets),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}
