//! The OEE panel: the selection's scope (machine, its line, its area, the
//! plant) in; A, P, Q and OEE of the running shift, the loss waterfall, the
//! Pareto of losses (a click selects the machine and moves the cursor to
//! the biggest such stop), and past shifts from the history as a trend and
//! a table, out. Every number comes from `oee::compute` through the live
//! tracker or the history worker; the panel only adds records up.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{Bar, BarChart, Plot};

use crate::oee::live::{HistoryShifts, OeeCommand, OeeHeatmap, OeeLive};
use crate::oee::{Loss, Oee};
use crate::playback::PlaybackCommand;
use crate::registry::{AssetIdx, AssetRegistry};
use crate::render::selection::SelectionCommand;

/// The panel's own settings.
#[derive(Debug, Clone)]
pub struct OeeUiState {
    pub open: bool,
    /// 0 machine, 1 line, 2 area, 3 plant.
    pub scope: usize,
    pub history_hours: f64,
    asked: bool,
}

impl Default for OeeUiState {
    fn default() -> Self {
        Self {
            open: false,
            scope: 3,
            history_hours: 24.0,
            asked: false,
        }
    }
}

/// What the panel reads and sends.
#[derive(SystemParam)]
pub struct OeeUiView<'w> {
    pub live: Option<Res<'w, OeeLive>>,
    pub history: Option<Res<'w, HistoryShifts>>,
    pub heatmap: Option<Res<'w, OeeHeatmap>>,
    pub out: MessageWriter<'w, OeeCommand>,
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{:.1} %", v * 100.0))
}

/// Green at 85 % and above, through yellow, to red at 40 % and below.
pub fn oee_colour(x: Option<f64>) -> Color32 {
    let Some(v) = x else {
        return Color32::GRAY;
    };
    let t = ((v - 0.40) / 0.45).clamp(0.0, 1.0) as f32;
    let hue = t * 0.33;
    egui::ecolor::Hsva::new(hue, 0.75, 0.9, 1.0).into()
}

fn hm(t_us: i64, tz: &str) -> String {
    let ts = jiff::Timestamp::from_microsecond(t_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    match ts.in_tz(tz) {
        Ok(z) => z.strftime("%H:%M").to_string(),
        Err(_) => ts.strftime("%H:%MZ").to_string(),
    }
}

/// The machines of the scope around `selected`.
fn in_scope(
    registry: &AssetRegistry,
    selected: Option<AssetIdx>,
    scope: usize,
) -> (String, Vec<AssetIdx>) {
    let all: Vec<AssetIdx> = (0..registry.assets().len())
        .map(|i| AssetIdx(i as u32))
        .collect();
    let Some(sel) = selected.and_then(|s| registry.get(s).map(|a| (s, a))) else {
        return (registry.plant().name.clone(), all);
    };
    let (idx, a) = sel;
    match scope {
        0 => (a.id.clone(), vec![idx]),
        1 | 2 => {
            let same = |b: &crate::registry::AssetRecord| {
                b.isa95.site == a.isa95.site
                    && b.isa95.area == a.isa95.area
                    && (scope == 2 || b.isa95.work_center == a.isa95.work_center)
            };
            let label = if scope == 1 {
                format!("{} / {}", a.isa95.area, a.isa95.work_center)
            } else {
                a.isa95.area.clone()
            };
            (
                label,
                all.into_iter()
                    .filter(|i| registry.get(*i).is_some_and(same))
                    .collect(),
            )
        }
        _ => (registry.plant().name.clone(), all),
    }
}

fn sum(records: &[(AssetIdx, Oee)], scope: &[AssetIdx]) -> Oee {
    let mut o = Oee::default();
    for (a, r) in records {
        if scope.contains(a) {
            o.merge(r);
        }
    }
    o
}

/// The window.
#[allow(clippy::too_many_arguments)]
pub fn oee_window(
    ctx: &egui::Context,
    state: &mut OeeUiState,
    v: &mut OeeUiView,
    registry: &AssetRegistry,
    selected: Option<AssetIdx>,
    sel_out: &mut Vec<SelectionCommand>,
    seek: &mut Vec<PlaybackCommand>,
) {
    if !state.open {
        return;
    }
    let Some(live) = v.live.as_deref() else {
        return;
    };
    if !state.asked {
        v.out.write(OeeCommand::LoadHistory {
            hours: state.history_hours,
        });
        state.asked = true;
    }
    let tz = registry.plant().time_zone.clone();
    let t = &live.0;
    let (label, scope) = in_scope(registry, selected, state.scope);
    let rec = sum(&t.records, &scope);
    let mut open = state.open;
    // Beside the inspector, so the 3D view (and its heat-map) stays in view.
    let right = ctx.viewport_rect().max.x - 300.0;
    egui::Window::new("OEE")
        .open(&mut open)
        .default_size([660.0, 600.0])
        .pivot(egui::Align2::RIGHT_TOP)
        .default_pos([right, 60.0])
        .show(ctx, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(format!("OEE — {label}")).strong().size(16.0));
                egui::ComboBox::from_id_salt("oee-scope")
                    .selected_text(["machine", "line", "area", "plant"][state.scope.min(3)])
                    .show_ui(ui, |ui| {
                        for (i, s) in ["machine", "line", "area", "plant"].iter().enumerate() {
                            ui.selectable_value(&mut state.scope, i, *s);
                        }
                    });
                let on = v.heatmap.as_deref().is_some_and(|h| h.0);
                let mut want = on;
                ui.checkbox(&mut want, "3D heat-map by OEE");
                if want != on {
                    v.out.write(OeeCommand::Heatmap(want));
                }
            });
            match &t.period {
                Some(p) if p.from_calendar => {
                    ui.label(format!(
                        "shift {} ({}–{}), live since {}, as of {} (the shift's earlier part: past shifts below)",
                        p.label,
                        hm(p.start_us, &tz),
                        hm(p.end_us, &tz),
                        hm(p.live_from_us, &tz),
                        hm(t.computed_us, &tz)
                    ));
                }
                Some(p) => {
                    ui.colored_label(
                        Color32::from_rgb(240, 180, 60),
                        format!(
                            "no shift calendar: all time counted as planned — {} ({}), as of {}",
                            p.label,
                            hm(p.start_us, &tz),
                            hm(t.computed_us, &tz)
                        ),
                    );
                }
                None => {
                    ui.label("off shift: no planned time now (past shifts below)");
                }
            }
            if t.time_scale() != 1.0 {
                ui.small(format!(
                    "the embedded demo runs {}× faster than the plant: cycle times and thresholds in its recorded time",
                    t.time_scale()
                ));
            }
            ui.horizontal(|ui| {
                for (name, x) in [
                    ("Availability", rec.availability()),
                    ("Performance", rec.performance()),
                    ("Quality", rec.quality()),
                    ("OEE", rec.oee()),
                ] {
                    ui.vertical(|ui| {
                        ui.label(name);
                        ui.label(
                            RichText::new(pct(x))
                                .size(26.0)
                                .strong()
                                .color(if name == "OEE" { oee_colour(x) } else { Color32::WHITE }),
                        );
                    });
                    ui.add_space(18.0);
                }
                ui.vertical(|ui| {
                    ui.label(format!(
                        "planned {:.1} machine-min · run {:.1}",
                        rec.planned_s / 60.0,
                        rec.run_s / 60.0
                    ));
                    ui.label(format!(
                        "produced {:.0} · good {:.0} · rejects {:.0}",
                        rec.produced,
                        rec.good,
                        rec.startup_rejects + rec.production_rejects
                    ));
                    ui.label(format!(
                        "MES quality {} ({} operations completed)",
                        pct(rec.mes_quality()),
                        rec.mes_operations
                    ))
                    .on_hover_text("The MES's own good and scrap counts, beside the counters'");
                    ui.label(format!("{} machine(s)", rec.machines));
                });
            });
            let mut warnings = rec.warnings.clone();
            warnings.sort();
            warnings.dedup();
            for w in warnings.iter().take(4) {
                ui.colored_label(Color32::from_rgb(240, 180, 60), format!("⚠ {w}"));
            }
            ui.separator();
            ui.columns(2, |cols| {
                waterfall(&mut cols[0], &rec);
                pareto(&mut cols[1], &rec, live, &scope, registry, seek, sel_out);
            });
            ui.separator();
            past(ui, state, v.history.as_deref(), &scope, &mut v.out);
        });
    state.open = open;
}

fn waterfall(ui: &mut egui::Ui, o: &Oee) {
    ui.label(RichText::new("Loss waterfall (minutes)").strong());
    let w = o.waterfall();
    let bars: Vec<Bar> = w
        .iter()
        .enumerate()
        .map(|(i, (name, s))| {
            Bar::new(i as f64, s / 60.0)
                .name(format!("{name}: {:.1} min", s / 60.0))
                .fill(match i {
                    0 => Color32::from_rgb(110, 140, 200),
                    1 => Color32::from_rgb(120, 180, 220),
                    2 => Color32::from_rgb(140, 200, 160),
                    _ => Color32::from_rgb(90, 200, 120),
                })
        })
        .collect();
    let losses = [
        format!("− availability {:.1}", o.loss_s('A') / 60.0),
        format!("− performance {:.1}", (o.run_s - o.net_run_s) / 60.0),
        format!(
            "− quality {:.1}",
            (o.net_run_s - o.fully_productive_s) / 60.0
        ),
    ];
    Plot::new("oee-waterfall")
        .height(200.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .show_grid([false, true])
        .x_axis_formatter(|m, _| {
            let names = ["planned", "run", "net run", "fully productive"];
            let r = m.value.round();
            if (m.value - r).abs() < 0.01 && (0.0..4.0).contains(&r) {
                names[r as usize].to_string()
            } else {
                String::new()
            }
        })
        .show(ui, |p| {
            p.bar_chart(BarChart::new("waterfall", bars).width(0.6))
        });
    ui.small(losses.join(" · "));
}

fn biggest(
    live: &OeeLive,
    scope: &[AssetIdx],
    loss: Loss,
    reason: &str,
) -> Option<(AssetIdx, i64, f64)> {
    let t = &live.0;
    let now = t.computed_us;
    let mut best: Option<(AssetIdx, i64, f64)> = None;
    for a in scope {
        for s in t.segments(*a, now) {
            let whole = (s.end_us - s.start_us) as f64 / 1e6;
            let l = t.rules.classify(s.state, &s.reason).map(|l| match l {
                Loss::Stop if whole < t.rules.micro_stop_threshold_s => Loss::MicroStop,
                l => l,
            });
            if l == Some(loss) && s.reason == reason && best.is_none_or(|b| whole > b.2) {
                best = Some((*a, s.start_us, whole));
            }
        }
    }
    best
}

#[allow(clippy::too_many_arguments)]
fn pareto(
    ui: &mut egui::Ui,
    o: &Oee,
    live: &OeeLive,
    scope: &[AssetIdx],
    registry: &AssetRegistry,
    seek: &mut Vec<PlaybackCommand>,
    sel_out: &mut Vec<SelectionCommand>,
) {
    ui.label(RichText::new("Losses, largest first (click: the biggest on the timeline)").strong());
    let p = o.pareto();
    let top: Vec<_> = p.iter().take(8).collect();
    let max = top.first().map_or(1.0, |x| x.2).max(1e-9);
    for (loss, reason, s) in top {
        ui.horizontal(|ui| {
            let w = 160.0 * (*s / max) as f32;
            let (rect, _) = ui.allocate_exact_size(egui::vec2(160.0, 14.0), egui::Sense::hover());
            ui.painter().rect_filled(
                egui::Rect::from_min_size(rect.min, egui::vec2(w, 14.0)),
                2.0,
                match loss.factor() {
                    'A' => Color32::from_rgb(220, 90, 80),
                    'P' => Color32::from_rgb(240, 180, 60),
                    _ => Color32::from_rgb(160, 120, 220),
                },
            );
            let text = if reason.is_empty() {
                format!("{} {:.1} min", loss.label(), s / 60.0)
            } else {
                format!("{} — {reason} {:.1} min", loss.label(), s / 60.0)
            };
            match biggest(live, scope, *loss, reason) {
                Some((a, t, d)) => {
                    let id = registry.get(a).map_or("", |r| r.id.as_str());
                    if ui
                        .link(text)
                        .on_hover_text(format!("the biggest: {id}, {:.0} s", d))
                        .clicked()
                    {
                        sel_out.push(SelectionCommand::Select(a));
                        seek.push(PlaybackCommand::Seek(t));
                    }
                }
                None => {
                    ui.label(text);
                }
            }
        });
    }
    if p.is_empty() {
        ui.label("no losses yet");
    }
}

fn past(
    ui: &mut egui::Ui,
    state: &mut OeeUiState,
    h: Option<&HistoryShifts>,
    scope: &[AssetIdx],
    out: &mut MessageWriter<OeeCommand>,
) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("Past shifts (from the history)").strong());
        ui.add(
            egui::DragValue::new(&mut state.history_hours)
                .range(1.0..=24.0 * 31.0)
                .suffix(" h"),
        );
        let busy = h.is_some_and(|h| h.busy);
        if ui.add_enabled(!busy, egui::Button::new("Reload")).clicked() {
            out.write(OeeCommand::LoadHistory {
                hours: state.history_hours,
            });
        }
        if busy {
            ui.spinner();
        }
    });
    let Some(h) = h else { return };
    if let Some(e) = &h.error {
        ui.colored_label(Color32::from_rgb(220, 60, 60), e);
    }
    let rows: Vec<(String, Oee)> = h
        .rows
        .iter()
        .map(|(label, recs)| (label.clone(), sum(recs, scope)))
        .filter(|(_, o)| o.planned_s > 0.0)
        .collect();
    if rows.is_empty() {
        ui.label("nothing recorded in that window");
        return;
    }
    let bars: Vec<Bar> = rows
        .iter()
        .enumerate()
        .map(|(i, (label, o))| {
            Bar::new(i as f64, o.oee().unwrap_or(0.0) * 100.0)
                .name(format!("{label}: OEE {}", pct(o.oee())))
                .fill(oee_colour(o.oee()))
        })
        .collect();
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    Plot::new("oee-trend")
        .height(120.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .include_y(0.0)
        .include_y(100.0)
        .x_axis_formatter(move |m, _| {
            let r = m.value.round();
            if (m.value - r).abs() < 0.01 && r >= 0.0 {
                labels.get(r as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |p| {
            p.bar_chart(BarChart::new("OEE per shift", bars).width(0.7))
        });
    egui::Grid::new("oee-past").striped(true).show(ui, |ui| {
        for hd in ["shift", "planned machine-h", "A", "P", "Q", "OEE"] {
            ui.label(RichText::new(hd).small().strong());
        }
        ui.end_row();
        for (label, o) in rows.iter().rev() {
            ui.label(label);
            ui.label(format!("{:.2}", o.planned_s / 3600.0));
            ui.label(pct(o.availability()));
            ui.label(pct(o.performance()));
            ui.label(pct(o.quality()));
            ui.colored_label(oee_colour(o.oee()), pct(o.oee()));
            ui.end_row();
        }
    });
}
