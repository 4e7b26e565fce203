//! The quality panel: recent failed parts and a serial typed in; the
//! followed part's genealogy (a click, or Follow ▶, walks the 3D view and
//! the time cursor through its operations), what was different (ranked,
//! each with its signal against the good-part envelope), the evidence pack
//! and the investigation's audit trail, out as commands
//! ([`QualityCommand`], [`SelectionCommand`], [`PlaybackCommand`]).

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{Line, Plot, PlotPoints, Polygon};

use crate::history::audit::AuditEntry;
use crate::playback::{PlaybackCommand, TimeCursor};
use crate::quality::app::{APP_GOOD_PARTS, QualityCommand, QualityView};
use crate::quality::compare::Difference;
use crate::quality::evidence::at;
use crate::quality::{ALARM_SCORE, Verdict};
use crate::registry::AssetRegistry;
use crate::render::selection::SelectionCommand;

/// Meanings a signature can carry (21 CFR 11.50: the meaning is part of
/// the signed record).
pub const MEANINGS: [&str; 4] = [
    "reviewed",
    "approved: root cause confirmed",
    "approved: disposition as scrap",
    "responsibility for the investigation",
];

/// The panel's own settings.
#[derive(Debug, Clone)]
pub struct QualityUiState {
    pub open: bool,
    pub serial: String,
    pub hours: f64,
    pub note: String,
    pub conclusion: String,
    pub signer: String,
    pub meaning: usize,
    pub evidence_dir: String,
    /// Walking the operations as the cursor plays.
    pub following: bool,
    /// The operation the view was last moved to.
    pub at_operation: Option<usize>,
    asked: bool,
    /// When the failures were last asked for (wall clock, s).
    refreshed_s: f64,
    /// The followed serial whose first operation was already shown.
    shown: Option<String>,
}

impl Default for QualityUiState {
    fn default() -> Self {
        Self {
            open: false,
            serial: String::new(),
            hours: 24.0,
            note: String::new(),
            conclusion: String::new(),
            signer: std::env::var("USER").unwrap_or_default(),
            meaning: 0,
            evidence_dir: String::new(),
            following: false,
            at_operation: None,
            asked: false,
            refreshed_s: 0.0,
            shown: None,
        }
    }
}

/// What the panel reads and sends.
#[derive(SystemParam)]
pub struct QualityUiView<'w> {
    pub view: Option<Res<'w, QualityView>>,
    pub out: MessageWriter<'w, QualityCommand>,
}

const ALARM: Color32 = Color32::from_rgb(235, 80, 60);
const BAND: Color32 = Color32::from_rgb(90, 130, 190);
const PART: Color32 = Color32::from_rgb(255, 90, 70);

/// The followed part's operations as a timeline row: (asset, start, end).
pub fn part_bands(view: &QualityUiView) -> Option<super::timeline::FutureRow> {
    let r = view.view.as_ref()?.ranking.as_ref()?;
    let colours = [
        Color32::from_rgb(250, 200, 70),
        Color32::from_rgb(120, 200, 255),
        Color32::from_rgb(170, 240, 140),
        Color32::from_rgb(240, 140, 220),
    ];
    Some(super::timeline::FutureRow {
        name: format!("part {}", r.genealogy.serial),
        colour: colours[0],
        spans: r
            .genealogy
            .operations
            .iter()
            .enumerate()
            .filter_map(|(k, o)| Some((o.start_us, o.end_us?, colours[k % colours.len()])))
            .collect(),
    })
}

fn envelope_plot(ui: &mut egui::Ui, id: &str, d: &Difference, height: f32) {
    let e = &d.envelope;
    let pts = |ys: &[f64]| -> Vec<[f64; 2]> {
        e.x.iter()
            .zip(ys)
            .filter(|(_, y)| y.is_finite())
            .map(|(x, y)| [*x, *y])
            .collect()
    };
    // The band as one quad per step (egui_plot fills convex polygons).
    let quads: Vec<Vec<[f64; 2]>> = (0..e.x.len().saturating_sub(1))
        .filter(|&k| {
            [e.p05[k], e.p05[k + 1], e.p95[k], e.p95[k + 1]]
                .iter()
                .all(|v| v.is_finite())
        })
        .map(|k| {
            vec![
                [e.x[k], e.p05[k]],
                [e.x[k + 1], e.p05[k + 1]],
                [e.x[k + 1], e.p95[k + 1]],
                [e.x[k], e.p95[k]],
            ]
        })
        .collect();
    Plot::new(id)
        .height(height)
        .show_axes([true, true])
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .x_axis_label(if d.spectrum {
            "Hz"
        } else {
            "operation, start to end"
        })
        .show(ui, |p| {
            for q in quads {
                p.polygon(
                    Polygon::new("5–95 % of good parts", PlotPoints::from(q))
                        .fill_color(BAND.gamma_multiply(0.35))
                        .stroke(egui::Stroke::NONE),
                );
            }
            p.line(
                Line::new("median of good parts", PlotPoints::from(pts(&e.p50)))
                    .color(BAND)
                    .width(1.5),
            );
            p.line(
                Line::new("this part", PlotPoints::from(pts(&e.part)))
                    .color(PART)
                    .width(2.0),
            );
        });
}

#[allow(clippy::too_many_arguments)]
pub fn quality_ui(
    ui: &mut egui::Ui,
    state: &mut QualityUiState,
    view: &mut QualityUiView,
    registry: &AssetRegistry,
    cursor: &TimeCursor,
    selection: &mut Vec<SelectionCommand>,
    playback: &mut Vec<PlaybackCommand>,
) {
    let tz = registry.plant().time_zone.clone();
    let QualityUiView { view: shown, out } = view;
    // The list follows the plant: asked for on opening, then every 30 s.
    let now_s = crate::ingest::now_us() as f64 / 1e6;
    if !state.asked || now_s - state.refreshed_s > 30.0 {
        state.asked = true;
        state.refreshed_s = now_s;
        out.write(QualityCommand::RefreshFailures { hours: state.hours });
    }
    let Some(v) = shown.as_deref() else {
        ui.weak("Quality needs the history.");
        return;
    };
    ui.heading("Quality — follow a part");
    ui.horizontal(|ui| {
        ui.label("Serial");
        let r = ui.add(egui::TextEdit::singleline(&mut state.serial).desired_width(170.0));
        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Follow").clicked() || enter {
            out.write(QualityCommand::Follow(state.serial.clone()));
        }
        if v.serial.is_some() && ui.button("Close").clicked() {
            out.write(QualityCommand::Close);
            state.following = false;
        }
    });
    let mut follow: Option<String> = None;
    egui::CollapsingHeader::new(format!("Recent failures ({})", v.failures.len()))
        .default_open(v.ranking.is_none())
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("last");
                ui.add(
                    egui::DragValue::new(&mut state.hours)
                        .range(1.0..=24.0 * 90.0)
                        .suffix(" h"),
                );
                if ui.button("Refresh").clicked() {
                    out.write(QualityCommand::RefreshFailures { hours: state.hours });
                }
            });
            egui::ScrollArea::vertical()
                .id_salt("q-failures")
                .max_height(150.0)
                .show(ui, |ui| {
                    if v.failures.is_empty() {
                        ui.weak("No failed part in that time.");
                    }
                    if v.failures.len() > 1
                        && ui
                            .button(format!("What separates these {} failures", v.failures.len().min(30)))
                            .on_hover_text("Compare each of the (newest 30) failed parts with the good parts of its operations and rank the signals across the batch")
                            .clicked()
                    {
                        out.write(QualityCommand::CompareBatch(
                            v.failures.iter().take(30).map(|f| f.failure.serial.clone()).collect(),
                        ));
                    }
                    if let Some((n, rows)) = &v.batch {
                        ui.label(RichText::new(format!("Across {n} failed parts:")).strong());
                        egui::Grid::new("q-batch").striped(true).show(ui, |ui| {
                            ui.strong("asset · signal");
                            ui.strong("parts");
                            ui.strong("alarmed");
                            ui.strong("median |score|");
                            ui.end_row();
                            for r in rows.iter().take(8) {
                                let t = RichText::new(format!("{} · {}", r.asset_id, r.property));
                                if ui.link(if r.alarmed > 0 { t.color(ALARM) } else { t }).clicked()
                                    && let Some(a) = registry.by_id(&r.asset_id)
                                {
                                    selection.push(SelectionCommand::SelectAndFrame(a));
                                    playback.push(PlaybackCommand::Focus(Some(a)));
                                }
                                ui.label(r.parts.to_string());
                                ui.label(r.alarmed.to_string());
                                ui.label(format!("{:.1}", r.median_abs_score));
                                ui.end_row();
                            }
                        });
                        ui.separator();
                    }
                    for f in &v.failures {
                        ui.horizontal(|ui| {
                            if ui.link(&f.failure.serial).clicked() {
                                follow = Some(f.failure.serial.clone());
                            }
                            ui.weak(at(f.failure.ts_us, &tz));
                        });
                        ui.label(RichText::new(f.reasons.join("; ")).small().color(ALARM));
                    }
                });
        });
    if let Some(s) = follow {
        state.serial = s.clone();
        out.write(QualityCommand::Follow(s));
    }
    if let Some(b) = &v.busy {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(b);
        });
    }
    if let Some(e) = &v.error {
        ui.colored_label(ALARM, e);
    }
    let Some(r) = &v.ranking else {
        return;
    };
    let g = &r.genealogy;
    // First sight of a part: the view and the cursor go to its first
    // operation.
    if state.shown.as_deref() != Some(g.serial.as_str()) {
        state.shown = Some(g.serial.clone());
        state.evidence_dir = format!("evidence/{}", g.serial);
        state.at_operation = None;
        if let Some(o) = g.operations.first() {
            if let Some(a) = registry.by_id(&o.asset_id) {
                selection.push(SelectionCommand::SelectAndFrame(a));
            }
            playback.push(PlaybackCommand::Seek(o.start_us));
            state.at_operation = Some(o.seq);
        }
    }
    // Following: as the cursor plays through the part's operations, the
    // view moves to each asset.
    if state.following && !cursor.is_live() {
        if let Some(o) = g
            .operations
            .iter()
            .find(|o| cursor.t_us >= o.start_us && o.end_us.is_none_or(|e| cursor.t_us < e))
            && state.at_operation != Some(o.seq)
        {
            state.at_operation = Some(o.seq);
            if let Some(a) = registry.by_id(&o.asset_id) {
                selection.push(SelectionCommand::SelectAndFrame(a));
            }
        }
        if g.operations
            .last()
            .and_then(|o| o.end_us)
            .is_some_and(|e| cursor.t_us >= e)
        {
            state.following = false;
            playback.push(PlaybackCommand::Pause);
        }
    }
    ui.separator();
    let (verdict, colour) = match g.verdict() {
        Verdict::Failed => ("FAILED", ALARM),
        Verdict::Good => ("good", Color32::from_rgb(90, 200, 110)),
        Verdict::Unknown => ("not inspected yet", Color32::GRAY),
    };
    ui.horizontal(|ui| {
        ui.label(RichText::new(&g.serial).strong().size(16.0));
        ui.label(RichText::new(verdict).strong().color(colour));
    });
    for reason in g.reasons() {
        ui.colored_label(ALARM, reason);
    }
    ui.label(format!(
        "Order {} · material lot {}",
        g.work_order().unwrap_or("unknown"),
        if g.material_lots().is_empty() {
            "unknown".to_string()
        } else {
            g.material_lots().join(", ")
        }
    ));
    ui.horizontal(|ui| {
        if ui
            .button(if state.following { "⏸ Stop" } else { "Follow ▶" })
            .on_hover_text("Replay the part's route: the cursor plays through its operations and the view moves to each machine")
            .clicked()
        {
            state.following = !state.following;
            if state.following {
                if let Some(o) = g.operations.first() {
                    playback.push(PlaybackCommand::Seek(o.start_us));
                    state.at_operation = None;
                }
                playback.push(PlaybackCommand::Speed(2.0));
                playback.push(PlaybackCommand::Play);
            } else {
                playback.push(PlaybackCommand::Pause);
            }
        }
        ui.weak(format!("times in {tz}"));
    });
    egui::Grid::new("q-genealogy")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            ui.strong("#");
            ui.strong("asset");
            ui.strong("in – out");
            ui.strong("order / lot");
            ui.end_row();
            for o in &g.operations {
                let here = state.at_operation == Some(o.seq);
                let text = RichText::new(format!("{}", o.seq));
                ui.label(if here {
                    text.strong().color(PART)
                } else {
                    text
                });
                if ui
                    .link(&o.asset_id)
                    .on_hover_text("Show this operation")
                    .clicked()
                {
                    if let Some(a) = registry.by_id(&o.asset_id) {
                        selection.push(SelectionCommand::SelectAndFrame(a));
                    }
                    playback.push(PlaybackCommand::Seek(o.start_us));
                    state.at_operation = Some(o.seq);
                }
                let hms = |t: i64| {
                    let s = at(t, &tz);
                    s.get(11..23).unwrap_or(&s).to_string()
                };
                ui.label(format!(
                    "{} – {}",
                    hms(o.start_us),
                    o.end_us.map_or_else(|| "…".into(), hms)
                ));
                ui.label(format!(
                    "{} / {}",
                    o.work_order.as_deref().unwrap_or("—"),
                    o.material_lot.as_deref().unwrap_or("—")
                ));
                ui.end_row();
            }
        });
    ui.separator();
    ui.label(RichText::new("What was different").strong()).on_hover_text(format!(
        "Each signal of each machine the part went through, while it was cut, against the last {APP_GOOD_PARTS} good parts of the same operation: robust score = (value − median) / (1.4826 × MAD); |score| ≥ {ALARM_SCORE} is an alarm"
    ));
    egui::ScrollArea::vertical()
        .id_salt("q-diffs")
        .max_height((ui.available_height() - 64.0).max(220.0))
        .show(ui, |ui| {
            for (k, d) in r.differences.iter().take(8).enumerate() {
                let head = format!(
                    "{}. {} · {}{}   {:+.1}{}   ({} good parts)",
                    k + 1,
                    d.asset_id,
                    d.property,
                    d.at_hz.map(|h| format!(" @ {h:.0} Hz")).unwrap_or_default(),
                    d.score,
                    if d.alarm() { " ⚠" } else { "" },
                    d.n_good
                );
                let text = RichText::new(head).monospace();
                let text = if d.alarm() {
                    text.color(ALARM).strong()
                } else {
                    text
                };
                if ui
                    .link(text)
                    .on_hover_text("Open this signal on the timeline at the part's operation")
                    .clicked()
                {
                    if let Some(a) = registry.by_id(&d.asset_id) {
                        selection.push(SelectionCommand::SelectAndFrame(a));
                        playback.push(PlaybackCommand::Focus(Some(a)));
                    }
                    playback.push(PlaybackCommand::Seek(d.window_us.0));
                    state.at_operation = Some(d.operation);
                }
                ui.weak(format!(
                    "this part {} {u} · good median {} {u} (spread {})",
                    short(d.value),
                    short(d.median),
                    short(d.spread),
                    u = d.unit
                ));
                envelope_plot(
                    ui,
                    &format!("q-env-{k}"),
                    d,
                    if k < 3 { 110.0 } else { 70.0 },
                );
            }
        });
    ui.separator();
    ui.horizontal(|ui| {
        ui.label("Evidence pack");
        ui.add(egui::TextEdit::singleline(&mut state.evidence_dir).desired_width(180.0));
        if ui
            .button("Write")
            .on_hover_text("Genealogy, Parquet of every sample and spectrum in the part's operations, plots, a PDF report and a SHA-256 manifest")
            .clicked()
        {
            out.write(QualityCommand::WriteEvidence(
                state.evidence_dir.clone().into(),
            ));
        }
    });
    match &v.evidence {
        Some(Ok(e)) => {
            ui.label(format!(
                "Wrote {} ({} files, {} samples, {} spectra; manifest.sha256)",
                e.dir.display(),
                e.files.len() + 2,
                e.samples,
                e.spectra
            ));
        }
        Some(Err(e)) => {
            ui.colored_label(ALARM, e);
        }
        None => {}
    }
    investigation_ui(ui, state, out, v, &g.serial, &tz);
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn investigation_ui(
    ui: &mut egui::Ui,
    state: &mut QualityUiState,
    out: &mut MessageWriter<QualityCommand>,
    v: &QualityView,
    serial: &str,
    tz: &str,
) {
    egui::CollapsingHeader::new(format!(
        "Investigation ({} records on the audit trail)",
        v.trail.len()
    ))
    .show(ui, |ui| {
        for rec in &v.trail {
            let e = &rec.entry;
            ui.label(
                RichText::new(format!(
                    "#{} {} {}: {}{}",
                    rec.seq,
                    at(e.ts_us, &e.time_zone),
                    e.kind.trim_start_matches("investigation."),
                    e.value.as_deref().unwrap_or(""),
                    e.signer
                        .as_deref()
                        .map(|s| format!(" — {s}"))
                        .unwrap_or_default()
                ))
                .small(),
            );
        }
        for e in &v.pending_audit {
            ui.weak(format!("(writing) {}: {}", e.kind, e.value.as_deref().unwrap_or("")));
        }
        let entry = |kind: &str, field: &str, value: String, state: &QualityUiState| AuditEntry {
            ts_us: crate::ingest::now_us(),
            time_zone: tz.to_string(),
            kind: kind.into(),
            subject: serial.to_string(),
            field: field.into(),
            value: Some(value),
            previous_value: None,
            signer: (!state.signer.trim().is_empty()).then(|| state.signer.trim().to_string()),
            meaning: None,
        };
        ui.horizontal(|ui| {
            ui.label("Name");
            ui.add(egui::TextEdit::singleline(&mut state.signer).desired_width(120.0));
            if v.trail.is_empty() && ui.button("Open investigation").clicked() {
                out.write(QualityCommand::Audit(entry(
                    "investigation.opened",
                    "title",
                    format!("investigation of part {serial}"),
                    state,
                )));
            }
        });
        ui.horizontal(|ui| {
            ui.add(egui::TextEdit::singleline(&mut state.note).hint_text("note").desired_width(220.0));
            if ui.button("Add note").clicked() && !state.note.trim().is_empty() {
                out.write(QualityCommand::Audit(entry(
                    "investigation.note",
                    "note",
                    std::mem::take(&mut state.note),
                    state,
                )));
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut state.conclusion)
                    .hint_text("conclusion")
                    .desired_width(220.0),
            );
            if ui.button("Conclude").clicked() && !state.conclusion.trim().is_empty() {
                // A changed conclusion keeps the old one on the record.
                let previous = v
                    .trail
                    .iter()
                    .rev()
                    .find(|r| r.entry.kind == "investigation.conclusion")
                    .and_then(|r| r.entry.value.clone());
                let mut e = entry(
                    "investigation.conclusion",
                    "conclusion",
                    state.conclusion.trim().to_string(),
                    state,
                );
                e.previous_value = previous;
                out.write(QualityCommand::Audit(e));
            }
        });
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("q-meaning")
                .selected_text(MEANINGS[state.meaning.min(MEANINGS.len() - 1)])
                .show_ui(ui, |ui| {
                    for (k, m) in MEANINGS.iter().enumerate() {
                        ui.selectable_value(&mut state.meaning, k, *m);
                    }
                });
            if ui
                .button("Sign")
                .on_hover_text("Your name, the date and time with zone, and the meaning go on the hash-chained audit trail")
                .clicked()
                && !state.signer.trim().is_empty()
            {
                let mut e = entry(
                    "investigation.signed",
                    "signature",
                    state.signer.trim().to_string(),
                    state,
                );
                e.meaning = Some(MEANINGS[state.meaning.min(MEANINGS.len() - 1)].to_string());
                out.write(QualityCommand::Audit(e));
            }
        });
    });
}
