//! The panels: twin state, registry and selection in; [`SelectionCommand`]s,
//! [`CameraCommand`]s and the panel insets ([`ViewportInsets`]) out.
//! Panels never change the twin; they only send commands.

pub mod clock;
pub mod enterprise;
pub mod live;
pub mod mes;
pub mod oee;
pub mod panels;
pub mod quality;
pub mod schedule;
pub mod timeline;
pub mod whatif;

use std::collections::HashMap;

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use crate::history::History;
use crate::ingest::{DeadLetters, LatencyStats, LinkStatus, now_us};
use crate::playback::{PlaybackCommand, PlaybackData, Shown, TimeCursor, TimelineView};
use crate::registry::{AssetIdx, AssetRegistry};
use crate::render::{
    CameraCommand, OrbitCamera, Selection, SelectionCommand, ViewportInsets, WorldBounds,
};
use crate::scene::{LoadPhase, PlantLayout};
use crate::twin::{BoundAsset, MachineState, TwinCounters};

/// Read-only view of playback for the timeline, and where its commands go.
#[derive(bevy::ecs::system::SystemParam)]
pub struct PlaybackView<'w> {
    cursor: Res<'w, TimeCursor>,
    view: Res<'w, TimelineView>,
    data: Res<'w, PlaybackData>,
    history: Option<Res<'w, History>>,
    out: MessageWriter<'w, PlaybackCommand>,
}

/// Read-only view of the ingest state for the panels.
#[derive(bevy::ecs::system::SystemParam)]
pub struct IngestView<'w> {
    links: Res<'w, LinkStatus>,
    latency: Res<'w, LatencyStats>,
    counters: Res<'w, TwinCounters>,
    dead: Res<'w, DeadLetters>,
}

/// Read-only view of the MES link and reconciliation, and where lifecycle
/// commands go.
#[derive(bevy::ecs::system::SystemParam)]
pub struct MesUiView<'w> {
    ctx: Option<Res<'w, crate::mes::MesContext>>,
    link: Option<Res<'w, crate::mes::MesLink>>,
    state: Option<Res<'w, crate::mes::MesState>>,
    rec: Option<Res<'w, crate::reconcile::Reconciliation>>,
    out: MessageWriter<'w, crate::reconcile::ReconcileCommand>,
    demo: Option<Res<'w, crate::demo::DemoControls>>,
    demo_out: MessageWriter<'w, crate::demo::DemoCommand>,
}

impl MesUiView<'_> {
    /// Unresolved discrepancies per asset id.
    fn badges(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        if let Some(r) = &self.rec {
            for d in &r.engine.discrepancies {
                if d.status() != crate::reconcile::Status::Resolved
                    && let Some(a) = &d.asset_id
                {
                    *m.entry(a.clone()).or_insert(0) += 1;
                }
            }
        }
        m
    }
}
use panels::{InspectorView, hierarchy_ui, inspector_ui, state_color, state_dot_ui};

/// View-only UI state (what the user typed, which panels are open).
#[derive(Resource, Debug, Default)]
pub struct UiState {
    pub filter: String,
    pub show_labels: bool,
    pub show_latency: bool,
    pub show_ingest: bool,
    pub timeline: timeline::TimelineUiState,
    pub discrepancies: mes::DiscrepancyUiState,
    pub schedule: schedule::ScheduleUiState,
    pub oee: oee::OeeUiState,
    pub whatif: whatif::WhatIfUiState,
    pub quality: quality::QualityUiState,
}

/// The analysis panels' views (schedule, OEE, what-if).
#[derive(bevy::ecs::system::SystemParam)]
pub struct Panels<'w, 's> {
    pub sched: schedule::ScheduleUiView<'w>,
    pub oee: oee::OeeUiView<'w>,
    pub whatif: whatif::WhatIfUiView<'w, 's>,
    pub quality: quality::QualityUiView<'w>,
}

pub struct UiPlugin;

impl Plugin for UiPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(UiState {
            filter: String::new(),
            show_labels: true,
            show_latency: false,
            show_ingest: false,
            timeline: timeline::TimelineUiState::default(),
            discrepancies: mes::DiscrepancyUiState::default(),
            schedule: schedule::ScheduleUiState::default(),
            oee: oee::OeeUiState::default(),
            whatif: whatif::WhatIfUiState::default(),
            quality: quality::QualityUiState::default(),
        })
        .add_message::<crate::reconcile::ReconcileCommand>()
        .add_message::<crate::demo::DemoCommand>()
        .add_systems(EguiPrimaryContextPass, main_ui);
    }
}

#[allow(clippy::too_many_arguments)]
fn main_ui(
    mut contexts: EguiContexts,
    mut ui_state: ResMut<UiState>,
    registry: Res<AssetRegistry>,
    layout: Res<PlantLayout>,
    selection: Res<Selection>,
    assets: Query<(&BoundAsset, &Shown, Option<&WorldBounds>)>,
    ingest: IngestView,
    mut mes_view: MesUiView,
    mut playback: PlaybackView,
    cameras: Query<(&Camera, &GlobalTransform), With<OrbitCamera>>,
    second: Query<(&Camera, &GlobalTransform), With<crate::render::camera::SecondView>>,
    mut insets: ResMut<ViewportInsets>,
    mut sel_out: MessageWriter<SelectionCommand>,
    mut cam_out: MessageWriter<CameraCommand>,
    mut panels: Panels,
) -> Result {
    let ctx = contexts.ctx_mut()?.clone();
    let states: HashMap<AssetIdx, MachineState> = assets
        .iter()
        .map(|(b, s, _)| (b.0, s.state.state))
        .collect();
    let mut commands: Vec<SelectionCommand> = Vec::new();

    let mut root = egui::Ui::new(
        ctx.clone(),
        "mezzanine-root".into(),
        egui::UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(ctx.viewport_rect()),
    );

    let top = egui::Panel::top("top_bar")
        .show(&mut root, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(egui::RichText::new("Mezzanine").strong().size(16.0));
                ui.separator();
                ui.label(&registry.plant().name);
                ui.label(
                    egui::RichText::new(clock::now_label(&registry.plant().time_zone)).monospace(),
                );
                ui.separator();
                match &layout.phase {
                    LoadPhase::Loading => {
                        ui.spinner();
                        ui.label(format!("Loading layout {} …", layout.path.display()));
                    }
                    LoadPhase::Ready => {
                        let total = registry.assets().len();
                        let text = format!("{}/{} assets bound", layout.bound_entities, total);
                        let clean = layout.report.as_ref().is_some_and(|r| r.is_clean());
                        if clean && layout.bound_entities == total {
                            ui.label(text);
                        } else {
                            ui.colored_label(egui::Color32::from_rgb(230, 120, 20), text)
                                .on_hover_text(
                                    layout
                                        .report
                                        .as_ref()
                                        .map(|r| r.to_text())
                                        .unwrap_or_default(),
                                );
                        }
                    }
                    LoadPhase::Failed(msg) => {
                        ui.colored_label(egui::Color32::from_rgb(220, 50, 50), msg);
                    }
                }
                ui.separator();
                if ui.button("Frame plant (H)").clicked() {
                    cam_out.write(CameraCommand::FrameAll);
                }
                ui.checkbox(&mut ui_state.show_labels, "Labels");
                ui.separator();
                for (name, state) in [
                    ("MQTT", &ingest.links.mqtt),
                    ("OPC UA", &ingest.links.opcua),
                ] {
                    let (text, colour) = live::link_label(state);
                    let size = ui.text_style_height(&egui::TextStyle::Body);
                    let (rect, _) =
                        ui.allocate_exact_size(egui::vec2(size * 0.7, size), egui::Sense::hover());
                    ui.painter()
                        .circle_filled(rect.center(), size * 0.28, colour);
                    ui.colored_label(colour, name).on_hover_text(text);
                }
                if let (Some(link), Some(mctx)) = (&mes_view.link, &mes_view.ctx) {
                    mes::mes_status_ui(ui, link, mctx, &registry.plant().time_zone, now_us());
                }
                if let Some(demo) = &mes_view.demo {
                    let online = demo.mes_online();
                    let label = if online {
                        "Demo: MES outage"
                    } else {
                        "Demo: restore MES"
                    };
                    if ui
                        .button(label)
                        .on_hover_text(
                            "Embedded demo only: take its MES off the network (no events, no \
                             heartbeat, API refused) or bring it back, to see the outage, the \
                             catch-up and the back-fill.",
                        )
                        .clicked()
                    {
                        mes_view
                            .demo_out
                            .write(crate::demo::DemoCommand::SetMesOnline(!online));
                    }
                }
                if let Some(rec) = &mes_view.rec {
                    let open = rec
                        .engine
                        .discrepancies
                        .iter()
                        .filter(|d| d.status() == crate::reconcile::Status::Open)
                        .count();
                    let label = egui::RichText::new(format!("Discrepancies ({open} open)"));
                    let label = if open > 0 {
                        label.color(mes::DISCREPANCY_COLOUR)
                    } else {
                        label
                    };
                    ui.toggle_value(&mut ui_state.discrepancies.open, label);
                }
                if panels.oee.live.is_some() {
                    ui.toggle_value(&mut ui_state.oee.open, "OEE")
                        .on_hover_text("Availability × performance × quality (ISO 22400-2)");
                }
                if panels.sched.view.is_some() {
                    ui.toggle_value(&mut ui_state.schedule.open, "Schedule")
                        .on_hover_text("The MES plan against the twin's finite-capacity schedule");
                }
                if panels.whatif.view.is_some() {
                    ui.toggle_value(&mut ui_state.whatif.open, "What-if")
                        .on_hover_text("Scenarios of the plant's future as ghosts over the live plant, compared with 95 % intervals");
                }
                if panels.quality.view.is_some() {
                    ui.toggle_value(&mut ui_state.quality.open, "Quality")
                        .on_hover_text("Follow a failed part through the machines that made it and see what was different");
                }
                ui.toggle_value(&mut ui_state.show_latency, "Latency");
                ui.toggle_value(
                    &mut ui_state.show_ingest,
                    format!("Ingest ({} dead letters)", ingest.dead.total),
                );
            });
        })
        .response
        .rect
        .height();

    // The timeline and the status bar share the bottom edge.
    let focus = selection.selected;
    if playback.view.focus != focus {
        playback.out.write(PlaybackCommand::Focus(focus));
    }
    let mut pb_cmds = timeline::timeline_keys(&ctx, &playback.cursor);
    let bottom_status = egui::Panel::bottom("status_bar")
        .show(&mut root, |ui| {
            ui.horizontal_wrapped(|ui| {
                for s in MachineState::ALL {
                    state_dot_ui(ui, s);
                    ui.label(s.label());
                }
                ui.separator();
                ui.weak("Left-drag orbit · right-drag pan · wheel zoom · WASD/arrows pan · Q/E turn · F frame selection · H frame plant · Esc deselect · L live · Space play/pause · comma/period step · N/B next/previous event");
            });
        })
        .response
        .rect
        .height();
    // Controls and strip, then trend plots: as many as fit in 40 % of the window.
    let n_trends = if ui_state.timeline.hide_trends || playback.view.focus.is_none() {
        0
    } else {
        playback.data.trend.series.len().max(1)
    };
    let want = 130.0 + 84.0 * n_trends as f32;
    let timeline_size = want.min((ctx.viewport_rect().height() * 0.4).max(130.0));
    let timeline_height = egui::Panel::bottom("timeline")
        .resizable(false)
        .exact_size(timeline_size)
        .show(&mut root, |ui| {
            let input = timeline::TimelineInput {
                mes_outages: mes_view
                    .link
                    .as_ref()
                    .map(|l| l.outages.clone())
                    .unwrap_or_default(),
                registry: &registry,
                cursor: &playback.cursor,
                view: &playback.view,
                data: &playback.data,
                stats: playback.history.as_ref().map(|h| h.stats.as_ref()),
                now_us: now_us(),
                future: whatif::future_rows(&panels.whatif, &registry, playback.view.focus),
                part: quality::part_bands(&panels.quality),
            };
            if playback.history.is_none() {
                ui.weak("History is off ([history] enabled = false): no playback.");
            } else {
                pb_cmds.extend(timeline::timeline_ui(ui, &input, &mut ui_state.timeline));
            }
        })
        .response
        .rect
        .height();
    let bottom = bottom_status + timeline_height;
    for c in pb_cmds {
        playback.out.write(c);
    }

    let filter = &mut ui_state.filter;
    let left = egui::Panel::left("plant_tree")
        .resizable(true)
        .default_size(270.0)
        .show(&mut root, |ui| {
            ui.heading("Plant (ISA-95)");
            commands.extend(hierarchy_ui(
                ui,
                &registry,
                &states,
                selection.selected,
                filter,
            ));
        })
        .response
        .rect
        .width();

    let selected_shown = selection
        .selected
        .and_then(|s| assets.iter().find(|(b, _, _)| b.0 == s))
        .map(|(_, st, _)| st);
    let bound_via = selection.selected.and_then(|s| {
        let id = &registry.get(s)?.id;
        layout
            .report
            .as_ref()?
            .bound
            .iter()
            .find(|b| &b.asset_id == id)
            .map(|b| b.via)
    });
    let selected_id = selection
        .selected
        .and_then(|s| registry.get(s))
        .map(|a| a.id.clone());
    let asset_mes = selected_id.as_ref().map(|id| {
        let ctx = mes_view
            .state
            .as_ref()
            .and_then(|s| s.0.book.assets.get(id).cloned());
        panels::AssetMesView {
            operation: ctx.as_ref().and_then(|c| c.operation),
            mode: ctx
                .as_ref()
                .and_then(|c| c.mode)
                .map(|m| format!("{m:?}").to_lowercase()),
            context_unavailable_since: match mes_view.link.as_ref().map(|l| l.status) {
                Some(crate::mes::LinkStatus::Down { since_us })
                | Some(crate::mes::LinkStatus::CatchingUp { since_us }) => Some(since_us),
                _ => None,
            },
            discrepancies: mes_view
                .rec
                .as_ref()
                .map(|r| {
                    r.engine
                        .unresolved_on(id)
                        .map(|d| {
                            (
                                d.status().label().to_string(),
                                d.rule.replace('_', " "),
                                d.mes_view.clone(),
                                d.twin_view.clone(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    });
    let mut seeks = Vec::new();
    whatif::whatif_events(&ctx, &mut ui_state.whatif, &mut panels.whatif, &registry);
    // The quality and what-if panels take the inspector's place while open.
    let right = if ui_state.quality.open && panels.quality.view.is_some() {
        egui::Panel::right("quality")
            .resizable(true)
            .default_size(560.0)
            .show(&mut root, |ui| {
                quality::quality_ui(
                    ui,
                    &mut ui_state.quality,
                    &mut panels.quality,
                    &registry,
                    &playback.cursor,
                    &mut commands,
                    &mut seeks,
                );
            })
            .response
            .rect
            .width()
    } else if ui_state.whatif.open && panels.whatif.view.is_some() {
        let presentation = ui_state.whatif.presentation;
        egui::Panel::right(if presentation {
            "whatif-presentation"
        } else {
            "whatif"
        })
        .resizable(true)
        .default_size(if presentation { 980.0 } else { 640.0 })
        .show(&mut root, |ui| {
            whatif::whatif_ui(
                ui,
                &mut ui_state.whatif,
                &mut panels.whatif,
                &registry,
                selection.selected,
                &playback.cursor,
                &mut seeks,
            );
        })
        .response
        .rect
        .width()
    } else {
        egui::Panel::right("inspector")
            .resizable(true)
            .default_size(330.0)
            .show(&mut root, |ui| {
                ui.heading("Inspector");
                commands.extend(inspector_ui(
                    ui,
                    &registry,
                    selection.selected,
                    &InspectorView {
                        state: selected_shown.map(|s| &s.state),
                        bound_via,
                        live: selected_shown.map(|s| &s.values),
                        freshness: selected_shown.map(|s| &s.freshness),
                        work_order: selected_shown.and_then(|s| s.work_order.as_deref()),
                        mes: asset_mes.as_ref(),
                        replay_at_us: (!playback.cursor.is_live()).then_some(playback.cursor.t_us),
                        now_us: if playback.cursor.is_live() {
                            now_us()
                        } else {
                            playback.cursor.t_us
                        },
                    },
                ));
            })
            .response
            .rect
            .width()
    };

    let new_insets = ViewportInsets {
        left,
        right,
        top,
        bottom,
    };
    if *insets != new_insets {
        *insets = new_insets;
    }

    schedule::schedule_window(
        &ctx,
        &mut ui_state.schedule,
        &mut panels.sched,
        &registry.plant().time_zone,
    );
    oee::oee_window(
        &ctx,
        &mut ui_state.oee,
        &mut panels.oee,
        &registry,
        selection.selected,
        &mut commands,
        &mut seeks,
    );
    for s in seeks {
        playback.out.write(s);
    }
    let mut show_latency = ui_state.show_latency;
    egui::Window::new("Latency, hop by hop")
        .open(&mut show_latency)
        .default_pos(egui::pos2(left + 20.0, top + 20.0))
        .show(&ctx, |ui| live::latency_ui(ui, &ingest.latency));
    ui_state.show_latency = show_latency;
    let mut show_ingest = ui_state.show_ingest;
    egui::Window::new("Ingest")
        .open(&mut show_ingest)
        .pivot(egui::Align2::LEFT_BOTTOM)
        .default_pos(egui::pos2(
            left + 20.0,
            ctx.viewport_rect().max.y - bottom - 20.0,
        ))
        .show(&ctx, |ui| {
            live::ingest_ui(ui, &ingest.links, &ingest.counters, &ingest.dead)
        });
    ui_state.show_ingest = show_ingest;

    let mut disc_open = ui_state.discrepancies.open;
    if let Some(rec) = &mes_view.rec {
        let mut cmds = Vec::new();
        egui::Window::new("Discrepancies: MES vs twin")
            .open(&mut disc_open)
            .default_width(520.0)
            .default_pos(egui::pos2(left + 20.0, top + 20.0))
            .show(&ctx, |ui| {
                cmds = mes::discrepancies_ui(ui, rec, &mut ui_state.discrepancies, &registry);
            });
        for c in cmds {
            mes_view.out.write(c);
        }
    }
    ui_state.discrepancies.open = disc_open;

    let badges = mes_view.badges();
    let tags = whatif::ghost_tags(&panels.whatif, &playback.cursor);
    let view_rect = {
        let r = ctx.viewport_rect();
        egui::Rect::from_min_max(
            egui::pos2(r.min.x + new_insets.left, r.min.y + new_insets.top),
            egui::pos2(r.max.x - new_insets.right, r.max.y - new_insets.bottom),
        )
    };
    whatif::ghost_legend(
        &ctx,
        &panels.whatif,
        &playback.cursor,
        view_rect,
        &registry.plant().time_zone,
    );
    labels_ui(
        &ctx,
        &registry,
        &selection,
        &assets,
        &cameras,
        &second,
        new_insets,
        &badges,
        ui_state.show_labels,
        &tags,
    );
    for c in commands {
        sel_out.write(c);
    }
    Ok(())
}

/// Asset ids (with the work order each runs) floating above the machines,
/// and a red badge on each machine with unresolved discrepancies (shown
/// even with labels off), clipped to the 3D view.
#[allow(clippy::too_many_arguments)]
fn labels_ui(
    ctx: &egui::Context,
    registry: &AssetRegistry,
    selection: &Selection,
    assets: &Query<(&BoundAsset, &Shown, Option<&WorldBounds>)>,
    cameras: &Query<(&Camera, &GlobalTransform), With<OrbitCamera>>,
    second: &Query<(&Camera, &GlobalTransform), With<crate::render::camera::SecondView>>,
    insets: ViewportInsets,
    badges: &HashMap<String, usize>,
    show_labels: bool,
    ghost_tags: &HashMap<String, Vec<(egui::Color32, String)>>,
) {
    let screen = ctx.viewport_rect();
    let view = egui::Rect::from_min_max(
        egui::pos2(screen.min.x + insets.left, screen.min.y + insets.top),
        egui::pos2(screen.max.x - insets.right, screen.max.y - insets.bottom),
    );
    // Each view (two in split screen) labels what it shows, inside itself.
    for (camera, cam_tf) in cameras
        .iter()
        .chain(second.iter().filter(|c| c.0.is_active))
    {
        let clip = camera
            .logical_viewport_rect()
            .map_or(view, |r| {
                egui::Rect::from_min_max(egui::pos2(r.min.x, r.min.y), egui::pos2(r.max.x, r.max.y))
            })
            .intersect(view);
        labels_in_view(
            ctx,
            registry,
            selection,
            assets,
            (camera, cam_tf),
            clip,
            badges,
            show_labels,
            ghost_tags,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn labels_in_view(
    ctx: &egui::Context,
    registry: &AssetRegistry,
    selection: &Selection,
    assets: &Query<(&BoundAsset, &Shown, Option<&WorldBounds>)>,
    (camera, cam_tf): (&Camera, &GlobalTransform),
    clip: egui::Rect,
    badges: &HashMap<String, usize>,
    show_labels: bool,
    ghost_tags: &HashMap<String, Vec<(egui::Color32, String)>>,
) {
    let painter = ctx
        .layer_painter(egui::LayerId::new(
            egui::Order::Background,
            egui::Id::new("asset_labels"),
        ))
        .with_clip_rect(clip);
    // What-if state chips go on top of every label: drawn after them.
    let mut chips: Vec<(egui::Rect, &Vec<(egui::Color32, String)>)> = Vec::new();
    for (b, s, bounds) in assets.iter() {
        let (Some(bounds), Some(a)) = (bounds, registry.get(b.0)) else {
            continue;
        };
        let anchor = Vec3::new(bounds.center().x, bounds.max.y + 1.0, bounds.center().z);
        let Ok(p) = camera.world_to_viewport(cam_tf, anchor) else {
            continue;
        };
        let pos = egui::pos2(p.x, p.y);
        let badge = badges.get(&a.id);
        if !show_labels {
            if let Some(n) = badge {
                draw_badge(&painter, pos, *n);
            }
            continue;
        }
        let selected = selection.selected == Some(b.0);
        let font = egui::FontId::proportional(if selected { 14.0 } else { 11.5 });
        let text = match &s.work_order {
            Some(w) => format!("{} · {w}", a.id),
            None => a.id.clone(),
        };
        let galley = painter.layout_no_wrap(text, font, egui::Color32::WHITE);
        let rect = egui::Rect::from_center_size(pos, galley.size() + egui::vec2(16.0, 4.0));
        let bg = if selected {
            egui::Color32::from_rgba_unmultiplied(10, 110, 140, 230)
        } else {
            egui::Color32::from_rgba_unmultiplied(25, 28, 34, 190)
        };
        painter.rect_filled(rect, 3.0, bg);
        painter.circle_filled(
            egui::pos2(rect.min.x + 6.0, rect.center().y),
            3.5,
            state_color(s.state.state),
        );
        painter.galley(
            egui::pos2(rect.min.x + 12.0, rect.min.y + 2.0),
            galley,
            egui::Color32::WHITE,
        );
        if let Some(n) = badge {
            draw_badge(&painter, egui::pos2(rect.max.x + 10.0, rect.center().y), *n);
        }
        if let Some(tags) = ghost_tags.get(&a.id) {
            chips.push((rect, tags));
        }
    }
    // What each scenario has a machine doing at the cursor, where the
    // scenarios differ (or one has it down).
    for (rect, tags) in chips {
        let mut x = rect.min.x;
        for (c, text) in tags {
            let g = painter.layout_no_wrap(
                text.clone(),
                egui::FontId::proportional(11.0),
                egui::Color32::WHITE,
            );
            let r = egui::Rect::from_min_size(
                egui::pos2(x, rect.max.y + 2.0),
                g.size() + egui::vec2(8.0, 2.0),
            );
            painter.rect_filled(r, 3.0, *c);
            painter.rect_stroke(
                r,
                3.0,
                egui::Stroke::new(1.0, egui::Color32::from_gray(20)),
                egui::StrokeKind::Outside,
            );
            painter.galley(
                egui::pos2(r.min.x + 4.0, r.min.y + 1.0),
                g,
                egui::Color32::WHITE,
            );
            x = r.max.x + 3.0;
        }
    }
}

/// A red disc with the count of unresolved discrepancies.
fn draw_badge(painter: &egui::Painter, c: egui::Pos2, n: usize) {
    painter.circle_filled(c, 10.0, mes::DISCREPANCY_COLOUR);
    painter.circle_stroke(c, 10.0, egui::Stroke::new(1.5, egui::Color32::WHITE));
    painter.text(
        c,
        egui::Align2::CENTER_CENTER,
        format!("!{n}"),
        egui::FontId::proportional(11.0),
        egui::Color32::WHITE,
    );
}
