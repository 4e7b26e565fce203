//! Registry parsing and validation: the shipped file, and each kind of bad file.

use mezzanine::registry::{AssetRegistry, RegistryError, load_registry, parse_registry};

use crate::repo;

const GOOD: &str = r#"version = 1

[plant]
name = "Test plant"
time_zone = "Europe/Paris"

[[asset]]
id = "M1"
name = "Mill 1"
class = "cnc_mill"
iso23247 = "equipment"
isa95 = "Acme/Lyon/Machining/Line1/Mill01"
gltf_node = "M1"

[asset.nominal]
ideal_cycle_time = { value = 42.0, unit = "s" }

[[asset.property]]
name = "spindle_speed"
unit = "rpm"
mqtt = "acme/lyon/machining/line1/mill01/spindle_speed"
opcua = "ns=2;s=Line1.Mill01.Spindle.Speed"

[[asset]]
id = "M2"
name = "Mill 2"
class = "cnc_mill"
iso23247 = "equipment"
isa95 = "Acme/Lyon/Machining/Line1/Mill02"
gltf_node = "M2"

[[asset.property]]
name = "spindle_speed"
unit = "rpm"
mqtt = "acme/lyon/machining/line1/mill02/spindle_speed"
"#;

fn invalid(text: &str) -> Vec<(usize, String, String)> {
    match parse_registry(text, "plant.toml".as_ref()) {
        Err(RegistryError::Invalid { path, problems }) => {
            assert_eq!(path.to_string_lossy(), "plant.toml");
            problems
                .into_iter()
                .map(|p| (p.line, p.field, p.message))
                .collect()
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("`{needle}` not in text"))
}

#[test]
fn good_registry_resolves_topics_and_opcua_nodes_to_the_same_property() {
    let reg = parse_registry(GOOD, "plant.toml".as_ref()).expect("good registry");
    assert_eq!(reg.assets.len(), 2);
    assert_eq!(reg.assets[0].isa95.work_center, "Line1");
    assert_eq!(reg.assets[0].nominal["ideal_cycle_time"].unit, "s");
    let idx = AssetRegistry::new(reg);
    let by_mqtt = idx
        .resolve_topic("acme/lyon/machining/line1/mill01/spindle_speed")
        .expect("topic resolves");
    let by_opc = idx
        .resolve_opcua("ns=2;s=Line1.Mill01.Spindle.Speed")
        .expect("node resolves");
    assert_eq!(by_mqtt, by_opc);
    let (asset, prop) = idx.property(by_mqtt).expect("property exists");
    assert_eq!(
        (asset.id.as_str(), prop.name.as_str(), prop.unit.as_str()),
        ("M1", "spindle_speed", "rpm")
    );
    assert!(idx.resolve_topic("acme/lyon/unknown").is_none());
}

#[test]
fn shipped_demo_registry_loads_with_at_least_twelve_machines() {
    let reg = load_registry(&repo("scenes/demo-plant.toml")).expect("shipped registry loads");
    assert!(reg.assets.len() >= 12, "{} assets", reg.assets.len());
    for class in [
        "cnc_mill",
        "cnc_lathe",
        "robot",
        "conveyor",
        "wash_station",
        "cmm",
        "buffer_store",
    ] {
        assert!(
            reg.assets.iter().any(|a| a.class == class),
            "no {class} in the demo plant"
        );
    }
}

#[test]
fn unknown_key_is_refused_with_file_line_and_key() {
    let text = GOOD.replace(
        "class = \"cnc_mill\"\niso23247",
        "class = \"cnc_mill\"\ncolour = \"red\"\niso23247",
    );
    let err = parse_registry(&text, "plant.toml".as_ref()).expect_err("unknown key");
    let RegistryError::Syntax { line, message, .. } = &err else {
        panic!("expected a syntax error, got {err:?}");
    };
    assert_eq!(*line, line_of(&text, "colour"));
    assert!(message.contains("colour"), "{message}");
    assert!(
        err.to_string().starts_with(&format!("plant.toml:{line}:")),
        "{err}"
    );
}

#[test]
fn duplicate_asset_id_is_refused_at_the_second_use() {
    let text = GOOD.replace("id = \"M2\"", "id = \"M1\"");
    let problems = invalid(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let (line, field, msg) = &problems[0];
    assert_eq!(
        *line,
        text.match_indices("id = \"M1\"")
            .nth(1)
            .map(|(o, _)| text[..o].lines().count() + 1)
            .expect("second id")
    );
    assert_eq!(field, "asset[1].id");
    assert!(msg.contains("duplicate asset id `M1`"), "{msg}");
}

#[test]
fn topic_claimed_by_two_assets_is_refused() {
    let text = GOOD.replace("line1/mill02/spindle_speed", "line1/mill01/spindle_speed");
    let problems = invalid(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let (line, field, msg) = &problems[0];
    assert_eq!(field, "asset[1].property[0].mqtt");
    assert!(
        msg.contains("already claimed by `M1.spindle_speed`"),
        "{msg}"
    );
    assert_eq!(
        *line,
        text.rfind("mqtt =")
            .map(|o| text[..o].lines().count() + 1)
            .expect("line")
    );
}

#[test]
fn missing_unit_is_refused() {
    let text = GOOD.replace("{ value = 42.0, unit = \"s\" }", "{ value = 42.0 }");
    let err = parse_registry(&text, "plant.toml".as_ref()).expect_err("missing unit");
    let msg = err.to_string();
    assert!(msg.contains("unit"), "{msg}");
    assert!(
        msg.starts_with(&format!(
            "plant.toml:{}:",
            line_of(&text, "ideal_cycle_time")
        )),
        "{msg}"
    );

    let text = GOOD.replacen("unit = \"rpm\"", "unit = \"\"", 1);
    let problems = invalid(&text);
    assert_eq!(problems[0].1, "asset[0].property[0].unit");
    assert_eq!(problems[0].2, "a unit is required");
}

#[test]
fn unknown_unit_and_bad_paths_are_all_reported_together() {
    let text = GOOD
        .replacen("unit = \"rpm\"", "unit = \"rpmm\"", 1)
        .replace("Acme/Lyon/Machining/Line1/Mill02", "Acme/Lyon/Line1")
        .replace(
            "opcua = \"ns=2;s=Line1.Mill01.Spindle.Speed\"",
            "opcua = \"Line1.Mill01.Spindle.Speed\"",
        );
    let problems = invalid(&text);
    let fields: Vec<&str> = problems.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(
        fields,
        [
            "asset[0].property[0].unit",
            "asset[0].property[0].opcua",
            "asset[1].isa95"
        ],
        "{problems:?}"
    );
    assert!(problems[0].2.contains("unknown unit `rpmm`"));
    assert!(problems[2].2.contains("five non-empty levels"));
}

#[test]
fn unsupported_version_and_unreadable_file_are_named() {
    let text = GOOD.replacen("version = 1", "version = 7", 1);
    let problems = invalid(&text);
    assert_eq!(problems[0].0, 1);
    assert!(problems[0].2.contains("format 7 is not supported"));

    let err = load_registry("/nonexistent/registry.toml".as_ref()).expect_err("no file");
    assert!(
        err.to_string().contains("/nonexistent/registry.toml"),
        "{err}"
    );
}

#[test]
fn sparkplug_sources_are_validated() {
    let text = GOOD
        .replace(
            "gltf_node = \"M1\"\n",
            "gltf_node = \"M1\"\nsparkplug = \"acme/line1/cell1\"\n",
        )
        .replace(
            "gltf_node = \"M2\"\n",
            "gltf_node = \"M2\"\nsparkplug = \"acme/line1/cell1\"\n",
        );
    let problems = invalid(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].1, "asset[1].sparkplug");
    assert!(problems[0].2.contains("already claimed by asset[0]"));

    let text = GOOD.replace(
        "gltf_node = \"M2\"\n",
        "gltf_node = \"M2\"\nsparkplug = \"acme\"\n",
    );
    let problems = invalid(&text);
    assert!(problems[0].2.contains("group/edge_node"), "{problems:?}");

    // A metric named for a property of an asset without a Sparkplug source,
    // and one metric claimed twice (explicitly, and by a property's name).
    let text = GOOD
        .replace(
            "mqtt = \"acme/lyon/machining/line1/mill02/spindle_speed\"\n",
            "sparkplug_metric = \"Spindle/Speed\"\n",
        )
        .replace(
            "gltf_node = \"M1\"\n",
            "gltf_node = \"M1\"\nsparkplug = \"acme/line1/mill01\"\n",
        )
        .replace(
            "opcua = \"ns=2;s=Line1.Mill01.Spindle.Speed\"\n",
            "opcua = \"ns=2;s=Line1.Mill01.Spindle.Speed\"\n\n[[asset.property]]\nname = \"feed\"\n\
             unit = \"mm/min\"\nsparkplug_metric = \"spindle_speed\"\n",
        );
    let problems = invalid(&text);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0].1, "asset[0].property[1].sparkplug_metric");
    assert_eq!(
        problems[0].2,
        "metric `spindle_speed` already feeds property `spindle_speed`"
    );
    assert_eq!(problems[1].1, "asset[1].property[0].sparkplug_metric");
    assert_eq!(
        problems[1].2,
        "the asset has no `sparkplug` source to read it from"
    );
    assert!(
        problems[2].2.contains("neither an `mqtt` topic"),
        "{problems:?}"
    );
}
