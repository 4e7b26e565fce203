//! The schedule panel: the MES plan and the twin's schedule as two Gantts
//! (one row per machine, the plant's *now* as a line), the MES plan's
//! conflicts, the KPIs and their robustness, and per order the difference
//! in start, end and lateness. Reads [`ScheduleView`]; sends
//! [`ScheduleCommand`]s (run, cancel, publish, save B2MML).

use std::collections::HashMap;
use std::path::PathBuf;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{AxisHints, Bar, BarChart, Plot, VLine, uniform_grid_spacer};

use crate::schedule::app::{JobState, ScheduleCommand, ScheduleRequest, ScheduleView};
use crate::schedule::compare::ConflictKind;
use crate::schedule::plan::Objective;
use crate::schedule::study::ScheduleStudy;

/// The panel's own settings.
#[derive(Debug, Clone)]
pub struct ScheduleUiState {
    pub open: bool,
    /// 0 makespan, 1 weighted tardiness, 2 mix
    pub objective: usize,
    pub tardiness_weight: f64,
    pub time_limit_s: f64,
    pub replications: u32,
    pub b2mml_path: String,
}

impl Default for ScheduleUiState {
    fn default() -> Self {
        let r = ScheduleRequest::default();
        Self {
            open: false,
            objective: 2,
            tardiness_weight: 0.9,
            time_limit_s: r.time_limit_s,
            replications: r.replications,
            b2mml_path: "twin-schedule.xml".into(),
        }
    }
}

impl ScheduleUiState {
    fn request(&self) -> ScheduleRequest {
        ScheduleRequest {
            objective: match self.objective {
                0 => Objective::Makespan,
                1 => Objective::WeightedTardiness,
                _ => Objective::Mix {
                    tardiness: self.tardiness_weight,
                    makespan: 1.0 - self.tardiness_weight,
                },
            },
            time_limit_s: self.time_limit_s,
            replications: self.replications,
        }
    }
}

/// What the panel reads and sends.
#[derive(SystemParam)]
pub struct ScheduleUiView<'w> {
    pub view: Option<Res<'w, ScheduleView>>,
    pub out: MessageWriter<'w, ScheduleCommand>,
}

fn hm(t_us: i64, tz: &str) -> String {
    let ts = jiff::Timestamp::from_microsecond(t_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    match ts.in_tz(tz) {
        Ok(z) => z.strftime("%H:%M").to_string(),
        Err(_) => ts.strftime("%H:%MZ").to_string(),
    }
}

fn minutes(s: Option<f64>) -> String {
    s.map_or_else(|| "—".into(), |v| format!("{:+.0} min", v / 60.0))
}

/// A colour per order, stable across the two charts.
fn order_colour(order: &str) -> Color32 {
    let h = order.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    let hue = (h % 360) as f32 / 360.0;
    egui::ecolor::Hsva::new(hue, 0.55, 0.85, 1.0).into()
}

/// The window; `tz` the plant's time zone.
pub fn schedule_window(
    ctx: &egui::Context,
    state: &mut ScheduleUiState,
    s: &mut ScheduleUiView,
    tz: &str,
) {
    if !state.open {
        return;
    }
    let Some(view) = s.view.as_deref() else {
        return;
    };
    let mut open = state.open;
    egui::Window::new("Schedule — MES plan vs twin")
        .open(&mut open)
        .default_size([1480.0, 800.0])
        .default_pos([40.0, 50.0])
        .show(ctx, |ui| {
            controls(ui, state, view, &mut s.out);
            ui.separator();
            if let Some(study) = &view.study {
                body(ui, study, view.at.map(|a| a.1), tz);
            } else if view.state == JobState::Idle {
                ui.label("Run: the twin schedules the open orders on the plant as it is where the cursor is (live, or the recorded moment in replay) and sets the MES plan beside it.");
            }
        });
    state.open = open;
}

fn controls(
    ui: &mut egui::Ui,
    state: &mut ScheduleUiState,
    view: &ScheduleView,
    out: &mut MessageWriter<ScheduleCommand>,
) {
    ui.horizontal_wrapped(|ui| {
        ui.label("Objective");
        egui::ComboBox::from_id_salt("schedule-objective")
            .selected_text(["makespan", "weighted tardiness", "mix"][state.objective.min(2)])
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut state.objective, 0, "makespan");
                ui.selectable_value(&mut state.objective, 1, "weighted tardiness");
                ui.selectable_value(&mut state.objective, 2, "mix");
            });
        if state.objective == 2 {
            ui.add(egui::Slider::new(&mut state.tardiness_weight, 0.0..=1.0).text("× tardiness"));
        }
        ui.add(
            egui::DragValue::new(&mut state.time_limit_s)
                .range(0.5..=120.0)
                .suffix(" s search"),
        );
        ui.add(
            egui::DragValue::new(&mut state.replications)
                .range(0..=500)
                .suffix(" replications"),
        );
        let busy = view.busy();
        if ui
            .add_enabled(!busy, egui::Button::new("Run schedule"))
            .clicked()
        {
            out.write(ScheduleCommand::Run(state.request()));
        }
        if busy && ui.button("Cancel").clicked() {
            out.write(ScheduleCommand::Cancel);
        }
        ui.separator();
        let has = view.study.is_some();
        if ui
            .add_enabled(has, egui::Button::new("Publish recommendation"))
            .on_hover_text(
                "A retained message on the twin's own recommendations topic; the MES decides.",
            )
            .clicked()
        {
            out.write(ScheduleCommand::Publish);
        }
        ui.add(egui::TextEdit::singleline(&mut state.b2mml_path).desired_width(160.0));
        if ui
            .add_enabled(has, egui::Button::new("Save B2MML"))
            .clicked()
        {
            out.write(ScheduleCommand::SaveB2mml(PathBuf::from(
                state.b2mml_path.trim(),
            )));
        }
    });
    match &view.state {
        JobState::Starting | JobState::Running => {
            let (search, elapsed) = view
                .started
                .map_or((1.0, 0.0), |(t, s)| (s, t.elapsed().as_secs_f64()));
            let reps = view.progress.as_ref().map(|p| p.counts());
            let (frac, text) = match reps {
                Some((d, t)) if t > 0 => (
                    d as f32 / t as f32,
                    format!("robustness: {d}/{t} replications"),
                ),
                _ => (
                    (elapsed / search).min(1.0) as f32,
                    format!("searching: {elapsed:.1} of {search:.0} s"),
                ),
            };
            ui.add(egui::ProgressBar::new(frac).text(text));
        }
        JobState::Failed(e) => {
            ui.colored_label(Color32::from_rgb(220, 60, 60), format!("failed: {e}"));
        }
        _ => {}
    }
    if view.pending.is_some() {
        ui.label("waiting for the MES's orders and plan …");
    }
    if let Some(a) = &view.last_action {
        ui.label(a);
    }
}

fn body(ui: &mut egui::Ui, st: &ScheduleStudy, live: Option<bool>, tz: &str) {
    let p = &st.live.problem;
    ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(format!(
                "{} {} · {} open orders · {} operations · {} machines · objective {}",
                if live == Some(false) {
                    "recorded at"
                } else {
                    "live at"
                },
                hm(p.origin_us, tz),
                p.jobs.len(),
                p.ops.len(),
                p.machines.len(),
                p.objective.label()
            ))
            .strong(),
        );
        if let Some((src, at)) = &st.mes_source {
            ui.label(format!(
                "· MES plan {} ({src}, stated {})",
                st.mes.as_ref().map_or("", |m| m.schedule_id.as_str()),
                hm(*at, tz)
            ));
        }
    });
    // Rows: machines, top to bottom as the problem lists them.
    let n_rows = p.machines.len();
    let row_of = |m: &str| p.machines.iter().position(|x| x.id == m);
    let names: Vec<String> = p.machines.iter().map(|m| m.id.clone()).collect();
    let origin = p.origin_us;
    let mut mes_bars: HashMap<String, Vec<Bar>> = HashMap::new();
    if let Some(m) = &st.mes {
        for x in &m.ops {
            let Some(r) = row_of(&x.machine) else {
                continue;
            };
            let a = (x.start_us - origin) as f64 / 3.6e9;
            let b = (x.end_us - origin) as f64 / 3.6e9;
            mes_bars.entry(x.order.clone()).or_default().push(
                Bar::new((n_rows - 1 - r) as f64, b - a)
                    .base_offset(a)
                    .width(if x.stated { 0.7 } else { 0.45 })
                    .name(format!(
                        "{} step {} {}–{}{}",
                        x.order,
                        x.step + 1,
                        hm(x.start_us, tz),
                        hm(x.end_us, tz),
                        if x.stated {
                            ""
                        } else {
                            " (after its previous step)"
                        }
                    )),
            );
        }
    }
    let plan = &st.twin.best;
    let mut twin_bars: HashMap<String, Vec<Bar>> = HashMap::new();
    for (o, op) in p.ops.iter().enumerate() {
        let m = plan.machine[o];
        let job = &p.jobs[op.job];
        let a = plan.start_s[o] / 3600.0;
        let b = plan.end_s[o] / 3600.0;
        twin_bars.entry(job.id.clone()).or_default().push(
            Bar::new((n_rows - 1 - m) as f64, b - a)
                .base_offset(a)
                .width(0.7)
                .name(format!(
                    "{} step {} {}–{}",
                    job.id,
                    op.step + 1,
                    hm(origin + (plan.start_s[o] * 1e6) as i64, tz),
                    hm(origin + (plan.end_s[o] * 1e6) as i64, tz)
                )),
        );
    }
    // Machines not available now: shaded up to their return.
    let down: Vec<(usize, f64)> = p
        .machines
        .iter()
        .enumerate()
        .filter(|(_, m)| m.unavailable_because.is_some())
        .map(|(i, m)| (n_rows - 1 - i, m.available_from_s / 3600.0))
        .collect();
    let x_max = plan
        .kpis
        .makespan_s
        .max(st.mes_stated.map_or(0.0, |k| k.makespan_s))
        / 3600.0;
    let gantt = |ui: &mut egui::Ui, id: &str, title: &str, bars: &HashMap<String, Vec<Bar>>| {
        ui.label(RichText::new(title).strong());
        let names = names.clone();
        let tz2 = tz.to_string();
        let mut orders: Vec<&String> = bars.keys().collect();
        orders.sort();
        Plot::new(id)
            .height(((n_rows as f32) * 22.0 + 30.0).max(120.0))
            .link_axis("schedule-gantt", [true, false])
            .link_cursor("schedule-gantt", [true, false])
            .default_x_bounds(-0.05 * x_max.max(0.1), x_max.max(0.1) * 1.02)
            .default_y_bounds(-0.6, n_rows as f64 - 0.4)
            .allow_scroll(false)
            .show_grid([true, false])
            // Times every 5 min / 15 min / 1 h from now.
            .x_grid_spacer(uniform_grid_spacer(|_| [1.0 / 12.0, 0.25, 1.0]))
            // A mark on every row, so every machine is named.
            .y_grid_spacer(uniform_grid_spacer(|_| [1.0, 5.0, 10.0]))
            .x_axis_formatter(move |m, _| hm(origin + (m.value * 3.6e9) as i64, &tz2))
            .custom_y_axes(vec![
                AxisHints::new_y()
                    .label_spacing(10.0..=14.0)
                    .min_thickness(96.0)
                    .formatter(move |m, _| {
                        let r = m.value.round();
                        if (m.value - r).abs() > 0.01 || r < 0.0 {
                            return String::new();
                        }
                        names
                            .len()
                            .checked_sub(1 + r as usize)
                            .and_then(|i| names.get(i))
                            .cloned()
                            .unwrap_or_default()
                    }),
            ])
            .show(ui, |pu| {
                if !down.is_empty() {
                    let shade: Vec<Bar> = down
                        .iter()
                        .map(|(r, until)| {
                            Bar::new(*r as f64, *until)
                                .width(0.9)
                                .fill(Color32::from_rgba_unmultiplied(220, 60, 60, 70))
                                .stroke(egui::Stroke::NONE)
                                .name("not available (expected return)")
                        })
                        .collect();
                    pu.bar_chart(BarChart::new("machine not back", shade).horizontal());
                }
                for o in &orders {
                    let c = order_colour(o);
                    let bs: Vec<Bar> = bars[*o]
                        .iter()
                        .cloned()
                        .map(|b| b.fill(c).stroke(egui::Stroke::new(0.5, Color32::BLACK)))
                        .collect();
                    pu.bar_chart(BarChart::new(o.as_str(), bs).horizontal());
                }
                pu.vline(
                    VLine::new("now", 0.0)
                        .color(Color32::from_rgb(255, 200, 40))
                        .width(2.0),
                );
            });
    };
    ui.columns(2, |cols| {
        egui::ScrollArea::vertical()
            .id_salt("schedule-left")
            .show(&mut cols[0], |ui| {
                gantt(
                    ui,
                    "gantt-mes",
                    "MES plan (as the MES stated it)",
                    &mes_bars,
                );
                gantt(
                    ui,
                    "gantt-twin",
                    "Twin schedule (finite capacity, the plant as it is)",
                    &twin_bars,
                );
            });
        egui::ScrollArea::vertical()
            .id_salt("schedule-right")
            .show(&mut cols[1], |ui| {
                kpis(ui, st);
                conflicts(ui, st);
                differences(ui, st, tz);
            });
    });
}

fn kpis(ui: &mut egui::Ui, st: &ScheduleStudy) {
    ui.label(RichText::new("KPIs").strong());
    egui::Grid::new("schedule-kpis")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            ui.label("");
            ui.label("makespan");
            ui.label("weighted tardiness");
            ui.label("late orders");
            ui.end_row();
            let row = |ui: &mut egui::Ui, name: &str, k: Option<&crate::schedule::plan::Kpis>| {
                ui.label(name);
                match k {
                    Some(k) => {
                        ui.label(format!("{:.2} h", k.makespan_s / 3600.0));
                        ui.label(format!("{:.2} h", k.weighted_tardiness_s / 3600.0));
                        ui.label(k.tardy_jobs.to_string());
                    }
                    None => {
                        ui.label("—");
                        ui.label("—");
                        ui.label("—");
                    }
                }
                ui.end_row();
            };
            row(ui, "MES plan, as stated", st.mes_stated.as_ref());
            row(
                ui,
                "MES plan on the plant as it is",
                st.mes_executed.as_ref().map(|e| &e.kpis),
            );
            row(ui, "twin schedule", Some(&st.twin.best.kpis));
        });
    if let Some(r) = &st.robustness {
        ui.add_space(4.0);
        ui.label(
            RichText::new(format!(
                "Under breakdowns and cycle-time variation ({} replications, 95 %): weighted tardiness MES {:.2} ± {:.2} h, twin {:.2} ± {:.2} h; Δ {:+.2} ± {:.2} h",
                r.replications,
                r.mes.tardiness_h.mean,
                r.mes.tardiness_h.half_width,
                r.twin.tardiness_h.mean,
                r.twin.tardiness_h.half_width,
                r.tardiness_delta_h.mean,
                r.tardiness_delta_h.half_width
            ))
            .color(if r.tardiness_delta_h.mean < 0.0 && r.tardiness_delta_h.significant() {
                Color32::from_rgb(90, 200, 120)
            } else {
                Color32::GRAY
            }),
        );
        ui.label(r.sentence());
    }
    ui.label(format!(
        "search: first schedule ({:?}) in {:.1} ms, best after {:.2} s, {} iterations",
        st.twin.start_rule,
        st.twin.first_schedule.as_secs_f64() * 1e3,
        st.twin.time_to_best.as_secs_f64(),
        st.twin.iterations
    ));
    ui.separator();
}

fn conflicts(ui: &mut egui::Ui, st: &ScheduleStudy) {
    let Some(m) = &st.mes else {
        ui.label("No MES plan heard or recorded: the twin's schedule alone.");
        return;
    };
    ui.label(RichText::new(format!("Conflicts in the MES plan ({})", m.conflicts.len())).strong());
    if m.conflicts.is_empty() {
        ui.label("none with the plant as it is");
    }
    for c in &m.conflicts {
        let colour = match c.kind {
            ConflictKind::MachineDown => Color32::from_rgb(230, 90, 80),
            ConflictKind::Overlap => Color32::from_rgb(240, 170, 60),
            ConflictKind::CannotRun => Color32::from_rgb(200, 120, 230),
            ConflictKind::DueImpossible => Color32::from_rgb(120, 170, 240),
        };
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(colour, format!("[{}]", c.kind.label()));
            ui.label(&c.message);
        });
    }
    for n in &m.notes {
        ui.small(n);
    }
    ui.separator();
}

fn differences(ui: &mut egui::Ui, st: &ScheduleStudy, tz: &str) {
    ui.label(RichText::new("Orders: MES plan vs twin").strong());
    egui::Grid::new("schedule-orders")
        .striped(true)
        .num_columns(8)
        .show(ui, |ui| {
            for h in [
                "order",
                "due",
                "MES start–end",
                "MES lateness",
                "twin start–end",
                "twin lateness",
                "Δ start",
                "Δ end",
            ] {
                ui.label(RichText::new(h).small().strong());
            }
            ui.end_row();
            for d in &st.diffs {
                ui.label(&d.order);
                ui.label(d.due_us.map_or("—".into(), |t| hm(t, tz)));
                ui.label(match (d.mes_start_us, d.mes_end_us) {
                    (Some(a), Some(b)) => format!("{}–{}", hm(a, tz), hm(b, tz)),
                    _ => "—".into(),
                });
                let late = |ui: &mut egui::Ui, s: Option<f64>| {
                    let t = minutes(s);
                    match s {
                        Some(v) if v > 0.0 => {
                            ui.colored_label(Color32::from_rgb(230, 90, 80), t);
                        }
                        _ => {
                            ui.label(t);
                        }
                    }
                };
                late(ui, d.lateness_s(d.mes_end_us));
                ui.label(format!(
                    "{}–{}",
                    hm(d.twin_start_us, tz),
                    hm(d.twin_end_us, tz)
                ));
                late(ui, d.lateness_s(Some(d.twin_end_us)));
                ui.label(minutes(d.start_delta_s()));
                ui.label(minutes(d.end_delta_s()));
                ui.end_row();
            }
        });
}
