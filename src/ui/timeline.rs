//! The timeline along the bottom: playback controls, the recorded range,
//! state bands of the focused asset, event markers, the cursor, bookmarks,
//! and trend plots sharing one time axis. Reads playback state; returns
//! [`PlaybackCommand`]s — it never moves the cursor itself.

use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{FilledArea, Line, Plot, PlotPoints, VLine};

use super::clock::label_at;
use super::panels::state_color;
use crate::history::WriterStats;
use crate::history::query::MarkerKind;
use crate::playback::{
    PlaybackCommand, PlaybackData, SPEED_MAX, SPEED_MIN, TimeCursor, TimelineView,
};
use crate::registry::{AssetRegistry, PropertyRef};
use crate::twin::MachineState;

/// Speeds offered in the menu.
pub const SPEEDS: [f64; 11] = [
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0,
];

/// Window widths offered, in seconds.
const SPANS_S: [(i64, &str); 7] = [
    (60, "1 min"),
    (5 * 60, "5 min"),
    (15 * 60, "15 min"),
    (3600, "1 h"),
    (4 * 3600, "4 h"),
    (24 * 3600, "24 h"),
    (7 * 24 * 3600, "7 d"),
];

/// What the timeline needs to draw.
pub struct TimelineInput<'a> {
    pub registry: &'a AssetRegistry,
    pub cursor: &'a TimeCursor,
    pub view: &'a TimelineView,
    pub data: &'a PlaybackData,
    pub stats: Option<&'a WriterStats>,
    pub now_us: i64,
    /// MES outages seen this run: (start, end once over). Earlier ones
    /// come from the timeline's outage markers.
    pub mes_outages: Vec<(i64, Option<i64>)>,
    /// A what-if study's future: per variant, its colour and the focused
    /// machine's simulated states (start, end, colour).
    pub future: Vec<FutureRow>,
    /// A followed part's operations (start, end, colour per asset).
    pub part: Option<FutureRow>,
}

/// One variant's row on the future side of the strip.
#[derive(Debug, Clone)]
pub struct FutureRow {
    pub name: String,
    pub colour: Color32,
    pub spans: Vec<(i64, i64, Color32)>,
}

/// Widget state kept between frames (text typed, toggles).
#[derive(Debug, Clone, Default)]
pub struct TimelineUiState {
    pub bookmark_name: String,
    pub hide_trends: bool,
}

pub fn marker_color(k: MarkerKind) -> Color32 {
    match k {
        MarkerKind::Breakdown => Color32::from_rgb(235, 60, 60),
        MarkerKind::MesEvent => Color32::from_rgb(80, 150, 245),
        MarkerKind::Discrepancy => Color32::from_rgb(245, 150, 40),
        MarkerKind::QualityHold => Color32::from_rgb(190, 100, 235),
        MarkerKind::Bookmark => Color32::from_rgb(245, 225, 90),
        MarkerKind::MesOutage => super::mes::OUTAGE_COLOUR,
    }
}

/// Where the focused asset's trend has no data for longer than three
/// buckets (and 10 s): recording was off, or the machine was silent.
pub fn gaps(data: &PlaybackData) -> Vec<(i64, i64)> {
    let t = &data.trend;
    let limit = (3 * t.width_us).max(10_000_000);
    let Some((_, first)) = t.series.iter().max_by_key(|(_, b)| b.len()) else {
        return Vec::new();
    };
    first
        .windows(2)
        .filter(|w| w[1].start_us - w[0].start_us > limit)
        .map(|w| (w[0].start_us + t.width_us, w[1].start_us))
        .collect()
}

/// One gap-free run of a trend: x, min, max, and (x, avg) points.
type RunSeries = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<[f64; 2]>);

/// Splits buckets into runs without gaps, so lines do not bridge them.
fn runs(
    buckets: &[crate::history::query::Bucket],
    width_us: i64,
) -> Vec<&[crate::history::query::Bucket]> {
    let limit = (3 * width_us).max(10_000_000);
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..buckets.len() {
        if buckets[i].start_us - buckets[i - 1].start_us > limit {
            out.push(&buckets[start..i]);
            start = i;
        }
    }
    if start < buckets.len() {
        out.push(&buckets[start..]);
    }
    out
}

fn short_time(t_us: i64, tz: &str) -> String {
    let ts = jiff::Timestamp::from_microsecond(t_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    match ts.in_tz(tz) {
        Ok(z) => z.strftime("%H:%M:%S").to_string(),
        Err(_) => ts.strftime("%H:%M:%S").to_string(),
    }
}

/// Keys: L live, Space play/pause, comma / period step, N / B next / previous event.
pub fn timeline_keys(ctx: &egui::Context, cursor: &TimeCursor) -> Vec<PlaybackCommand> {
    let mut out = Vec::new();
    if ctx.egui_wants_keyboard_input() {
        return out;
    }
    ctx.input(|i| {
        if i.key_pressed(egui::Key::L) {
            out.push(PlaybackCommand::GoLive);
        }
        if i.key_pressed(egui::Key::Space) {
            out.push(PlaybackCommand::TogglePlay);
        }
        let step = (cursor.speed.max(1.0) * 1e6) as i64;
        // Comma / period, as in video editors (the arrows pan the camera).
        if i.key_pressed(egui::Key::Comma) {
            out.push(PlaybackCommand::Step(-step));
        }
        if i.key_pressed(egui::Key::Period) {
            out.push(PlaybackCommand::Step(step));
        }
        if i.key_pressed(egui::Key::N) {
            out.push(PlaybackCommand::NextEvent);
        }
        if i.key_pressed(egui::Key::B) {
            out.push(PlaybackCommand::PreviousEvent);
        }
    });
    out
}

/// The whole bottom panel.
pub fn timeline_ui(
    ui: &mut egui::Ui,
    input: &TimelineInput<'_>,
    state: &mut TimelineUiState,
) -> Vec<PlaybackCommand> {
    let mut out = Vec::new();
    let tz = input.registry.plant().time_zone.as_str();
    let c = input.cursor;
    controls_ui(ui, input, state, tz, &mut out);
    strip_ui(ui, input, tz, &mut out);
    if !state.hide_trends {
        trends_ui(ui, input, tz);
    }
    if c.loop_range.is_some() && !c.is_live() {
        ui.weak("Looping inside the window.");
    }
    out
}

fn controls_ui(
    ui: &mut egui::Ui,
    input: &TimelineInput<'_>,
    state: &mut TimelineUiState,
    tz: &str,
    out: &mut Vec<PlaybackCommand>,
) {
    let c = input.cursor;
    ui.horizontal_wrapped(|ui| {
        let live = c.is_live();
        let live_text = RichText::new("LIVE").strong().color(if live {
            Color32::from_rgb(60, 200, 100)
        } else {
            Color32::GRAY
        });
        if ui
            .add(egui::Button::new(live_text).selected(live))
            .on_hover_text("Follow now (L)")
            .clicked()
        {
            out.push(PlaybackCommand::GoLive);
        }
        if c.is_future() {
            ui.label(
                RichText::new("FUTURE · what-if")
                    .strong()
                    .color(Color32::from_rgb(255, 150, 60)),
            )
            .on_hover_text("The ghosts show each scenario's simulated plant at the cursor; the solid plant stays live");
        } else if !live {
            ui.label(
                RichText::new("REPLAY")
                    .strong()
                    .color(Color32::from_rgb(90, 200, 235)),
            );
        }
        ui.label(
            RichText::new(label_at(
                jiff::Timestamp::from_microsecond(c.t_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                tz,
            ))
            .monospace(),
        );
        ui.separator();
        if ui.button("⏮").on_hover_text("Previous event (B)").clicked() {
            out.push(PlaybackCommand::PreviousEvent);
        }
        let step = (c.speed.max(1.0) * 1e6) as i64;
        if ui.button("◀").on_hover_text("Step back (,)").clicked() {
            out.push(PlaybackCommand::Step(-step));
        }
        let playing = c.playing && !live;
        if ui
            .button(if playing { "⏸ Pause" } else { "▶ Play" })
            .on_hover_text("Play / pause (Space)")
            .clicked()
        {
            out.push(PlaybackCommand::TogglePlay);
        }
        if ui.button("▶|").on_hover_text("Step forward (.)").clicked() {
            out.push(PlaybackCommand::Step(step));
        }
        if ui.button("⏭").on_hover_text("Next event (N)").clicked() {
            out.push(PlaybackCommand::NextEvent);
        }
        egui::ComboBox::from_id_salt("speed")
            .selected_text(format!("×{}", c.speed))
            .width(70.0)
            .show_ui(ui, |ui| {
                for s in SPEEDS {
                    if ui.selectable_label(c.speed == s, format!("×{s}")).clicked() {
                        out.push(PlaybackCommand::Speed(s.clamp(SPEED_MIN, SPEED_MAX)));
                    }
                }
            });
        let looping = c.loop_range.is_some();
        if ui
            .add(egui::Button::new("⟲ Loop window").selected(looping))
            .on_hover_text("Replay wraps around inside the visible window")
            .clicked()
        {
            out.push(PlaybackCommand::LoopRange(if looping {
                None
            } else {
                Some((input.view.from_us(), input.view.end_us))
            }));
        }
        ui.separator();
        egui::ComboBox::from_id_salt("span")
            .selected_text(
                SPANS_S
                    .iter()
                    .find(|(s, _)| *s * 1_000_000 == input.view.span_us)
                    .map_or("custom", |(_, l)| l),
            )
            .width(70.0)
            .show_ui(ui, |ui| {
                for (s, l) in SPANS_S {
                    if ui
                        .selectable_label(input.view.span_us == s * 1_000_000, l)
                        .clicked()
                    {
                        out.push(PlaybackCommand::Zoom(s * 1_000_000));
                    }
                }
            });
        ui.separator();
        ui.add(
            egui::TextEdit::singleline(&mut state.bookmark_name)
                .hint_text("bookmark name")
                .desired_width(110.0),
        );
        if ui
            .button("🔖 Add")
            .on_hover_text("Bookmark the cursor time")
            .clicked()
        {
            out.push(PlaybackCommand::AddBookmark(std::mem::take(
                &mut state.bookmark_name,
            )));
        }
        egui::ComboBox::from_id_salt("bookmarks")
            .selected_text(format!("Bookmarks ({})", input.data.bookmarks.len()))
            .width(120.0)
            .show_ui(ui, |ui| {
                for (t, name) in input.data.bookmarks.iter().rev() {
                    if ui
                        .selectable_label(false, format!("{} — {name}", short_time(*t, tz)))
                        .clicked()
                    {
                        out.push(PlaybackCommand::Seek(*t));
                    }
                }
            });
        if ui
            .button("Export…")
            .on_hover_text("Write the visible window to Parquet, partitioned by day and asset")
            .clicked()
        {
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            out.push(PlaybackCommand::Export(
                crate::config::data_dir().join("exports").join(stamp),
            ));
        }
        ui.checkbox(&mut state.hide_trends, "Hide trends");
        if let Some(s) = input.stats {
            use std::sync::atomic::Ordering::Relaxed;
            ui.separator();
            ui.weak(format!(
                "recording: {} samples this session · backlog {} · last commit {:.1} ms",
                s.samples_written.load(Relaxed),
                s.backlog.load(Relaxed),
                s.last_commit_us.load(Relaxed) as f64 / 1000.0
            ));
            let since_us = s.failing_since_us.load(Relaxed);
            if since_us != 0 {
                let error = s.last_error.lock().ok().and_then(|e| e.clone());
                ui.colored_label(
                    egui::Color32::from_rgb(230, 80, 60),
                    format!(
                        "⚠ not recording since {}",
                        jiff::Timestamp::from_microsecond(since_us)
                            .map(|t| super::clock::label_at(t, tz))
                            .unwrap_or_default()
                    ),
                )
                .on_hover_text(error.unwrap_or_default());
            }
        }
    });
    if let Some(m) = &input.data.last_export {
        ui.weak(m);
    }
}

fn strip_ui(
    ui: &mut egui::Ui,
    input: &TimelineInput<'_>,
    tz: &str,
    out: &mut Vec<PlaybackCommand>,
) {
    let (from, to) = (input.view.from_us(), input.view.end_us);
    let span = (to - from).max(1) as f32;
    let width = ui.available_width();
    let (rect, resp) =
        ui.allocate_exact_size(egui::vec2(width, 54.0), egui::Sense::click_and_drag());
    let x_of = |t: i64| rect.min.x + ((t - from) as f32 / span) * rect.width();
    let t_of = |x: f32| from + (((x - rect.min.x) / rect.width()) * span) as i64;
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 3.0, Color32::from_rgb(28, 31, 37));
    // What is recorded.
    if let Some((a, b)) = input.stats.and_then(|s| s.range_us()) {
        let r = egui::Rect::from_min_max(
            egui::pos2(x_of(a.max(from)), rect.min.y + 12.0),
            egui::pos2(x_of(b.min(to)), rect.max.y - 14.0),
        );
        if r.width() > 0.0 {
            p.rect_filled(r, 2.0, Color32::from_rgb(45, 52, 62));
        }
    }
    // State bands of the focused asset.
    let tl = &input.data.timeline;
    let band_top = rect.min.y + 18.0;
    let band_bottom = rect.max.y - 18.0;
    let edge = input
        .stats
        .and_then(|s| s.range_us())
        .map_or(input.now_us, |(_, b)| b)
        .min(to);
    for (i, tr) in tl.transitions.iter().enumerate() {
        let start = tr.ts_us.max(from);
        let end = tl.transitions.get(i + 1).map_or(edge, |n| n.ts_us).min(to);
        if end <= start {
            continue;
        }
        let st = MachineState::parse(&tr.state).unwrap_or_default();
        let r = egui::Rect::from_min_max(
            egui::pos2(x_of(start), band_top),
            egui::pos2(x_of(end).max(x_of(start) + 1.0), band_bottom),
        );
        p.rect_filled(r, 0.0, state_color(st));
    }
    // Stretches without data: shaded over the bands.
    for (a, b) in gaps(input.data) {
        if b <= from || a >= to {
            continue;
        }
        let r = egui::Rect::from_min_max(
            egui::pos2(x_of(a.max(from)), rect.min.y + 12.0),
            egui::pos2(x_of(b.min(to)), rect.max.y - 14.0),
        );
        p.rect_filled(r, 0.0, Color32::from_rgb(22, 24, 28));
        if r.width() > 60.0 {
            p.text(
                r.center(),
                egui::Align2::CENTER_CENTER,
                "no data",
                egui::FontId::proportional(10.5),
                Color32::from_gray(120),
            );
        }
    }
    // MES outages: a band along the bottom of the strip, from this run and
    // from the recorded start / end markers of earlier ones.
    let mut outages = input.mes_outages.clone();
    let mut open: Option<i64> = None;
    for m in tl
        .markers
        .iter()
        .filter(|m| m.kind == MarkerKind::MesOutage)
    {
        if m.text.starts_with("MES back") {
            let start = open.take().unwrap_or(from);
            if !outages.iter().any(|(a, _)| (*a - start).abs() < 1_000_000) {
                outages.push((start, Some(m.ts_us)));
            }
        } else {
            open = Some(m.ts_us);
        }
    }
    if let Some(a) = open
        && !outages.iter().any(|(s, _)| (*s - a).abs() < 1_000_000)
    {
        outages.push((a, None));
    }
    for (a, b) in &outages {
        let b = b.unwrap_or(input.now_us);
        if b <= from || *a >= to {
            continue;
        }
        let r = egui::Rect::from_min_max(
            egui::pos2(x_of((*a).max(from)), band_bottom - 7.0),
            egui::pos2(x_of(b.min(to)).max(x_of((*a).max(from)) + 2.0), band_bottom),
        );
        p.rect_filled(r, 0.0, super::mes::OUTAGE_COLOUR);
        if r.width() > 70.0 {
            p.text(
                egui::pos2(r.min.x + 3.0, r.min.y - 1.0),
                egui::Align2::LEFT_BOTTOM,
                "MES out",
                egui::FontId::proportional(10.0),
                super::mes::OUTAGE_COLOUR,
            );
        }
    }
    // A followed part's operations, as bands along the top of the strip.
    if let Some(row) = &input.part {
        let y0 = rect.min.y + 12.0;
        for (k, (s0, s1, c)) in row.spans.iter().enumerate() {
            let (a, b) = ((*s0).max(from), (*s1).min(to));
            if b <= a {
                continue;
            }
            let r = egui::Rect::from_min_max(
                egui::pos2(x_of(a), y0),
                egui::pos2(x_of(b).max(x_of(a) + 2.0), y0 + 9.0),
            );
            p.rect_filled(r, 1.0, *c);
            if r.width() > 16.0 {
                p.text(
                    r.left_center() + egui::vec2(2.0, 0.0),
                    egui::Align2::LEFT_CENTER,
                    format!("{}", k + 1),
                    egui::FontId::proportional(8.5),
                    Color32::BLACK,
                );
            }
        }
        if let Some(pp) = resp.hover_pos()
            && pp.y >= y0
            && pp.y <= y0 + 9.0
        {
            resp.clone().on_hover_text(&row.name);
        }
    }
    // The simulated future: past now, one thin row per variant.
    if to > input.now_us && !input.future.is_empty() {
        let a = x_of(input.now_us.max(from));
        let r = egui::Rect::from_min_max(
            egui::pos2(a, rect.min.y + 12.0),
            egui::pos2(x_of(to), rect.max.y - 14.0),
        );
        p.rect_filled(r, 0.0, Color32::from_rgb(40, 36, 30));
        let n = input.future.len() as f32;
        let h = (r.height() / n).max(2.0);
        for (k, row) in input.future.iter().enumerate() {
            let y0 = r.min.y + h * k as f32;
            for (s0, s1, c) in &row.spans {
                let (s0, s1) = ((*s0).max(input.now_us).max(from), (*s1).min(to));
                if s1 <= s0 {
                    continue;
                }
                p.rect_filled(
                    egui::Rect::from_min_max(
                        egui::pos2(x_of(s0), y0 + 1.0),
                        egui::pos2(x_of(s1).max(x_of(s0) + 1.0), y0 + h - 1.0),
                    ),
                    0.0,
                    c.gamma_multiply(0.85),
                );
            }
            p.rect_filled(
                egui::Rect::from_min_max(
                    egui::pos2(r.min.x, y0 + 1.0),
                    egui::pos2(r.min.x + 4.0, y0 + h - 1.0),
                ),
                0.0,
                row.colour,
            );
        }
        p.line_segment(
            [
                egui::pos2(a, rect.min.y + 2.0),
                egui::pos2(a, rect.max.y - 12.0),
            ],
            egui::Stroke::new(1.0, Color32::from_gray(200)),
        );
        if r.width() > 90.0 {
            p.text(
                egui::pos2(a + 6.0, rect.min.y + 1.0),
                egui::Align2::LEFT_TOP,
                "now | what-if",
                egui::FontId::proportional(10.0),
                Color32::from_rgb(255, 170, 90),
            );
        }
        if let Some(pp) = resp.hover_pos()
            && r.contains(pp)
        {
            let k = (((pp.y - r.min.y) / h) as usize).min(input.future.len() - 1);
            resp.clone()
                .on_hover_text(format!("what-if: {}", input.future[k].name));
        }
    }
    // Markers and bookmarks.
    let mut hovered: Option<String> = None;
    let pointer = resp.hover_pos();
    let mut draw_marker = |t: i64, k: MarkerKind, text: String| {
        if t < from || t > to {
            return;
        }
        let x = x_of(t);
        let y = rect.min.y + 3.0;
        let tri = vec![
            egui::pos2(x - 5.0, y),
            egui::pos2(x + 5.0, y),
            egui::pos2(x, y + 9.0),
        ];
        p.add(egui::Shape::convex_polygon(
            tri,
            marker_color(k),
            egui::Stroke::NONE,
        ));
        p.line_segment(
            [egui::pos2(x, y + 9.0), egui::pos2(x, rect.max.y - 14.0)],
            egui::Stroke::new(1.0, marker_color(k).gamma_multiply(0.5)),
        );
        if pointer.is_some_and(|pp| (pp.x - x).abs() < 5.0) {
            hovered = Some(format!("{} · {} · {text}", short_time(t, tz), k.label()));
        }
    };
    for m in &tl.markers {
        if m.kind == MarkerKind::Bookmark {
            continue;
        }
        let who = m.asset_id.clone().unwrap_or_default();
        draw_marker(m.ts_us, m.kind, format!("{who} {}", m.text));
    }
    for (t, name) in &input.data.bookmarks {
        draw_marker(*t, MarkerKind::Bookmark, name.clone());
    }
    // Tick labels.
    for i in 0..=4 {
        let t = from + ((to - from) as f64 * f64::from(i) / 4.0) as i64;
        let x = x_of(t);
        let align = match i {
            0 => egui::Align2::LEFT_BOTTOM,
            4 => egui::Align2::RIGHT_BOTTOM,
            _ => egui::Align2::CENTER_BOTTOM,
        };
        p.text(
            egui::pos2(x, rect.max.y - 1.0),
            align,
            short_time(t, tz),
            egui::FontId::proportional(10.5),
            Color32::from_gray(170),
        );
    }
    // Cursor.
    let cx = x_of(input.cursor.t_us.clamp(from, to));
    let cursor_col = if input.cursor.is_live() {
        Color32::from_rgb(60, 200, 100)
    } else if input.cursor.is_future() {
        Color32::from_rgb(255, 150, 60)
    } else {
        Color32::from_rgb(90, 200, 235)
    };
    p.line_segment(
        [
            egui::pos2(cx, rect.min.y),
            egui::pos2(cx, rect.max.y - 12.0),
        ],
        egui::Stroke::new(2.0, cursor_col),
    );
    if let Some((a, b)) = input.cursor.loop_range {
        let r = egui::Rect::from_min_max(
            egui::pos2(x_of(a.max(from)), rect.max.y - 14.0),
            egui::pos2(x_of(b.min(to)), rect.max.y - 12.0),
        );
        p.rect_filled(r, 0.0, Color32::from_rgb(90, 200, 235));
    }
    if let Some(text) = hovered {
        resp.clone().on_hover_text(text);
    } else if tl.asset_id.is_none() {
        resp.clone()
            .on_hover_text("Select a machine to see its state bands and trends");
    }
    if (resp.clicked() || resp.dragged())
        && let Some(pp) = resp.interact_pointer_pos()
    {
        out.push(PlaybackCommand::Seek(t_of(pp.x)));
    }
    if resp.hovered() {
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        if scroll.abs() > 0.5 {
            let factor = if scroll > 0.0 { 0.8 } else { 1.25 };
            out.push(PlaybackCommand::Zoom(
                (input.view.span_us as f64 * factor) as i64,
            ));
        }
    }
}

fn trends_ui(ui: &mut egui::Ui, input: &TimelineInput<'_>, tz: &str) {
    let trend = &input.data.trend;
    let Some(asset) = trend.asset.filter(|a| Some(*a) == input.view.focus) else {
        ui.weak("Select a machine to plot its signals.");
        return;
    };
    let (from, to) = (input.view.from_us(), input.view.end_us);
    let base = from;
    let to_x = |t: i64| (t - base) as f64 / 1e6;
    let cursor_x = to_x(input.cursor.t_us);
    let tz_owned = tz.to_string();
    egui::ScrollArea::vertical()
        .max_height(ui.available_height().max(70.0))
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for (pi, buckets) in &trend.series {
                let Some((_, prop)) = input.registry.property(PropertyRef {
                    asset,
                    property: *pi,
                }) else {
                    continue;
                };
                let title = format!("{} [{}]", prop.name.replace('_', " "), prop.unit);
                let parts: Vec<RunSeries> = runs(buckets, trend.width_us)
                    .into_iter()
                    .map(|run| {
                        let xs: Vec<f64> = run
                            .iter()
                            .map(|b| to_x(b.start_us + trend.width_us / 2))
                            .collect();
                        let mins = run.iter().map(|b| b.min).collect();
                        let maxs = run.iter().map(|b| b.max).collect();
                        let avg = run.iter().zip(&xs).map(|(b, x)| [*x, b.avg]).collect();
                        (xs, mins, maxs, avg)
                    })
                    .collect();
                let tz2 = tz_owned.clone();
                ui.horizontal(|ui| {
                    ui.label(RichText::new(&title).small().strong());
                    if buckets.is_empty() {
                        ui.weak("no samples in this window");
                    }
                });
                Plot::new(("trend", *pi))
                    .height(62.0)
                    .link_axis("trend-time", [true, false])
                    .link_cursor("trend-time", [true, false])
                    .default_x_bounds(0.0, to_x(to))
                    .allow_scroll(false)
                    .allow_zoom(false)
                    .allow_drag(false)
                    .show_axes([false, true])
                    .y_axis_min_width(40.0)
                    .x_axis_formatter(move |m, _| short_time(base + (m.value * 1e6) as i64, &tz2))
                    .show(ui, |plot| {
                        for (xs, mins, maxs, avg) in parts {
                            if xs.len() > 1 {
                                plot.add(
                                    FilledArea::new("min–max", &xs, &mins, &maxs).fill_color(
                                        Color32::from_rgba_unmultiplied(90, 160, 230, 50),
                                    ),
                                );
                            }
                            plot.line(
                                Line::new("avg", PlotPoints::from(avg))
                                    .color(Color32::from_rgb(110, 180, 245))
                                    .width(1.5),
                            );
                        }
                        plot.add(
                            VLine::new("cursor", cursor_x)
                                .color(Color32::from_rgb(90, 200, 235))
                                .width(1.5),
                        );
                    });
            }
        });
}
