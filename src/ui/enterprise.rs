//! The enterprise view's window: the [`EnterpriseView`] (the model the app
//! fills from the enterprise broker) in; egui panels out — one card per
//! site (live, stale with when it was last heard, offline), its MES link and
//! recorder, its areas and lines with line OEE, every machine's state and
//! OEE, the open discrepancies. The only thing it sends is
//! [`EnterpriseCommand::OpenSite`] (the drill-down to a site's 3D layout),
//! which the app carries out.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};

use crate::federation::enterprise::{EnterpriseModel, SiteFreshness};
use crate::ingest::now_us;

/// The model and the link to the enterprise broker.
#[derive(Resource)]
pub struct EnterpriseView {
    pub model: EnterpriseModel,
    pub broker: String,
    pub connected: bool,
    /// The last drill-down's outcome, for the status line.
    pub note: Option<String>,
}

/// What the window asks the app to do.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum EnterpriseCommand {
    /// Open the site's 3D layout (its twin's config) in a window of its own.
    OpenSite(String),
}

fn state_colour(state: &str) -> egui::Color32 {
    match state {
        "running" => egui::Color32::from_rgb(60, 170, 90),
        "idle" | "starved" | "blocked" => egui::Color32::from_rgb(220, 180, 50),
        "setup" => egui::Color32::from_rgb(80, 140, 220),
        "down" => egui::Color32::from_rgb(210, 60, 60),
        _ => egui::Color32::GRAY,
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{:.1} %", v * 100.0))
}

/// Site time in the site's own zone, with the zone named.
fn site_time(ts_us: i64, zone: &str) -> String {
    let Ok(ts) = jiff::Timestamp::from_microsecond(ts_us) else {
        return ts_us.to_string();
    };
    match jiff::tz::TimeZone::get(zone) {
        Ok(tz) => ts.to_zoned(tz).strftime("%Y-%m-%d %H:%M:%S %Z").to_string(),
        Err(_) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

pub fn enterprise_ui(
    mut contexts: EguiContexts,
    view: Res<EnterpriseView>,
    mut out: MessageWriter<EnterpriseCommand>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let ctx = ctx.clone();
    let mut root = egui::Ui::new(
        ctx.clone(),
        "enterprise-root".into(),
        egui::UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(ctx.viewport_rect()),
    );
    let now = now_us();
    let m = &view.model;
    egui::Panel::top("enterprise-top").show(&mut root, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Mezzanine — enterprise");
            ui.separator();
            let live = m
                .sites
                .keys()
                .filter(|s| m.freshness(s, now) == SiteFreshness::Live)
                .count();
            ui.label(format!("{live} of {} sites live", m.sites.len()));
            ui.separator();
            let (colour, text) = if view.connected {
                (egui::Color32::from_rgb(60, 170, 90), "connected")
            } else {
                (egui::Color32::from_rgb(210, 60, 60), "not connected")
            };
            ui.label(format!("enterprise broker {}", view.broker));
            ui.colored_label(colour, text);
            if m.rejected_total > 0 {
                ui.separator();
                ui.colored_label(
                    egui::Color32::from_rgb(220, 140, 40),
                    format!("{} summaries could not be read", m.rejected_total),
                )
                .on_hover_text(m.rejected.join("\n"));
            }
            if let Some(n) = &view.note {
                ui.separator();
                ui.label(n);
            }
        });
    });
    let rest = root.available_rect_before_wrap();
    let mut body = root.new_child(egui::UiBuilder::new().max_rect(rest.shrink(8.0)));
    {
        let ui = &mut body;
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for (name, site) in &m.sites {
                    let fresh = m.freshness(name, now);
                    let frame = egui::Frame::group(ui.style()).inner_margin(10.0);
                    frame.show(ui, |ui| {
                        ui.set_width(470.0);
                        ui.vertical(|ui| {
                            let zone = site
                                .status
                                .as_ref()
                                .map(|s| s.time_zone.clone())
                                .unwrap_or_else(|| "UTC".into());
                            ui.horizontal(|ui| {
                                ui.heading(name);
                                let (c, label) = match fresh {
                                    SiteFreshness::Live => {
                                        (egui::Color32::from_rgb(60, 170, 90), "live".to_string())
                                    }
                                    SiteFreshness::Stale { last_seen_us } => (
                                        egui::Color32::from_rgb(220, 140, 40),
                                        format!(
                                            "STALE — last heard {} ({:.0} s ago)",
                                            site_time(last_seen_us, &zone),
                                            (now - last_seen_us) as f64 / 1e6
                                        ),
                                    ),
                                    SiteFreshness::Offline { last_seen_us } => (
                                        egui::Color32::from_rgb(210, 60, 60),
                                        format!(
                                            "OFFLINE — the site's twin or its broker went away{}",
                                            last_seen_us
                                                .map(|t| format!(", last heard {}", site_time(t, &zone)))
                                                .unwrap_or_default()
                                        ),
                                    ),
                                    SiteFreshness::Unheard => {
                                        (egui::Color32::GRAY, "not heard yet".to_string())
                                    }
                                };
                                ui.colored_label(c, label);
                            });
                            let Some(st) = &site.status else {
                                ui.label("No summary from this site yet.");
                                return;
                            };
                            ui.label(format!("{} · {}", st.name, st.time_zone));
                            ui.horizontal(|ui| {
                                ui.label(format!("MES link: {}", st.mes_link));
                                ui.separator();
                                match &st.recorder {
                                    Some(r) => {
                                        let text = format!(
                                            "recorder: {} samples, backlog {}{}",
                                            r.samples_written,
                                            r.backlog,
                                            if r.failing_since_us.is_some() {
                                                ", FAILING"
                                            } else {
                                                ""
                                            }
                                        );
                                        ui.label(text);
                                    }
                                    None => {
                                        ui.label("no recorder");
                                    }
                                }
                                ui.separator();
                                ui.label(format!("{} open discrepancies", st.open_discrepancies));
                            });
                            ui.label(format!(
                                "heartbeat {}",
                                site_time(st.ts_us, &st.time_zone)
                            ));
                            ui.add_space(4.0);
                            let mut area = "";
                            for line in m.lines(name) {
                                if line.area != area {
                                    area = line.area;
                                    ui.strong(format!("Area {area}"));
                                }
                                let shift = line
                                    .machines
                                    .iter()
                                    .find_map(|a| a.oee.as_ref().map(|o| o.shift.clone()))
                                    .unwrap_or_default();
                                ui.label(format!(
                                    "  {} — OEE {}{}",
                                    line.line,
                                    pct(line.oee),
                                    if shift.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" ({shift})")
                                    }
                                ));
                                egui::Grid::new(format!("{name}-{}-{}", line.area, line.line))
                                    .num_columns(4)
                                    .spacing([12.0, 2.0])
                                    .show(ui, |ui| {
                                        for a in &line.machines {
                                            ui.label(format!("    {}", a.asset_id));
                                            ui.colored_label(state_colour(&a.state), &a.state)
                                                .on_hover_text(a.reason.clone().unwrap_or_default());
                                            ui.label(format!(
                                                "OEE {}",
                                                pct(a.oee.as_ref().and_then(|o| o.oee))
                                            ));
                                            ui.label(if a.open_discrepancies > 0 {
                                                format!("{} discrepancies", a.open_discrepancies)
                                            } else {
                                                String::new()
                                            });
                                            ui.end_row();
                                        }
                                    });
                            }
                            ui.add_space(4.0);
                            if site.config.is_some() {
                                if ui
                                    .button("Open 3D layout ▶")
                                    .on_hover_text("The site's twin in a window of its own")
                                    .clicked()
                                {
                                    out.write(EnterpriseCommand::OpenSite(name.clone()));
                                }
                            } else {
                                ui.weak("No layout configured for this site (enterprise.toml: config = …)");
                            }
                        });
                    });
                }
            });
        });
    }
}
