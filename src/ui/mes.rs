//! The MES and reconciliation widgets: the link state, sync modes and
//! discrepancies in; [`ReconcileCommand`]s out (acknowledge, resolve).

use bevy_egui::egui::{self, Color32, RichText};

use crate::config::SyncMode;
use crate::mes::{LinkStatus, MesContext, MesLink};
use crate::reconcile::{Discrepancy, ReconcileCommand, Reconciliation, Status};
use crate::registry::AssetRegistry;

pub const OUTAGE_COLOUR: Color32 = Color32::from_rgb(240, 100, 170);
pub const DISCREPANCY_COLOUR: Color32 = Color32::from_rgb(230, 60, 60);

fn age(now_us: i64, t_us: Option<i64>) -> String {
    match t_us {
        None => "never".into(),
        Some(t) => format!("{} s ago", ((now_us - t).max(0) as f64 / 1e6).round()),
    }
}

fn time_label(t_us: i64, tz: &str) -> String {
    super::clock::label_at(
        jiff::Timestamp::from_microsecond(t_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        tz,
    )
}

/// How each domain reaches the twin, with the polling caveat.
pub fn sync_modes_text(link: &MesLink, now_us: i64) -> String {
    let d = &link.domains;
    let mut s = String::new();
    let poll_s = link.poll_interval_ms as f64 / 1000.0;
    for (name, mode) in [
        ("work orders", d.work_orders),
        ("equipment modes", d.equipment),
        ("quality", d.quality),
        ("schedule", d.schedule),
    ] {
        match mode {
            SyncMode::Events => s.push_str(&format!("{name}: events (MQTT)\n")),
            SyncMode::Polling => s.push_str(&format!(
                "{name}: polled every {poll_s:.0} s — may lag up to {poll_s:.0} s; \
                 a change undone between two polls is never seen\n"
            )),
        }
    }
    if link.polling {
        s.push_str(&format!("last poll: {}", age(now_us, link.last_poll_us)));
        if let Some(e) = &link.last_poll_error {
            s.push_str(&format!(" (last error: {e})"));
        }
    }
    s
}

/// The MES item of the top bar.
pub fn mes_status_ui(ui: &mut egui::Ui, link: &MesLink, ctx: &MesContext, tz: &str, now_us: i64) {
    let (text, colour) = match link.status {
        LinkStatus::Unknown if !link.watched() => (
            "MES: outages not detected (no heartbeat or API)".to_string(),
            Color32::from_gray(150),
        ),
        LinkStatus::Unknown => ("MES: waiting".to_string(), Color32::from_gray(150)),
        LinkStatus::Up => ("MES: up".to_string(), Color32::from_rgb(46, 184, 92)),
        LinkStatus::Down { since_us } => (
            format!(
                "MES OUT since {} · context unavailable",
                time_label(since_us, tz)
            ),
            OUTAGE_COLOUR,
        ),
        LinkStatus::CatchingUp { .. } => ("MES back: catching up…".to_string(), OUTAGE_COLOUR),
    };
    let polled: Vec<&str> = [
        ("work orders", link.domains.work_orders),
        ("modes", link.domains.equipment),
        ("schedule", link.domains.schedule),
    ]
    .into_iter()
    .filter(|(_, m)| *m == SyncMode::Polling)
    .map(|(n, _)| n)
    .collect();
    let text = if polled.is_empty() {
        text
    } else {
        format!(
            "{text} · {} polled (lag ≤ {:.0} s)",
            polled.join(", "),
            link.poll_interval_ms as f64 / 1000.0
        )
    };
    let mut hover = format!(
        "last heard {}; {} machines with a work order; last MES event at {}\n\n{}",
        age(now_us, link.last_heard_us),
        ctx.work_orders.len(),
        ctx.last_event_us.map_or("—".into(), |t| time_label(t, tz)),
        sync_modes_text(link, now_us)
    );
    if !link.outages.is_empty() {
        hover.push_str(&format!(
            "\n\n{} outage(s) this run; {} missed events fetched on recovery ({} pages)",
            link.outages.len(),
            link.caught_up_events,
            link.catch_up_pages
        ));
    }
    ui.colored_label(colour, text).on_hover_text(hover);
}

/// Widget state of the discrepancy list.
#[derive(Debug, Clone)]
pub struct DiscrepancyUiState {
    pub open: bool,
    /// None: unresolved (open or acknowledged).
    pub status: Option<Status>,
    pub show_all: bool,
    pub asset_filter: String,
    pub by: String,
    pub notes: std::collections::HashMap<String, String>,
}

impl Default for DiscrepancyUiState {
    fn default() -> Self {
        Self {
            open: false,
            status: None,
            show_all: false,
            asset_filter: String::new(),
            by: std::env::var("USER").unwrap_or_default(),
            notes: Default::default(),
        }
    }
}

fn status_colour(s: Status) -> Color32 {
    match s {
        Status::Open => DISCREPANCY_COLOUR,
        Status::Acknowledged => Color32::from_rgb(230, 180, 40),
        Status::Resolved => Color32::from_gray(140),
    }
}

fn shown(d: &Discrepancy, st: &DiscrepancyUiState) -> bool {
    let status_ok = if st.show_all {
        true
    } else {
        match st.status {
            None => d.status() != Status::Resolved,
            Some(s) => d.status() == s,
        }
    };
    let f = st.asset_filter.trim().to_ascii_lowercase();
    let text_ok = f.is_empty()
        || d.asset_id
            .as_deref()
            .is_some_and(|a| a.to_ascii_lowercase().contains(&f))
        || d.rule.contains(&f)
        || d.work_order
            .as_deref()
            .is_some_and(|w| w.to_ascii_lowercase().contains(&f));
    status_ok && text_ok
}

/// The discrepancy list: filter, acknowledge, resolve with a note.
pub fn discrepancies_ui(
    ui: &mut egui::Ui,
    rec: &Reconciliation,
    st: &mut DiscrepancyUiState,
    registry: &AssetRegistry,
) -> Vec<ReconcileCommand> {
    let tz = registry.plant().time_zone.as_str();
    let mut out = Vec::new();
    ui.horizontal(|ui| {
        ui.label("Show");
        egui::ComboBox::from_id_salt("disc_status")
            .selected_text(if st.show_all {
                "all"
            } else {
                st.status.map_or("unresolved", |s| s.label())
            })
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(!st.show_all && st.status.is_none(), "unresolved")
                    .clicked()
                {
                    st.show_all = false;
                    st.status = None;
                }
                for s in [Status::Open, Status::Acknowledged, Status::Resolved] {
                    if ui
                        .selectable_label(!st.show_all && st.status == Some(s), s.label())
                        .clicked()
                    {
                        st.show_all = false;
                        st.status = Some(s);
                    }
                }
                if ui.selectable_label(st.show_all, "all").clicked() {
                    st.show_all = true;
                }
            });
        ui.label("Filter");
        ui.add(
            egui::TextEdit::singleline(&mut st.asset_filter)
                .hint_text("asset, rule or order")
                .desired_width(140.0),
        );
        ui.label("You");
        ui.add(
            egui::TextEdit::singleline(&mut st.by)
                .hint_text("name")
                .desired_width(90.0),
        );
    });
    ui.weak("The twin never corrects the MES or itself: each divergence waits for a person.");
    if let Some(e) = &rec.last_error {
        ui.colored_label(DISCREPANCY_COLOUR, e);
    }
    ui.separator();
    let list: Vec<&Discrepancy> = rec
        .engine
        .discrepancies
        .iter()
        .rev()
        .filter(|d| shown(d, st))
        .collect();
    if list.is_empty() {
        ui.weak("No discrepancies match.");
    }
    egui::ScrollArea::vertical()
        .max_height(300.0)
        .show(ui, |ui| {
            for d in list {
                let status = d.status();
                ui.horizontal(|ui| {
                    ui.label(
                        RichText::new(status.label().to_uppercase())
                            .strong()
                            .color(status_colour(status)),
                    );
                    ui.label(RichText::new(d.asset_id.as_deref().unwrap_or("—")).strong());
                    ui.label(d.rule.replace('_', " "));
                    if let Some(w) = &d.work_order {
                        ui.monospace(w);
                    }
                });
                egui::Grid::new(("disc", &d.id))
                    .num_columns(2)
                    .show(ui, |ui| {
                        ui.weak("MES");
                        ui.label(&d.mes_view);
                        ui.end_row();
                        ui.weak("Twin");
                        ui.label(&d.twin_view);
                        ui.end_row();
                        ui.weak("Authority");
                        ui.label(format!("{} owns {}", d.authority.label(), d.domain));
                        ui.end_row();
                        ui.weak("Since");
                        let mut since = time_label(d.since_us, tz);
                        if let Some(c) = d.cleared_us {
                            since.push_str(&format!(" · condition cleared {}", time_label(c, tz)));
                        }
                        ui.label(since);
                        ui.end_row();
                        for step in d.history.iter().skip(1) {
                            ui.weak(step.status.label());
                            ui.label(format!(
                                "{} by {}{}",
                                time_label(step.ts_us, tz),
                                step.by.as_deref().unwrap_or("—"),
                                step.note
                                    .as_deref()
                                    .map(|n| format!(": {n}"))
                                    .unwrap_or_default()
                            ));
                            ui.end_row();
                        }
                    });
                if status != Status::Resolved {
                    ui.horizontal(|ui| {
                        if status == Status::Open && ui.button("Acknowledge").clicked() {
                            out.push(ReconcileCommand::Acknowledge {
                                id: d.id.clone(),
                                by: st.by.clone(),
                            });
                        }
                        let note = st.notes.entry(d.id.clone()).or_default();
                        ui.add(
                            egui::TextEdit::singleline(note)
                                .hint_text("what was found")
                                .desired_width(180.0),
                        );
                        if ui.button("Resolve").clicked() {
                            out.push(ReconcileCommand::Resolve {
                                id: d.id.clone(),
                                by: st.by.clone(),
                                note: note.clone(),
                            });
                        }
                    });
                }
                ui.weak(&d.id);
                ui.separator();
            }
        });
    out
}
