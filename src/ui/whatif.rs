//! The what-if panels: the scenario builder (hypotheticals with the
//! selected machine pre-filled, horizon, replications; run with progress
//! and cancel; save and load scenario files), the ghosts' controls
//! (overlay or split screen, each variant toggleable, the future scrubbed
//! and played at ×1 to ×3600), and the compare panel (KPI differences with
//! 95 % intervals, orders that turn late or on time, the bottleneck and
//! how it moves, utilisation per machine, a Gantt of baseline vs
//! scenario), a presentation mode (F5) and the meeting pack. Reads
//! [`WhatIfView`]; sends [`WhatIfCommand`]s, [`GhostCommand`]s,
//! [`SnapshotCommand`]s and [`PlaybackCommand`]s.

use std::path::PathBuf;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{AxisHints, Bar, BarChart, Legend, Plot, VLine, uniform_grid_spacer};

use crate::playback::{PlaybackCommand, TimeCursor};
use crate::registry::{AssetIdx, AssetRegistry};
use crate::render::capture::{SnapshotCommand, SnapshotDone};
use crate::render::ghost::{GhostCommand, GhostMode, GhostView, MAX_GHOSTS, variant_srgb};
use crate::whatif::app::{JobState, WhatIfCommand, WhatIfOutcome, WhatIfView};
use crate::whatif::model::Rule;
use crate::whatif::scenario::{Change, Scenario, ScenarioFile, load_scenarios};
use crate::whatif::{Replications, pack};

/// The kinds of hypotheticals the builder offers.
const KINDS: [&str; 11] = [
    "machine down",
    "cycle time ×",
    "scrap rate",
    "MTTR ×",
    "MTBF ×",
    "overtime",
    "plant off",
    "rush order",
    "dispatch rule",
    "alternative machine",
    "buffer size",
];

/// The panel's own state: the scenario being built, and what is shown.
#[derive(Debug, Clone)]
pub struct WhatIfUiState {
    pub open: bool,
    /// Large type for a projector (F5).
    pub presentation: bool,
    pub name: String,
    pub scenarios: Vec<Scenario>,
    pub horizon_h: f64,
    pub replications: u32,
    pub seed: u64,
    pub new_kind: usize,
    pub file_path: String,
    pub message: Option<String>,
    /// The scenario (1..) the compare panel and Gantt set beside the baseline.
    pub compare: usize,
    /// Where each chart was drawn last frame (for the meeting pack).
    pub chart_rects: Vec<(String, egui::Rect)>,
    /// A pack waiting for its pictures.
    pub pack_pending: Option<PathBuf>,
    /// The fork time of the outcome shown (a new one folds the builder).
    pub shown_at_us: Option<i64>,
    /// Write the meeting pack here once a study is shown (command line),
    /// after this many frames.
    pub pack_auto: Option<(PathBuf, u32)>,
}

impl Default for WhatIfUiState {
    fn default() -> Self {
        Self {
            open: false,
            presentation: false,
            name: "What if a machine goes down".into(),
            scenarios: Vec::new(),
            horizon_h: 8.0,
            replications: 20,
            seed: 1,
            new_kind: 0,
            file_path: "scenario.toml".into(),
            message: None,
            compare: 1,
            chart_rects: Vec::new(),
            pack_pending: None,
            shown_at_us: None,
            pack_auto: None,
        }
    }
}

impl WhatIfUiState {
    /// The scenario file the builder describes.
    pub fn file(&self) -> ScenarioFile {
        ScenarioFile {
            name: self.name.clone(),
            horizon_h: Some(self.horizon_h),
            replications: Replications::Fixed(self.replications.max(2)),
            seed: self.seed,
            scenarios: self.scenarios.clone(),
        }
    }

    pub fn load(&mut self, f: ScenarioFile) {
        self.name = f.name;
        self.horizon_h = f.horizon_h.unwrap_or(8.0);
        self.replications = match f.replications {
            Replications::Fixed(n) => n,
            Replications::UntilHalfWidth { max, .. } => max,
        };
        self.seed = f.seed;
        self.scenarios = f.scenarios;
    }
}

/// What the panel reads and sends.
#[derive(SystemParam)]
pub struct WhatIfUiView<'w, 's> {
    pub view: Option<Res<'w, WhatIfView>>,
    pub ghosts: Option<Res<'w, GhostView>>,
    pub out: MessageWriter<'w, WhatIfCommand>,
    pub ghost_out: MessageWriter<'w, GhostCommand>,
    pub snap_out: MessageWriter<'w, SnapshotCommand>,
    pub snap_done: MessageReader<'w, 's, SnapshotDone>,
}

fn colour(v: usize) -> Color32 {
    let [r, g, b] = variant_srgb(v);
    Color32::from_rgb(r, g, b)
}

fn swatch(ui: &mut egui::Ui, v: usize) {
    let size = ui.text_style_height(&egui::TextStyle::Body);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    ui.painter().rect_filled(rect.shrink(2.0), 2.0, colour(v));
}

fn clock(t_us: i64, tz: &str) -> String {
    let ts = jiff::Timestamp::from_microsecond(t_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    match ts.in_tz(tz) {
        Ok(z) => z.strftime("%H:%M %Z").to_string(),
        Err(_) => ts.strftime("%H:%MZ").to_string(),
    }
}

fn hours_label(h: f64) -> String {
    let m = (h * 60.0).round() as i64;
    format!("+{}:{:02}", m / 60, m % 60)
}

/// The machines a hypothetical can name.
fn machines(registry: &AssetRegistry) -> Vec<String> {
    registry
        .assets()
        .iter()
        .filter(|a| crate::whatif::plant::is_machine(registry, &a.id))
        .map(|a| a.id.clone())
        .collect()
}

fn default_change(kind: usize, machine: &str) -> Change {
    let machine = machine.to_string();
    match kind {
        0 => Change::MachineDown {
            machine,
            from_h: 0.25,
            for_h: 2.0,
        },
        1 => Change::CycleTime {
            machine,
            factor: 1.2,
        },
        2 => Change::ScrapRate {
            machine,
            rate: 0.05,
        },
        3 => Change::Mttr {
            machine,
            factor: 2.0,
        },
        4 => Change::Mtbf {
            machine,
            factor: 0.5,
        },
        5 => Change::Overtime {
            from_h: 8.0,
            for_h: 2.0,
        },
        6 => Change::ShiftOff {
            from_h: 1.0,
            for_h: 1.0,
        },
        7 => Change::RushOrder {
            id: "RUSH-1".into(),
            product: String::new(),
            quantity: 10,
            due_h: Some(4.0),
            release_h: 0.0,
        },
        8 => Change::Dispatch {
            machine,
            rule: Rule::Edd,
        },
        9 => Change::Alternative {
            product: String::new(),
            step: 1,
            machine,
        },
        _ => Change::Buffer {
            machine,
            capacity: Some(3),
        },
    }
}

/// The future side of the timeline: per variant, the focused machine's
/// simulated states (the whole plant's busiest state when none is focused
/// is not meaningful: no rows then).
pub fn future_rows(
    w: &WhatIfUiView,
    registry: &AssetRegistry,
    focus: Option<AssetIdx>,
) -> Vec<super::timeline::FutureRow> {
    let Some(o) = w.view.as_ref().and_then(|v| v.outcome.clone()) else {
        return Vec::new();
    };
    let focused = focus
        .and_then(|f| registry.get(f))
        .and_then(|a| Some((a.id.as_str(), o.result.models[0].station(&a.id)?)));
    let Some((id, s)) = focused else {
        // No machine focused: the future's extent, without states.
        return o
            .report
            .names
            .iter()
            .enumerate()
            .take(MAX_GHOSTS)
            .map(|(v, n)| super::timeline::FutureRow {
                name: format!("{n} (select a machine to see its simulated states)"),
                colour: colour(v),
                spans: Vec::new(),
            })
            .collect();
    };
    o.trajectories
        .iter()
        .enumerate()
        .take(MAX_GHOSTS)
        .map(|(v, tr)| {
            let mut spans: Vec<(i64, i64, Color32)> = Vec::new();
            let mut last: Option<(i64, crate::whatif::SimState)> = None;
            for (k, f) in tr.frames.iter().enumerate() {
                let t = tr.origin_us + (k as f64 * tr.step_s * 1e6) as i64;
                let Some(m) = f.machines.get(s as usize) else {
                    continue;
                };
                match last {
                    Some((_, st)) if st == m.state => {}
                    Some((t0, st)) => {
                        spans.push((t0, t, sim_colour(st)));
                        last = Some((t, m.state));
                    }
                    None => last = Some((t, m.state)),
                }
            }
            if let Some((t0, st)) = last {
                spans.push((t0, tr.end_us(), sim_colour(st)));
            }
            super::timeline::FutureRow {
                name: format!("{} — {}", o.report.names[v], id),
                colour: colour(v),
                spans,
            }
        })
        .collect()
}

/// What the 3D view shows, in words, over its top-left corner while the
/// ghosts are on: the scenario time and each shown scenario's colour.
pub fn ghost_legend(
    ctx: &egui::Context,
    w: &WhatIfUiView,
    cursor: &TimeCursor,
    view_rect: egui::Rect,
    tz: &str,
) {
    if cursor.is_live() {
        return;
    }
    let Some(o) = w.view.as_ref().and_then(|v| v.outcome.clone()) else {
        return;
    };
    if cursor.t_us < o.at_us || cursor.t_us > o.horizon_end_us() {
        return;
    }
    let (mode, enabled) = w
        .ghosts
        .as_ref()
        .map_or((GhostMode::Overlay, [true; MAX_GHOSTS]), |g| {
            (g.mode, g.enabled)
        });
    egui::Area::new(egui::Id::new("whatif-legend"))
        .fixed_pos(view_rect.min + egui::vec2(10.0, 10.0))
        .order(egui::Order::Foreground)
        .interactable(false)
        .constrain_to(view_rect)
        .show(ctx, |ui| {
            ui.set_max_width((view_rect.width() - 40.0).max(160.0));
            egui::Frame::popup(ui.style()).show(ui, |ui| {
                ui.label(
                    RichText::new(format!(
                        "What-if at {} ({} after the fork)",
                        clock(cursor.t_us, tz),
                        hours_label((cursor.t_us - o.at_us) as f64 / 3.6e9)
                    ))
                    .strong()
                    .size(15.0),
                );
                ui.label("Solid: the plant now, live.  Translucent: the plant's future under");
                let names: Vec<(usize, &String)> = match mode {
                    GhostMode::Overlay => o
                        .report
                        .names
                        .iter()
                        .enumerate()
                        .take(MAX_GHOSTS)
                        .filter(|(v, _)| enabled[*v])
                        .collect(),
                    GhostMode::Split { left, right } => o
                        .report
                        .names
                        .iter()
                        .enumerate()
                        .filter(|(v, _)| *v == left || *v == right)
                        .collect(),
                };
                for (v, n) in names {
                    ui.horizontal(|ui| {
                        swatch(ui, v);
                        let side = match mode {
                            GhostMode::Split { left, .. } if v == left => "  (left)",
                            GhostMode::Split { .. } => "  (right)",
                            GhostMode::Overlay => "",
                        };
                        let what = if v == 0 {
                            "nothing changed (baseline)".to_string()
                        } else {
                            n.clone()
                        };
                        ui.label(
                            RichText::new(format!("{what}{side}"))
                                .color(colour(v))
                                .strong(),
                        );
                    });
                }
                ui.weak("A pulsing red ghost is a machine the scenario has down.");
            });
        });
}

/// Per machine, each shown variant's simulated state at the cursor, where
/// the variants do not all agree (tags under the machine's label).
pub fn ghost_tags(
    w: &WhatIfUiView,
    cursor: &TimeCursor,
) -> std::collections::HashMap<String, Vec<(Color32, String)>> {
    let mut out = std::collections::HashMap::new();
    if cursor.is_live() {
        return out;
    }
    let Some(o) = w.view.as_ref().and_then(|v| v.outcome.clone()) else {
        return out;
    };
    let shown = |v: usize| match w.ghosts.as_ref().map(|g| (g.mode, g.enabled)) {
        Some((GhostMode::Split { left, right }, _)) => v == left || v == right,
        Some((GhostMode::Overlay, e)) => e.get(v).copied().unwrap_or(false),
        None => true,
    };
    let frames: Vec<(usize, &[crate::whatif::trajectory::MachineFrame])> = o
        .trajectories
        .iter()
        .enumerate()
        .take(MAX_GHOSTS)
        .filter(|(v, _)| shown(*v))
        .filter_map(|(v, t)| Some((v, t.machines_at(cursor.t_us)?)))
        .collect();
    for (s, st) in o.result.models[0].stations.iter().enumerate() {
        let states: Vec<(usize, crate::whatif::SimState, u32)> = frames
            .iter()
            .filter_map(|(v, m)| m.get(s).map(|f| (*v, f.state, f.queue)))
            .collect();
        let differ = states.windows(2).any(|p| p[0].1 != p[1].1);
        let down = states.iter().any(|x| x.1 == crate::whatif::SimState::Down);
        if differ || down {
            out.insert(
                st.id.clone(),
                states
                    .iter()
                    .map(|(v, state, q)| {
                        let queue = if *q > 0 {
                            format!(" +{q}")
                        } else {
                            String::new()
                        };
                        (colour(*v), format!("{}{queue}", state.label()))
                    })
                    .collect(),
            );
        }
    }
    out
}

fn sim_colour(s: crate::whatif::SimState) -> Color32 {
    let [r, g, b] = crate::render::ghost::sim_state_srgb(s);
    Color32::from_rgb(r, g, b)
}

/// Keys and finished snapshots, every frame (the panel may be closed).
pub fn whatif_events(
    ctx: &egui::Context,
    state: &mut WhatIfUiState,
    w: &mut WhatIfUiView,
    registry: &AssetRegistry,
) {
    if ctx.input(|i| i.key_pressed(egui::Key::F5)) && state.open {
        state.presentation = !state.presentation;
    }
    // Pictures for a pack that waits for them.
    for d in w.snap_done.read() {
        if state.pack_pending.as_ref() == Some(&d.dir) {
            state.pack_pending = None;
            match &d.result {
                Ok(files) => {
                    w.out.write(WhatIfCommand::WritePack {
                        dir: d.dir.clone(),
                        pictures: files.clone(),
                        time_zone: registry.plant().time_zone.clone(),
                    });
                }
                Err(e) => state.message = Some(format!("the pack's pictures: {e}")),
            }
        }
    }
}

/// The panel's body; `selected` pre-fills new hypotheticals.
#[allow(clippy::too_many_arguments)]
pub fn whatif_ui(
    ui: &mut egui::Ui,
    state: &mut WhatIfUiState,
    w: &mut WhatIfUiView,
    registry: &AssetRegistry,
    selected: Option<AssetIdx>,
    cursor: &TimeCursor,
    seeks: &mut Vec<PlaybackCommand>,
) {
    // Held apart from the writers the panel uses, and put back after.
    let Some(held) = w.view.take() else {
        return;
    };
    whatif_body(ui, state, w, &held, registry, selected, cursor, seeks);
    w.view = Some(held);
}

#[allow(clippy::too_many_arguments)]
fn whatif_body(
    ui: &mut egui::Ui,
    state: &mut WhatIfUiState,
    w: &mut WhatIfUiView,
    view: &WhatIfView,
    registry: &AssetRegistry,
    selected: Option<AssetIdx>,
    cursor: &TimeCursor,
    seeks: &mut Vec<PlaybackCommand>,
) {
    let tz = registry.plant().time_zone.clone();
    let selected_id = selected
        .and_then(|i| registry.get(i))
        .map(|a| a.id.clone())
        .filter(|id| crate::whatif::plant::is_machine(registry, id));
    let machine_ids = machines(registry);
    if state.scenarios.is_empty() {
        let m = selected_id
            .clone()
            .or_else(|| machine_ids.first().cloned())
            .unwrap_or_default();
        state.scenarios.push(Scenario {
            name: format!("{m} down 2 h"),
            changes: vec![default_change(0, &m)],
        });
    }
    let ppp = ui.ctx().pixels_per_point();
    let mut rects = Vec::new();
    ui.horizontal(|ui| {
        ui.heading(if state.presentation {
            "What-if — presentation"
        } else {
            "What-if"
        });
        if ui
            .small_button("Inspector")
            .on_hover_text("Back to the inspector (the what-if result stays)")
            .clicked()
        {
            state.open = false;
        }
    });
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if state.presentation {
                for (_, f) in ui.style_mut().text_styles.iter_mut() {
                    f.size *= 1.5;
                }
            } else {
                let at = view.outcome.as_ref().map(|o| o.at_us);
                let fold = at.is_some() && at != state.shown_at_us;
                state.shown_at_us = at;
                egui::CollapsingHeader::new(RichText::new("Scenario builder").strong())
                    .default_open(view.outcome.is_none())
                    .open(fold.then_some(false))
                    .show(ui, |ui| {
                        builder(ui, state, &machine_ids, selected_id.as_deref());
                    });
            }
            run_row(ui, state, view, &mut w.out);
            if let Some(m) = &state.message {
                ui.weak(m);
            }
            if let Some(m) = &view.last_action {
                ui.weak(m);
            }
            let Some(o) = view.outcome.clone() else {
                return;
            };
            ui.separator();
            if state.compare == 0 || state.compare >= o.report.names.len() {
                state.compare = 1;
            }
            ghost_controls(ui, state, &o, w, cursor, &tz, seeks);
            ui.separator();
            if o.report.names.len() > 1 {
                compare(ui, state, &o, &tz, &mut rects);
                ui.separator();
            }
            pack_row(ui, state, &o, w, ppp);
            // A pack the command line asked for, once the view settled.
            if let Some((dir, frames)) = state.pack_auto.take() {
                if frames == 0 && !state.chart_rects.is_empty() && !cursor.is_live() {
                    request_pack(state, w, dir, ppp);
                } else {
                    state.pack_auto = Some((dir, frames.saturating_sub(1)));
                }
            }
        });
    if !rects.is_empty() {
        state.chart_rects = rects;
    }
}

fn builder(
    ui: &mut egui::Ui,
    state: &mut WhatIfUiState,
    machine_ids: &[String],
    selected: Option<&str>,
) {
    ui.horizontal(|ui| {
        ui.label("Name");
        ui.text_edit_singleline(&mut state.name);
    });
    ui.horizontal(|ui| {
        ui.label("Horizon");
        ui.add(
            egui::DragValue::new(&mut state.horizon_h)
                .range(0.25..=72.0)
                .speed(0.25)
                .suffix(" h"),
        );
        ui.label("Replications");
        ui.add(egui::DragValue::new(&mut state.replications).range(2..=500));
        ui.label("Seed");
        ui.add(egui::DragValue::new(&mut state.seed));
    });
    let mut remove_scenario = None;
    for (si, sc) in state.scenarios.iter_mut().enumerate() {
        ui.group(|ui| {
            ui.horizontal(|ui| {
                swatch(ui, si + 1);
                ui.add(egui::TextEdit::singleline(&mut sc.name).desired_width(260.0));
                if ui.small_button("✖ scenario").clicked() {
                    remove_scenario = Some(si);
                }
            });
            let mut remove = None;
            for (ci, c) in sc.changes.iter_mut().enumerate() {
                ui.horizontal_wrapped(|ui| {
                    change_editor(ui, (si, ci), c, machine_ids);
                    if ui.small_button("✖").on_hover_text("Remove").clicked() {
                        remove = Some(ci);
                    }
                });
            }
            if let Some(ci) = remove {
                sc.changes.remove(ci);
            }
            ui.horizontal(|ui| {
                egui::ComboBox::from_id_salt(("whatif-kind", si))
                    .selected_text(KINDS[state.new_kind.min(KINDS.len() - 1)])
                    .show_ui(ui, |ui| {
                        for (k, name) in KINDS.iter().enumerate() {
                            ui.selectable_value(&mut state.new_kind, k, *name);
                        }
                    });
                let m = selected
                    .map(str::to_string)
                    .or_else(|| machine_ids.first().cloned())
                    .unwrap_or_default();
                if ui
                    .button("+ hypothetical")
                    .on_hover_text("Added with the selected machine")
                    .clicked()
                {
                    sc.changes.push(default_change(state.new_kind, &m));
                }
            });
        });
    }
    if let Some(si) = remove_scenario {
        state.scenarios.remove(si);
    }
    if state.scenarios.len() < MAX_GHOSTS - 1 && ui.button("+ scenario").clicked() {
        let n = state.scenarios.len() + 1;
        state.scenarios.push(Scenario {
            name: format!("Scenario {n}"),
            changes: Vec::new(),
        });
    }
    ui.horizontal(|ui| {
        ui.label("File");
        ui.add(egui::TextEdit::singleline(&mut state.file_path).desired_width(240.0));
        if ui.button("Save").clicked() {
            let path = PathBuf::from(&state.file_path);
            state.message = Some(match std::fs::write(&path, state.file().to_toml()) {
                Ok(()) => format!("saved {}", path.display()),
                Err(e) => format!("cannot write {}: {e}", path.display()),
            });
        }
        if ui.button("Load").clicked() {
            match load_scenarios(&PathBuf::from(&state.file_path)) {
                Ok(f) => {
                    state.load(f);
                    state.message = Some(format!("loaded {}", state.file_path));
                }
                Err(e) => state.message = Some(e.to_string()),
            }
        }
    });
}

fn machine_combo(ui: &mut egui::Ui, id: (usize, usize), m: &mut String, machines: &[String]) {
    egui::ComboBox::from_id_salt(("whatif-machine", id))
        .selected_text(m.as_str())
        .width(130.0)
        .show_ui(ui, |ui| {
            for x in machines {
                ui.selectable_value(m, x.clone(), x);
            }
        });
}

fn hours(ui: &mut egui::Ui, v: &mut f64, label: &str) {
    ui.label(label);
    ui.add(
        egui::DragValue::new(v)
            .range(0.0..=72.0)
            .speed(0.05)
            .suffix(" h"),
    );
}

fn factor(ui: &mut egui::Ui, v: &mut f64) {
    ui.label("×");
    ui.add(egui::DragValue::new(v).range(0.05..=20.0).speed(0.01));
}

fn change_editor(ui: &mut egui::Ui, id: (usize, usize), c: &mut Change, machines: &[String]) {
    match c {
        Change::MachineDown {
            machine,
            from_h,
            for_h,
        } => {
            machine_combo(ui, id, machine, machines);
            ui.label("down from");
            hours(ui, from_h, "+");
            hours(ui, for_h, "for");
        }
        Change::CycleTime { machine, factor: f } => {
            machine_combo(ui, id, machine, machines);
            ui.label("cycle time");
            factor(ui, f);
        }
        Change::ScrapRate { machine, rate } => {
            machine_combo(ui, id, machine, machines);
            ui.label("scrap rate");
            let mut pct = *rate * 100.0;
            ui.add(
                egui::DragValue::new(&mut pct)
                    .range(0.0..=100.0)
                    .speed(0.1)
                    .suffix(" %"),
            );
            *rate = pct / 100.0;
        }
        Change::Mttr { machine, factor: f } => {
            machine_combo(ui, id, machine, machines);
            ui.label("repair time (MTTR)");
            factor(ui, f);
        }
        Change::Mtbf { machine, factor: f } => {
            machine_combo(ui, id, machine, machines);
            ui.label("time between failures (MTBF)");
            factor(ui, f);
        }
        Change::Overtime { from_h, for_h } => {
            ui.label("overtime from");
            hours(ui, from_h, "+");
            hours(ui, for_h, "for");
        }
        Change::ShiftOff { from_h, for_h } => {
            ui.label("plant off from");
            hours(ui, from_h, "+");
            hours(ui, for_h, "for");
        }
        Change::RushOrder {
            id: oid,
            product,
            quantity,
            due_h,
            release_h,
        } => {
            ui.label("rush order");
            ui.add(egui::TextEdit::singleline(oid).desired_width(70.0));
            ui.label("product (or like:ORDER)");
            ui.add(egui::TextEdit::singleline(product).desired_width(90.0));
            ui.add(
                egui::DragValue::new(quantity)
                    .range(1..=100_000)
                    .suffix(" ea"),
            );
            hours(ui, release_h, "released +");
            let mut d = due_h.unwrap_or(0.0);
            hours(ui, &mut d, "due +");
            *due_h = (d > 0.0).then_some(d);
        }
        Change::Dispatch { machine, rule } => {
            ui.label("dispatch on");
            machine_combo(ui, id, machine, machines);
            egui::ComboBox::from_id_salt(("whatif-rule", id))
                .selected_text(rule.label())
                .show_ui(ui, |ui| {
                    for r in [Rule::Fifo, Rule::Edd, Rule::Spt, Rule::Cr, Rule::Atc] {
                        ui.selectable_value(rule, r, r.label());
                    }
                });
        }
        Change::Alternative {
            product,
            step,
            machine,
        } => {
            ui.label("product (or like:ORDER)");
            ui.add(egui::TextEdit::singleline(product).desired_width(90.0));
            ui.label("step");
            ui.add(egui::DragValue::new(step).range(1..=50));
            ui.label("may also run on");
            machine_combo(ui, id, machine, machines);
        }
        Change::Buffer { machine, capacity } => {
            machine_combo(ui, id, machine, machines);
            ui.label("buffer");
            let mut n = capacity.map_or(-1, i64::from);
            ui.add(egui::DragValue::new(&mut n).range(-1..=1000))
                .on_hover_text("jobs; −1: unlimited");
            *capacity = u32::try_from(n).ok();
        }
    }
}

fn run_row(
    ui: &mut egui::Ui,
    state: &mut WhatIfUiState,
    view: &WhatIfView,
    out: &mut MessageWriter<WhatIfCommand>,
) {
    ui.horizontal_wrapped(|ui| {
        if view.busy() {
            if ui.button("⏹ Cancel").clicked() {
                out.write(WhatIfCommand::Cancel);
            }
            let (pct, text) = match &view.progress {
                Some(p) => {
                    let (d, t) = p.counts();
                    (p.percent() / 100.0, format!("{d}/{t} replications"))
                }
                None => (0.0, "waiting for the plant …".into()),
            };
            ui.add(
                egui::ProgressBar::new(pct as f32)
                    .desired_width(260.0)
                    .text(text)
                    .animate(true),
            );
        } else {
            let ready = !state.scenarios.is_empty()
                && state.scenarios.iter().all(|s| !s.changes.is_empty());
            if ui
                .add_enabled(ready, egui::Button::new(RichText::new("▶ Run").strong()))
                .on_hover_text("Fork the plant where the time cursor is and simulate each scenario beside the plant as it is")
                .on_disabled_hover_text("every scenario needs at least one hypothetical")
                .clicked()
            {
                out.write(WhatIfCommand::Run(state.file()));
            }
            if view.outcome.is_some() && ui.button("Clear").clicked() {
                out.write(WhatIfCommand::Clear);
            }
        }
        ui.toggle_value(&mut state.presentation, "Presentation (F5)");
        match &view.state {
            JobState::Failed(e) => {
                ui.colored_label(Color32::from_rgb(230, 80, 60), e);
            }
            JobState::Done => {
                if let Some(o) = &view.outcome {
                    ui.weak(format!("done in {:.1} s", o.wall_s));
                }
            }
            _ => {}
        }
    });
}

fn ghost_controls(
    ui: &mut egui::Ui,
    state: &mut WhatIfUiState,
    o: &WhatIfOutcome,
    w: &mut WhatIfUiView,
    cursor: &TimeCursor,
    tz: &str,
    seeks: &mut Vec<PlaybackCommand>,
) {
    let names = &o.report.names;
    ui.label(
        RichText::new(format!(
            "Forked from the {} plant at {} · {:.1} h ahead · {} replications",
            if o.live { "live" } else { "recorded" },
            clock(o.at_us, tz),
            o.result.models[0].horizon_s / 3600.0,
            o.report.replications
        ))
        .strong(),
    );
    let mode = w.ghosts.as_ref().map(|g| g.mode).unwrap_or_default();
    let enabled = w.ghosts.as_ref().map_or([true; MAX_GHOSTS], |g| g.enabled);
    ui.horizontal_wrapped(|ui| {
        ui.label("Ghosts:");
        for (v, n) in names.iter().enumerate().take(MAX_GHOSTS) {
            swatch(ui, v);
            let mut on = enabled[v];
            if ui.checkbox(&mut on, n.as_str()).changed() {
                w.ghost_out.write(GhostCommand::Toggle(v));
            }
        }
    });
    ui.horizontal_wrapped(|ui| {
        let split = matches!(mode, GhostMode::Split { .. });
        if ui.selectable_label(!split, "Overlay").clicked() {
            w.ghost_out.write(GhostCommand::Mode(GhostMode::Overlay));
        }
        if ui
            .selectable_label(split, "Side by side")
            .on_hover_text("Two synchronized views")
            .clicked()
        {
            w.ghost_out.write(GhostCommand::Mode(GhostMode::Split {
                left: 0,
                right: state.compare,
            }));
        }
        if let GhostMode::Split { left, right } = mode {
            let mut l = left;
            let mut r = right;
            for (label, v) in [("left", &mut l), ("right", &mut r)] {
                egui::ComboBox::from_id_salt(("whatif-split", label))
                    .selected_text(format!("{label}: {}", names.get(*v).map_or("", |s| s)))
                    .show_ui(ui, |ui| {
                        for (k, n) in names.iter().enumerate().take(MAX_GHOSTS) {
                            ui.selectable_value(v, k, n.as_str());
                        }
                    });
            }
            if (l, r) != (left, right) {
                w.ghost_out
                    .write(GhostCommand::Mode(GhostMode::Split { left: l, right: r }));
            }
        }
    });
    // The future: scrub and play.
    let horizon_h = o.result.models[0].horizon_s / 3600.0;
    let mut at_h = if cursor.is_live() {
        0.0
    } else {
        ((cursor.t_us - o.at_us) as f64 / 3.6e9).clamp(0.0, horizon_h)
    };
    ui.horizontal_wrapped(|ui| {
        ui.label("Scenario time");
        let r = ui.add(
            egui::Slider::new(&mut at_h, 0.0..=horizon_h)
                .custom_formatter(|h, _| hours_label(h))
                .text(if cursor.is_live() {
                    "live (drag into the future)".to_string()
                } else {
                    clock(cursor.t_us, tz)
                }),
        );
        if r.changed() {
            seeks.push(PlaybackCommand::Seek(o.at_us + (at_h * 3.6e9) as i64));
        }
        for speed in [60.0, 600.0, 3600.0] {
            if ui
                .button(format!("▶ ×{speed}"))
                .on_hover_text("Play the future at this speed")
                .clicked()
            {
                if cursor.is_live() {
                    seeks.push(PlaybackCommand::Seek(crate::ingest::now_us() + 1_000_000));
                }
                seeks.push(PlaybackCommand::Speed(speed));
                seeks.push(PlaybackCommand::Play);
            }
        }
        if ui.button("⏸").clicked() {
            seeks.push(PlaybackCommand::Pause);
        }
        if ui.button("Live").clicked() {
            seeks.push(PlaybackCommand::GoLive);
        }
    });
    if cursor.is_live() {
        ui.weak("The ghosts show a scenario's plant when the time cursor is past the fork: drag the slider, or press a ▶.");
    }
}

fn compare(
    ui: &mut egui::Ui,
    state: &mut WhatIfUiState,
    o: &WhatIfOutcome,
    tz: &str,
    rects: &mut Vec<(String, egui::Rect)>,
) {
    let r = &o.report;
    let names = &r.names;
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Compare").strong());
        for (v, n) in names.iter().enumerate().skip(1) {
            if ui
                .selectable_label(state.compare == v, n.as_str())
                .clicked()
            {
                state.compare = v;
            }
        }
        ui.label("with the baseline (the plant as it is)");
    });
    let v = state.compare.min(names.len() - 1);
    // The KPI table.
    egui::Grid::new("whatif-kpis")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            ui.label(RichText::new("KPI").strong());
            ui.horizontal(|ui| {
                swatch(ui, 0);
                ui.label(RichText::new(&names[0]).strong());
            });
            ui.horizontal(|ui| {
                swatch(ui, v);
                ui.label(RichText::new(&names[v]).strong());
            });
            ui.label(RichText::new("difference, 95 % interval").strong());
            ui.end_row();
            for k in &r.kpis {
                ui.label(format!("{} [{}]", k.name, k.unit));
                ui.label(format!("{:.2}", k.values[0].mean));
                ui.label(format!("{:.2}", k.values[v].mean));
                let d = k.diffs[v - 1];
                let text = if d.half_width.is_finite() {
                    format!("{:+.2} ± {:.2}", d.mean, d.half_width)
                } else {
                    format!("{:+.2}", d.mean)
                };
                if d.significant() {
                    ui.label(RichText::new(format!("{text}  (real)")).strong());
                } else {
                    ui.weak(format!("{text}  (no clear difference)"));
                }
                ui.end_row();
            }
        });
    ui.weak(format!(
        "{} replications each, the same random numbers for both: the interval is that of the difference itself.",
        r.replications
    ));
    let (to_late, to_time) = pack::turned(o, v);
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Orders").strong());
        if to_late.is_empty() && to_time.is_empty() {
            ui.label("none turns late or on time");
        }
        if !to_late.is_empty() {
            ui.colored_label(
                Color32::from_rgb(230, 90, 60),
                format!("become late: {}", to_late.join(", ")),
            );
        }
        if !to_time.is_empty() {
            ui.colored_label(
                Color32::from_rgb(60, 180, 90),
                format!("become on time: {}", to_time.join(", ")),
            );
        }
    });
    if let (Some(b0), Some(bv)) = (r.bottleneck.first(), r.bottleneck.get(v)) {
        let moved = if b0.0 == bv.0 {
            "stays".to_string()
        } else {
            "moves".to_string()
        };
        ui.label(format!(
            "Bottleneck {moved}: {} ({:.0} %) in the baseline, {} ({:.0} %) in the scenario",
            b0.0,
            b0.1 * 100.0,
            bv.0,
            bv.1 * 100.0
        ));
    }
    // Utilisation per machine, baseline and the compared scenario.
    ui.label(RichText::new("Utilisation per machine (running + setup)").strong());
    let ids: Vec<String> = r.machines.iter().map(|m| m.id.clone()).collect();
    let n = ids.len();
    let ids2 = ids.clone();
    // The scale up to the busiest machine (a round 10 %), labelled.
    let top_pct = r
        .machines
        .iter()
        .flat_map(|m| [m.utilisation[0].mean, m.utilisation[v].mean])
        .fold(0.0f64, f64::max)
        .mul_add(110.0, 0.0)
        .div_euclid(10.0)
        .mul_add(10.0, 10.0)
        .min(100.0);
    let resp = Plot::new("whatif-utilisation")
        .height(150.0)
        .legend(Legend::default())
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .include_y(0.0)
        .include_y(top_pct)
        .y_grid_spacer(uniform_grid_spacer(|_| [1.0, 5.0, 10.0]))
        .y_axis_min_width(40.0)
        .x_grid_spacer(uniform_grid_spacer(|_| [1.0, 5.0, 10.0]))
        .x_axis_formatter(move |m, _| {
            let i = m.value.round();
            if (m.value - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            ids2.get(i as usize)
                .map(|s| {
                    s.rsplit('-')
                        .take(2)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("-")
                })
                .unwrap_or_default()
        })
        .y_axis_formatter(|m, _| format!("{:.0} %", m.value))
        .show(ui, |pu| {
            for (k, var) in [0, v].into_iter().enumerate() {
                let bars: Vec<Bar> = r
                    .machines
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        Bar::new(
                            i as f64 + (k as f64 - 0.5) * 0.38,
                            m.utilisation[var].mean * 100.0,
                        )
                        .width(0.36)
                        .name(format!(
                            "{} {}: {:.1} %",
                            m.id,
                            names[var],
                            m.utilisation[var].mean * 100.0
                        ))
                    })
                    .collect();
                pu.bar_chart(BarChart::new(names[var].clone(), bars).color(colour(var)));
            }
        });
    let _ = n;
    rects.push((
        "chart-utilisation".into(),
        chart_rect(ui, resp.response.rect),
    ));
    // Gantt: baseline above, scenario below, per machine.
    ui.label(
        RichText::new(format!(
            "Operations: {} vs {} (replication 0)",
            names[0], names[v]
        ))
        .strong(),
    );
    let model = &o.result.models[0];
    let rows = model.stations.len();
    let row_names: Vec<String> = model.stations.iter().map(|s| s.id.clone()).collect();
    let origin = o.at_us;
    let tz2 = tz.to_string();
    let horizon_h = model.horizon_s / 3600.0;
    let resp = Plot::new("whatif-gantt")
        .height((rows as f32 * 20.0 + 40.0).max(140.0))
        .legend(Legend::default())
        .allow_scroll(false)
        .default_x_bounds(0.0, horizon_h)
        .default_y_bounds(-0.6, rows as f64 - 0.4)
        .show_grid([true, false])
        .x_axis_formatter(move |m, _| clock(origin + (m.value * 3.6e9) as i64, &tz2))
        .y_grid_spacer(uniform_grid_spacer(|_| [1.0, 5.0, 10.0]))
        .custom_y_axes(vec![AxisHints::new_y().min_thickness(96.0).formatter(
            move |m, _| {
                let i = m.value.round();
                if (m.value - i).abs() > 0.01 || i < 0.0 {
                    return String::new();
                }
                row_names
                    .len()
                    .checked_sub(1 + i as usize)
                    .and_then(|k| row_names.get(k))
                    .cloned()
                    .unwrap_or_default()
            },
        )])
        .show(ui, |pu| {
            for (k, var) in [0, v].into_iter().enumerate() {
                let bars: Vec<Bar> = o
                    .operations(var)
                    .into_iter()
                    .map(|(ord, step, m, a, b)| {
                        let y = (rows - 1 - m as usize) as f64 + if k == 0 { 0.2 } else { -0.2 };
                        Bar::new(y, (b - a) / 3600.0)
                            .base_offset(a / 3600.0)
                            .width(0.36)
                            .horizontal()
                            .name(format!(
                                "{} step {} · {}–{}",
                                o.result.models[var]
                                    .orders
                                    .get(ord as usize)
                                    .map_or("arrival", |x| x.id.as_str()),
                                step + 1,
                                hours_label(a / 3600.0),
                                hours_label(b / 3600.0)
                            ))
                    })
                    .collect();
                pu.bar_chart(
                    BarChart::new(names[var].clone(), bars)
                        .color(colour(var))
                        .horizontal(),
                );
            }
            pu.add(VLine::new("fork", 0.0).color(Color32::from_gray(160)));
        });
    rects.push(("chart-gantt".into(), chart_rect(ui, resp.response.rect)));
}

/// A chart's picture: its plot with the axes' labels around it, as far as
/// it is on screen.
fn chart_rect(ui: &egui::Ui, plot: egui::Rect) -> egui::Rect {
    let with_axes = egui::Rect::from_min_max(
        plot.min - egui::vec2(100.0, 4.0),
        plot.max + egui::vec2(4.0, 24.0),
    );
    with_axes.intersect(ui.clip_rect())
}

/// Asks render for the pictures of a pack into `dir` (the window and each
/// chart drawn last frame); the pack is written when they arrive.
fn request_pack(state: &mut WhatIfUiState, w: &mut WhatIfUiView, dir: PathBuf, ppp: f32) {
    let crops = state
        .chart_rects
        .iter()
        .map(|(name, r)| {
            (
                name.clone(),
                [
                    (r.min.x * ppp).max(0.0) as u32,
                    (r.min.y * ppp).max(0.0) as u32,
                    (r.width() * ppp) as u32,
                    (r.height() * ppp) as u32,
                ],
            )
        })
        .collect();
    w.snap_out.write(SnapshotCommand {
        dir: dir.clone(),
        crops,
    });
    state.pack_pending = Some(dir);
}

fn pack_row(
    ui: &mut egui::Ui,
    state: &mut WhatIfUiState,
    o: &WhatIfOutcome,
    w: &mut WhatIfUiView,
    ppp: f32,
) {
    ui.horizontal_wrapped(|ui| {
        if ui
            .button("📦 Meeting pack")
            .on_hover_text(
                "A folder with the 3D view and charts as PNG, CSVs, the scenario file and a PDF report",
            )
            .clicked()
        {
            let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
            let dir = crate::config::data_dir().join("packs").join(format!("whatif-{stamp}"));
            request_pack(state, w, dir, ppp);
        }
        let v = state.compare;
        if o.report.names.len() > 1
            && ui
                .button(format!("📣 Publish \"{}\" as a recommendation", o.report.names[v]))
                .on_hover_text("Retained on the twin's recommendations topic, with its fingerprint and a B2MML schedule file. Never written to the MES.")
                .clicked()
        {
            w.out.write(WhatIfCommand::Publish {
                variant: v,
                b2mml_dir: crate::config::data_dir().join("recommendations"),
            });
        }
        if state.pack_pending.is_some() {
            ui.spinner();
            ui.weak("taking the pictures …");
        }
    });
}
