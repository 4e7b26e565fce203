//! Panel bodies as plain functions of (`&mut egui::Ui`, view data): they
//! return the commands the user asked for and mutate nothing else, so they
//! can be tested against a bare `egui::Context`.

use std::collections::HashMap;

use bevy_egui::egui::{self, Color32, RichText};

use crate::registry::{AssetIdx, AssetRegistry};
use crate::render::SelectionCommand;
use crate::scene::layout::BindVia;
use crate::twin::{AssetState, Freshness, LiveValues, MachineState};

pub fn state_color(s: MachineState) -> Color32 {
    let [r, g, b] = s.srgb();
    Color32::from_rgb(r, g, b)
}

/// A filled circle in the state colour, as wide as a line of text.
pub fn state_dot_ui(ui: &mut egui::Ui, s: MachineState) {
    let size = ui.text_style_height(&egui::TextStyle::Body);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    ui.painter()
        .circle_filled(rect.center(), size * 0.32, state_color(s));
}

/// Children keyed by a level's name, in order of first appearance.
type Grouped<K, V> = Vec<(K, V)>;

fn group<K: PartialEq, V: Default>(v: &mut Grouped<K, V>, key: K) -> &mut V {
    let i = match v.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            v.push((key, V::default()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

/// Area → work center → assets.
type Areas<'a> = Grouped<&'a str, Grouped<&'a str, Vec<AssetIdx>>>;

/// The ISA-95 tree: enterprise / site / area / work center / work unit.
/// Clicking a work unit selects its asset and frames it.
pub fn hierarchy_ui(
    ui: &mut egui::Ui,
    registry: &AssetRegistry,
    states: &HashMap<AssetIdx, MachineState>,
    selected: Option<AssetIdx>,
    filter: &mut String,
) -> Vec<SelectionCommand> {
    let mut out = Vec::new();
    ui.horizontal(|ui| {
        ui.label("Filter");
        ui.add(egui::TextEdit::singleline(filter).hint_text("id, name or class"));
    });
    ui.separator();
    let needle = filter.trim().to_lowercase();
    // enterprise/site → area → work center → assets, in registry order.
    let mut tree: Grouped<(&str, &str), Areas<'_>> = Vec::new();
    for (i, a) in registry.assets().iter().enumerate() {
        if !needle.is_empty()
            && !a.id.to_lowercase().contains(&needle)
            && !a.name.to_lowercase().contains(&needle)
            && !a.class.to_lowercase().contains(&needle)
        {
            continue;
        }
        let site = group(
            &mut tree,
            (a.isa95.enterprise.as_str(), a.isa95.site.as_str()),
        );
        let area = group(site, a.isa95.area.as_str());
        group(area, a.isa95.work_center.as_str()).push(AssetIdx(i as u32));
    }
    if tree.is_empty() {
        ui.weak("No asset matches the filter.");
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        for ((enterprise, site), areas) in &tree {
            egui::CollapsingHeader::new(RichText::new(format!("{enterprise} / {site}")).strong())
                .id_salt(("site", enterprise, site))
                .default_open(true)
                .show(ui, |ui| {
                    for (area, centers) in areas {
                        egui::CollapsingHeader::new(format!("Area: {area}"))
                            .id_salt(("area", enterprise, site, area))
                            .default_open(true)
                            .show(ui, |ui| {
                                for (center, assets) in centers {
                                    egui::CollapsingHeader::new(format!("Work center: {center}"))
                                        .id_salt(("wc", enterprise, site, area, center))
                                        .default_open(true)
                                        .show(ui, |ui| {
                                            for &idx in assets {
                                                let Some(a) = registry.get(idx) else {
                                                    continue;
                                                };
                                                let state =
                                                    states.get(&idx).copied().unwrap_or_default();
                                                ui.horizontal(|ui| {
                                                    state_dot_ui(ui, state);
                                                    let r = ui.selectable_label(
                                                        selected == Some(idx),
                                                        format!("{}  {}", a.isa95.work_unit, a.id),
                                                    );
                                                    if r.clicked() {
                                                        out.push(SelectionCommand::SelectAndFrame(
                                                            idx,
                                                        ));
                                                    }
                                                    r.on_hover_text(format!(
                                                        "{}\n{} — {}",
                                                        a.name,
                                                        a.class,
                                                        state.label()
                                                    ));
                                                });
                                            }
                                        });
                                }
                            });
                    }
                });
        }
    });
    out
}

/// What the inspector shows besides the registry record.
pub struct InspectorView<'a> {
    pub state: Option<&'a AssetState>,
    pub bound_via: Option<BindVia>,
    pub live: Option<&'a LiveValues>,
    pub freshness: Option<&'a Freshness>,
    /// The work order the asset runs (from the MES), when known.
    pub work_order: Option<&'a str>,
    /// Replay: the recorded instant shown instead of live.
    pub replay_at_us: Option<i64>,
    /// Ages are measured from here (now, or the replay cursor).
    pub now_us: i64,
    pub mes: Option<&'a AssetMesView>,
}

/// What the MES says about the selected asset, and its discrepancies.
#[derive(Debug, Clone, Default)]
pub struct AssetMesView {
    pub operation: Option<u32>,
    pub mode: Option<String>,
    /// The MES is out since then: the work order may be stale.
    pub context_unavailable_since: Option<i64>,
    /// (status, rule, MES view, twin view) of each unresolved one.
    pub discrepancies: Vec<(String, String, String, String)>,
}

/// The registry record of the selection, with its live state.
pub fn inspector_ui(
    ui: &mut egui::Ui,
    registry: &AssetRegistry,
    selected: Option<AssetIdx>,
    view: &InspectorView<'_>,
) -> Vec<SelectionCommand> {
    let mut out = Vec::new();
    let tz = registry.plant().time_zone.as_str();
    let Some(a) = selected.and_then(|i| registry.get(i)) else {
        ui.weak("Nothing selected.");
        ui.label("Click a machine in the 3D view or a work unit in the plant tree.");
        return out;
    };
    ui.heading(&a.id);
    ui.label(&a.name);
    ui.horizontal(|ui| {
        if ui.button("Frame (F)").clicked() {
            out.push(SelectionCommand::FrameSelection);
        }
        if ui.button("Deselect (Esc)").clicked() {
            out.push(SelectionCommand::Clear);
        }
    });
    ui.separator();
    if let Some(t) = view.replay_at_us {
        ui.colored_label(
            Color32::from_rgb(90, 200, 235),
            format!(
                "REPLAY — as recorded at {}",
                super::clock::label_at(
                    jiff::Timestamp::from_microsecond(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    tz
                )
            ),
        );
    }
    ui.horizontal(|ui| {
        ui.label("Work order:");
        match view.work_order {
            Some(w) => ui.label(RichText::new(w).monospace()),
            None => ui.weak("none known"),
        };
        if let Some(op) = view.mes.and_then(|m| m.operation)
            && view.replay_at_us.is_none()
        {
            ui.label(format!("operation {op}"));
        }
        if let Some(mode) = view.mes.and_then(|m| m.mode.as_deref())
            && view.replay_at_us.is_none()
        {
            ui.weak(format!("· MES mode {mode}"));
        }
    });
    if let Some(since) = view.mes.and_then(|m| m.context_unavailable_since)
        && view.replay_at_us.is_none()
    {
        ui.colored_label(
            super::mes::OUTAGE_COLOUR,
            format!(
                "MES unreachable since {}: work-order context unavailable (back-filled when it returns)",
                super::clock::label_at(
                    jiff::Timestamp::from_microsecond(since).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    tz
                )
            ),
        );
    }
    if let Some(m) = view.mes
        && !m.discrepancies.is_empty()
    {
        ui.colored_label(
            super::mes::DISCREPANCY_COLOUR,
            RichText::new(match m.discrepancies.len() {
                1 => "1 unresolved discrepancy".to_string(),
                n => format!("{n} unresolved discrepancies"),
            })
            .strong(),
        );
        for (status, rule, mes, twin) in &m.discrepancies {
            ui.label(RichText::new(format!("{rule} ({status})")).strong())
                .on_hover_text("Open the Discrepancies list (top bar) to acknowledge or resolve.");
            ui.label(format!("MES: {mes}"));
            ui.label(format!("Twin: {twin}"));
        }
    }
    let state = view.state.cloned().unwrap_or_default();
    ui.horizontal(|ui| {
        state_dot_ui(ui, state.state);
        ui.label(
            RichText::new(state.state.label())
                .strong()
                .color(state_color(state.state)),
        );
        if let Some(r) = &state.reason {
            ui.label(format!("({r})"));
        }
    });
    if let Some(since) = state.since_ts_us {
        ui.weak(format!(
            "since {}",
            super::clock::label_at(
                jiff::Timestamp::from_microsecond(since).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                tz
            )
        ));
    }
    match view.freshness {
        Some(Freshness {
            offline: Some((why, at_us)),
            ..
        }) => {
            ui.colored_label(
                Color32::from_rgb(230, 180, 40),
                format!(
                    "Offline since {}: {why}",
                    super::clock::label_at(
                        jiff::Timestamp::from_microsecond(*at_us)
                            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                        tz
                    )
                ),
            );
        }
        Some(f) if f.stale => {
            ui.colored_label(
                Color32::from_rgb(230, 180, 40),
                "Stale: no data for longer than three update periods.",
            );
        }
        _ => {}
    }
    if state.state == MachineState::Unknown {
        ui.weak("No live data received for this asset yet.");
    }
    ui.separator();
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::CollapsingHeader::new(if view.replay_at_us.is_some() {
            "Recorded values"
        } else {
            "Live values"
        })
        .default_open(true)
        .show(ui, |ui| {
            super::live::live_values_ui(ui, a, view.live, view.now_us);
        });
        egui::CollapsingHeader::new("Identity")
            .default_open(true)
            .show(ui, |ui| {
                egui::Grid::new("identity")
                    .num_columns(2)
                    .striped(true)
                    .show(ui, |ui| {
                        ui.label("Class");
                        ui.label(&a.class);
                        ui.end_row();
                        ui.label("ISO 23247 element");
                        ui.label(a.iso23247.to_string());
                        ui.end_row();
                        for (level, value) in crate::registry::Isa95Path::LEVELS
                            .iter()
                            .zip(a.isa95.levels())
                        {
                            ui.label(format!("ISA-95 {level}"));
                            ui.label(value);
                            ui.end_row();
                        }
                        if let Some(sp) = &a.sparkplug {
                            ui.label("Sparkplug B source");
                            ui.label(sp);
                            ui.end_row();
                        }
                        ui.label("glTF node");
                        let via = match view.bound_via {
                            Some(BindVia::Extras) => " (bound by extras)",
                            Some(BindVia::Name) => " (bound by name)",
                            None => " (no geometry)",
                        };
                        ui.label(format!("{}{via}", a.gltf_node));
                        ui.end_row();
                    });
            });
        egui::CollapsingHeader::new(format!("Nominal parameters ({})", a.nominal.len()))
            .default_open(true)
            .show(ui, |ui| {
                egui::Grid::new("nominal")
                    .num_columns(2)
                    .striped(true)
                    .show(ui, |ui| {
                        for (k, q) in &a.nominal {
                            ui.label(k.replace('_', " "));
                            ui.label(format!("{} {}", q.value, q.unit));
                            ui.end_row();
                        }
                    });
            });
        egui::CollapsingHeader::new(format!("Properties ({})", a.properties.len()))
            .default_open(false)
            .show(ui, |ui| {
                for p in &a.properties {
                    ui.label(RichText::new(format!("{} [{}]", p.name, p.unit)).strong());
                    if let Some(t) = &p.mqtt {
                        ui.monospace(format!("  MQTT   {t}"));
                    }
                    if let Some(n) = &p.opcua {
                        ui.monospace(format!("  OPC UA {n}"));
                    }
                    if let Some(ms) = p.expected_period_ms {
                        ui.weak(format!("  expected every {ms} ms"));
                    }
                }
            });
    });
    out
}
