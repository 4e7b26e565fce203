//! Playback: the time cursor, and what the 3D view and panels show.
//!
//! In: [`PlaybackCommand`]s (from the UI and keys), the twin's live
//! components, and history answers. Out: the [`TimeCursor`] and
//! [`TimelineView`] resources, a [`Shown`] component on every bound asset
//! (the live state in live mode; the recorded state at the cursor in replay
//! mode), and [`PlaybackData`] (trend series, state bands, markers,
//! bookmarks) for the timeline. The live twin keeps running and recording
//! while the cursor is in the past.

use bevy::prelude::*;

use crate::MezzanineSet;
use crate::history::query::StoredValue;
use crate::history::{
    History, HistoryAnswers, ReadRequest, ReadResponse, TimelineData, TrendData, WriterMsg,
};
use crate::ingest::{SampleValue, now_us};
use crate::registry::{AssetIdx, AssetRegistry, Encoding, PropertyRef};
use crate::twin::{
    AssetState, BoundAsset, Freshness, LastValue, LiveValues, MachineState, silence_limit_us,
};

/// Slowest and fastest replay speeds.
pub const SPEED_MIN: f64 = 0.1;
pub const SPEED_MAX: f64 = 3600.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CursorMode {
    /// Follows now.
    #[default]
    Live,
    /// At a chosen time.
    Replay,
    /// Past now, inside a what-if study's horizon: the live plant stays
    /// live, the scenarios' ghosts show the plant at the cursor.
    Future,
}

/// Where the view is in time.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct TimeCursor {
    pub mode: CursorMode,
    /// Microseconds since the Unix epoch (UTC).
    pub t_us: i64,
    pub playing: bool,
    /// Plant seconds per wall second in replay.
    pub speed: f64,
    /// Replay wraps around inside this range.
    pub loop_range: Option<(i64, i64)>,
    /// How far past now the cursor may go (a what-if study's horizon).
    pub future_until_us: Option<i64>,
}

impl Default for TimeCursor {
    fn default() -> Self {
        Self {
            mode: CursorMode::Live,
            t_us: now_us(),
            playing: false,
            speed: 1.0,
            loop_range: None,
            future_until_us: None,
        }
    }
}

impl TimeCursor {
    pub fn is_live(&self) -> bool {
        self.mode == CursorMode::Live
    }
    /// In the simulated future.
    pub fn is_future(&self) -> bool {
        self.mode == CursorMode::Future
    }
    /// The 3D view shows the live plant (live, or the future over it).
    pub fn shows_live(&self) -> bool {
        self.mode != CursorMode::Replay
    }
    /// Moves to `t`: replay before now, the future up to its limit past
    /// now (live when there is none).
    fn go_to(&mut self, t: i64, now: i64) {
        match self.future_until_us {
            Some(end) if t > now => {
                self.mode = CursorMode::Future;
                self.t_us = t.min(end);
            }
            _ if t >= now => {
                self.mode = CursorMode::Live;
                self.playing = false;
                self.t_us = now;
            }
            _ => {
                if self.is_live() {
                    self.playing = false;
                }
                self.mode = CursorMode::Replay;
                self.t_us = t;
            }
        }
    }
}

/// The time window the timeline and trends show, and whose asset.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct TimelineView {
    pub span_us: i64,
    /// End of the window; follows the cursor (live: now).
    pub end_us: i64,
    pub focus: Option<AssetIdx>,
}

impl Default for TimelineView {
    fn default() -> Self {
        Self {
            span_us: 15 * 60_000_000,
            end_us: now_us(),
            focus: None,
        }
    }
}

impl TimelineView {
    pub fn from_us(&self) -> i64 {
        self.end_us - self.span_us
    }
}

/// The only way to move the cursor.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum PlaybackCommand {
    GoLive,
    /// Enter replay at this time (paused if it was live).
    Seek(i64),
    Play,
    Pause,
    TogglePlay,
    /// Move by this much plant time (negative: back), entering replay.
    Step(i64),
    Speed(f64),
    LoopRange(Option<(i64, i64)>),
    NextEvent,
    PreviousEvent,
    AddBookmark(String),
    /// Timeline window width.
    Zoom(i64),
    Focus(Option<AssetIdx>),
    /// Export the timeline window to Parquet under this folder.
    Export(std::path::PathBuf),
    /// Let the cursor go past now up to this time (a what-if horizon), or
    /// no longer (None: a future cursor goes live).
    FutureUntil(Option<i64>),
}

/// What an asset shows: live, or as recorded at the cursor.
#[derive(Component, Debug, Clone, Default, PartialEq)]
pub struct Shown {
    pub state: AssetState,
    pub values: LiveValues,
    pub freshness: Freshness,
    pub work_order: Option<String>,
    /// Showing the recorded past (for the panels' wording).
    pub replay: bool,
}

/// What the timeline draws, refreshed from history.
#[derive(Resource, Debug, Default, Clone)]
pub struct PlaybackData {
    pub trend: TrendData,
    pub timeline: TimelineData,
    pub bookmarks: Vec<(i64, String)>,
    /// The cursor time of the recorded state on screen (replay).
    pub shown_at_us: Option<i64>,
    pub last_error: Option<String>,
    pub last_export: Option<String>,
}

pub struct PlaybackPlugin;

impl Plugin for PlaybackPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<TimeCursor>()
            .init_resource::<TimelineView>()
            .init_resource::<PlaybackData>()
            .init_resource::<HistoryAnswers>()
            .init_resource::<crate::history::WorkerConnections>()
            .add_message::<PlaybackCommand>()
            .add_systems(
                Update,
                (
                    add_shown,
                    apply_commands,
                    advance_cursor,
                    take_answers,
                    show_live,
                    ask_history,
                )
                    .chain()
                    .in_set(MezzanineSet::Playback),
            );
    }
}

fn add_shown(mut commands: Commands, new: Query<Entity, (With<BoundAsset>, Without<Shown>)>) {
    for e in &new {
        commands.entity(e).insert(Shown::default());
    }
}

fn clamp_speed(s: f64) -> f64 {
    if s.is_finite() {
        s.clamp(SPEED_MIN, SPEED_MAX)
    } else {
        1.0
    }
}

fn apply_commands(
    mut cmds: MessageReader<PlaybackCommand>,
    mut cursor: ResMut<TimeCursor>,
    mut view: ResMut<TimelineView>,
    mut data: ResMut<PlaybackData>,
    history: Option<Res<History>>,
) {
    for c in cmds.read() {
        let now = now_us();
        match c {
            PlaybackCommand::GoLive => {
                cursor.mode = CursorMode::Live;
                cursor.playing = false;
                cursor.t_us = now;
            }
            PlaybackCommand::Seek(t) => cursor.go_to(*t, now),
            PlaybackCommand::Play => {
                if cursor.is_live() {
                    // Playing from live starts a replay of the window.
                    cursor.mode = CursorMode::Replay;
                    cursor.t_us = view.from_us();
                }
                cursor.playing = true;
            }
            PlaybackCommand::Pause => {
                if cursor.is_live() {
                    cursor.mode = CursorMode::Replay;
                    cursor.t_us = now;
                }
                cursor.playing = false;
            }
            PlaybackCommand::TogglePlay => {
                let playing = cursor.playing && !cursor.is_live();
                if playing {
                    cursor.playing = false;
                } else {
                    if cursor.is_live() {
                        cursor.mode = CursorMode::Replay;
                        cursor.t_us = view.from_us();
                    }
                    cursor.playing = true;
                }
            }
            PlaybackCommand::Step(d) => {
                let t = cursor.t_us.saturating_add(*d);
                cursor.playing = false;
                cursor.go_to(t, now);
            }
            PlaybackCommand::Speed(s) => cursor.speed = clamp_speed(*s),
            PlaybackCommand::LoopRange(r) => {
                cursor.loop_range = r.filter(|(a, b)| b > a);
            }
            PlaybackCommand::NextEvent | PlaybackCommand::PreviousEvent => {
                if let Some(h) = &history {
                    h.ask(ReadRequest::NextMarker {
                        after_us: cursor.t_us,
                        forward: matches!(c, PlaybackCommand::NextEvent),
                    });
                }
            }
            PlaybackCommand::AddBookmark(name) => {
                if let Some(h) = &history {
                    let name = if name.trim().is_empty() {
                        "bookmark".to_string()
                    } else {
                        name.trim().to_string()
                    };
                    h.record(WriterMsg::Bookmark {
                        ts_us: cursor.t_us,
                        name: name.clone(),
                    });
                    data.bookmarks.push((cursor.t_us, name));
                    data.bookmarks.sort_by_key(|b| b.0);
                }
            }
            PlaybackCommand::Zoom(span) => {
                view.span_us = (*span).clamp(10_000_000, 30 * 24 * 3_600_000_000);
            }
            PlaybackCommand::Focus(a) => view.focus = *a,
            PlaybackCommand::FutureUntil(end) => {
                cursor.future_until_us = *end;
                if end.is_none() && cursor.is_future() {
                    cursor.mode = CursorMode::Live;
                    cursor.playing = false;
                    cursor.t_us = now;
                }
            }
            PlaybackCommand::Export(dir) => {
                if let Some(h) = &history {
                    h.ask(ReadRequest::Export {
                        from_us: view.from_us(),
                        to_us: view.end_us,
                        out_dir: dir.clone(),
                    });
                    data.last_export = Some(format!("exporting to {} …", dir.display()));
                }
            }
        }
    }
}

/// Moves the cursor: live follows now; replay advances at its speed, loops
/// inside its range, and joins live when it catches up with now.
fn advance_cursor(time: Res<Time>, mut cursor: ResMut<TimeCursor>, mut view: ResMut<TimelineView>) {
    let now = now_us();
    match cursor.mode {
        CursorMode::Live => cursor.t_us = now,
        CursorMode::Replay if cursor.playing => {
            let step = (time.delta_secs_f64() * cursor.speed * 1e6) as i64;
            let mut t = cursor.t_us.saturating_add(step);
            if let Some((a, b)) = cursor.loop_range
                && t > b
            {
                t = a;
            }
            if t >= now {
                match cursor.future_until_us {
                    // Play on into the simulated future.
                    Some(end) if end > now => cursor.mode = CursorMode::Future,
                    _ => {
                        cursor.mode = CursorMode::Live;
                        cursor.playing = false;
                        t = now;
                    }
                }
            }
            cursor.t_us = t;
        }
        CursorMode::Future if cursor.playing => {
            let step = (time.delta_secs_f64() * cursor.speed * 1e6) as i64;
            let end = cursor.future_until_us.unwrap_or(now);
            let mut t = cursor.t_us.saturating_add(step).max(now);
            if let Some((a, b)) = cursor.loop_range
                && t > b
            {
                t = a.max(now);
            }
            if t >= end {
                t = end;
                cursor.playing = false;
            }
            cursor.t_us = t;
        }
        CursorMode::Future => {
            // Now catches up with a paused future cursor: it joins live.
            if cursor.t_us <= now {
                cursor.mode = CursorMode::Live;
                cursor.t_us = now;
            }
        }
        CursorMode::Replay => {}
    }
    // The window keeps the cursor in view: it follows live, and pages in replay.
    let end = if cursor.is_live() {
        now
    } else if cursor.t_us > view.end_us || cursor.t_us < view.from_us() {
        (cursor.t_us + view.span_us / 2).min(cursor.future_until_us.unwrap_or(now).max(now))
    } else {
        view.end_us
    };
    if end != view.end_us {
        view.end_us = end;
    }
}

#[allow(clippy::too_many_arguments)]
fn take_answers(
    mut answers: ResMut<HistoryAnswers>,
    registry: Res<AssetRegistry>,
    history: Option<Res<History>>,
    cursor: Res<TimeCursor>,
    mut data: ResMut<PlaybackData>,
    mut seek: MessageWriter<PlaybackCommand>,
    mut shown: Query<(&BoundAsset, &mut Shown)>,
    mut connections: ResMut<crate::history::WorkerConnections>,
) {
    for a in answers.0.drain(..) {
        match a {
            ReadResponse::StateAt(Ok(s)) => {
                if cursor.shows_live() {
                    continue;
                }
                if let Some(h) = &history {
                    apply_recorded(&s, &registry, h, &mut shown);
                    data.shown_at_us = Some(s.t_us);
                }
            }
            ReadResponse::Trend(Ok(t)) => data.trend = t,
            ReadResponse::Timeline(Ok(t)) => data.timeline = t,
            ReadResponse::Bookmarks(Ok(b)) => data.bookmarks = b,
            ReadResponse::NextMarker(Ok(Some(m))) => {
                seek.write(PlaybackCommand::Seek(m.ts_us));
            }
            ReadResponse::NextMarker(Ok(None)) => {
                data.last_error = Some("no further event in that direction".into());
            }
            ReadResponse::Export(Ok(r)) => {
                data.last_export = Some(format!(
                    "exported {} samples and {} transitions to {} ({} Parquet files)",
                    r.samples,
                    r.transitions,
                    r.out_dir.display(),
                    r.files
                ));
            }
            ReadResponse::Export(Err(e)) => data.last_export = Some(format!("export failed: {e}")),
            ReadResponse::Connection(tag, c) => connections.0.push((tag, c)),
            ReadResponse::StateAt(Err(e))
            | ReadResponse::Trend(Err(e))
            | ReadResponse::Timeline(Err(e))
            | ReadResponse::NextMarker(Err(e))
            | ReadResponse::Bookmarks(Err(e)) => {
                warn!("history: {e}");
                data.last_error = Some(e.to_string());
            }
        }
    }
}

/// Writes a recorded instant into every asset's [`Shown`].
fn apply_recorded(
    s: &crate::history::query::StateAt,
    registry: &AssetRegistry,
    history: &History,
    shown: &mut Query<(&BoundAsset, &mut Shown)>,
) {
    let mut per_asset: std::collections::HashMap<AssetIdx, Vec<(u32, LastValue)>> =
        std::collections::HashMap::new();
    for v in &s.values {
        let Some(PropertyRef { asset, property }) = history.props.property(v.prop_id) else {
            continue;
        };
        let value = match &v.value {
            StoredValue::Number(x) => SampleValue::Number(*x),
            StoredValue::Bool(b) => SampleValue::Bool(*b),
            StoredValue::Integer(i) => SampleValue::Integer(*i),
            StoredValue::Text(t) => SampleValue::Text(t.clone()),
            StoredValue::Spectrum { bin_hz, bins, .. } => SampleValue::Spectrum {
                bin_hz: *bin_hz,
                bins: bins.clone().into(),
            },
            StoredValue::Missing => continue,
        };
        per_asset.entry(asset).or_default().push((
            property,
            LastValue {
                value,
                quality: v.quality,
                origin: v.origin,
                source_ts_us: v.value_ts_us,
                received_us: v.value_ts_us,
                applied_us: v.value_ts_us,
                historical: v.historical,
            },
        ));
    }
    for (b, mut sh) in shown.iter_mut() {
        let Some(rec) = registry.get(b.0) else {
            continue;
        };
        let mut values = LiveValues(vec![None; rec.properties.len()]);
        let mut newest: Option<i64> = None;
        for (pi, lv) in per_asset.remove(&b.0).unwrap_or_default() {
            newest = Some(newest.map_or(lv.source_ts_us, |n: i64| n.max(lv.source_ts_us)));
            if let Some(slot) = values.0.get_mut(pi as usize) {
                *slot = Some(lv);
            }
        }
        let state = s
            .states
            .iter()
            .find(|st| st.asset_id == rec.id)
            .map(|st| AssetState {
                state: MachineState::parse(&st.state).unwrap_or_default(),
                reason: st.reason.clone(),
                since_ts_us: Some(st.since_ts_us),
            })
            .unwrap_or_default();
        let stale = newest.is_some_and(|n| s.t_us - n > silence_limit_us(registry, b.0));
        *sh = Shown {
            state,
            values,
            freshness: Freshness {
                last_sample_us: newest,
                stale,
                offline: None,
            },
            work_order: s.work_orders.get(&rec.id).cloned().flatten(),
            replay: true,
        };
    }
}

type LiveParts<'a> = (
    Ref<'a, AssetState>,
    Ref<'a, LiveValues>,
    Ref<'a, Freshness>,
    &'a mut Shown,
);

/// In live mode, shows the twin's own state (all of it right after replay,
/// then only what changed).
fn show_live(
    cursor: Res<TimeCursor>,
    registry: Res<AssetRegistry>,
    mes: Option<Res<crate::mes::MesContext>>,
    mut was_live: Local<bool>,
    mut assets: Query<(&BoundAsset, LiveParts)>,
) {
    if !cursor.shows_live() {
        *was_live = false;
        return;
    }
    let all = !*was_live;
    *was_live = true;
    let mes_changed = mes.as_ref().is_some_and(|m| m.is_changed());
    for (b, (state, values, fresh, mut shown)) in &mut assets {
        let changed = state.is_changed() || values.is_changed() || fresh.is_changed();
        if !(all || changed || shown.replay || mes_changed) {
            continue;
        }
        let wo = mes.as_ref().and_then(|m| {
            let id = &registry.get(b.0)?.id;
            m.work_orders.get(id).cloned()
        });
        *shown = Shown {
            state: (*state).clone(),
            values: (*values).clone(),
            freshness: (*fresh).clone(),
            work_order: wo,
            replay: false,
        };
    }
}

/// Bucket width for a window: about 600 buckets, on round widths.
pub fn trend_width_us(span_us: i64) -> i64 {
    const NICE: [i64; 14] = [
        100_000,
        250_000,
        500_000,
        1_000_000,
        2_000_000,
        5_000_000,
        10_000_000,
        30_000_000,
        60_000_000,
        120_000_000,
        300_000_000,
        600_000_000,
        1_800_000_000,
        3_600_000_000,
    ];
    let want = span_us / 600;
    NICE.iter()
        .copied()
        .find(|w| *w >= want)
        .unwrap_or(3_600_000_000)
}

/// Sends the queries the cursor and window need: the recorded state when
/// the replay cursor moved, and trends and the timeline when the window or
/// focus changed (once a second while following live).
#[allow(clippy::too_many_arguments)]
fn ask_history(
    history: Option<Res<History>>,
    registry: Res<AssetRegistry>,
    cursor: Res<TimeCursor>,
    view: Res<TimelineView>,
    mut last_state_t: Local<Option<i64>>,
    mut last_window: Local<Option<(i64, i64, Option<AssetIdx>)>>,
    mut last_refresh_us: Local<i64>,
    mut asked_bookmarks: Local<bool>,
    mut shown_count: Local<usize>,
    shown: Query<(), With<Shown>>,
) {
    let Some(h) = history else {
        return;
    };
    // Assets bound after the last answer need the recorded state too.
    let n = shown.iter().count();
    if n != *shown_count {
        *shown_count = n;
        *last_state_t = None;
    }
    if !*asked_bookmarks {
        h.ask(ReadRequest::Bookmarks);
        *asked_bookmarks = true;
    }
    if cursor.shows_live() {
        *last_state_t = None;
    } else if *last_state_t != Some(cursor.t_us) {
        h.ask(ReadRequest::StateAt { t_us: cursor.t_us });
        *last_state_t = Some(cursor.t_us);
    }
    let now = now_us();
    // Quantize the window so a following window does not ask every frame.
    let width = trend_width_us(view.span_us);
    let end = (view.end_us.div_euclid(width) + 1) * width;
    let from = end - view.span_us - width;
    let key = (from, end, view.focus);
    let stale = cursor.is_live() && now - *last_refresh_us > 1_000_000;
    if *last_window == Some(key) && !stale {
        return;
    }
    *last_window = Some(key);
    *last_refresh_us = now;
    let asset_id = view
        .focus
        .and_then(|a| registry.get(a))
        .map(|a| a.id.clone());
    h.ask(ReadRequest::Timeline {
        asset_id,
        from_us: from,
        to_us: end,
    });
    if let Some(a) = view.focus {
        let props: Vec<(u32, i32)> = h
            .props
            .of_asset(a)
            .into_iter()
            .filter(|(pi, _)| {
                registry
                    .property(PropertyRef {
                        asset: a,
                        property: *pi,
                    })
                    .is_some_and(|(_, p)| p.encoding != Encoding::Spectrum && p.name != "state")
            })
            .collect();
        h.ask(ReadRequest::Trend {
            asset: a,
            props,
            from_us: from,
            to_us: end,
            width_us: width,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bevy::time::TimeUpdateStrategy;

    use super::*;
    use crate::demo::plant::PlantSpec;

    fn app() -> App {
        let mut app = App::new();
        app.add_plugins((MinimalPlugins, crate::CoreSetsPlugin, PlaybackPlugin))
            .insert_resource(AssetRegistry::new(PlantSpec::demo().registry()))
            .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
                100,
            )));
        app.update();
        app
    }

    fn send(app: &mut App, c: PlaybackCommand) -> TimeCursor {
        app.world_mut().write_message(c);
        app.update();
        app.world().resource::<TimeCursor>().clone()
    }

    #[test]
    fn seek_step_and_go_live() {
        let mut app = app();
        assert!(app.world().resource::<TimeCursor>().is_live());
        let t = now_us() - 3_600_000_000;
        let c = send(&mut app, PlaybackCommand::Seek(t));
        assert_eq!((c.mode, c.t_us, c.playing), (CursorMode::Replay, t, false));
        let c = send(&mut app, PlaybackCommand::Step(-5_000_000));
        assert_eq!(c.t_us, t - 5_000_000);
        // Stepping past now joins live.
        let c = send(&mut app, PlaybackCommand::Step(7_200_000_000));
        assert!(c.is_live());
        let c = send(&mut app, PlaybackCommand::Seek(now_us() + 1_000_000));
        assert!(c.is_live(), "the future is live");
        send(&mut app, PlaybackCommand::Seek(t));
        let c = send(&mut app, PlaybackCommand::GoLive);
        assert!(c.is_live());
        // With a what-if horizon the cursor goes into the future, up to it.
        let end = now_us() + 3_600_000_000;
        send(&mut app, PlaybackCommand::FutureUntil(Some(end)));
        let ahead = now_us() + 600_000_000;
        let c = send(&mut app, PlaybackCommand::Seek(ahead));
        assert_eq!((c.mode, c.t_us), (CursorMode::Future, ahead));
        assert!(c.shows_live(), "the live plant stays live under the future");
        let c = send(&mut app, PlaybackCommand::Seek(end + 60_000_000));
        assert_eq!(c.t_us, end, "not past the horizon");
        let c = send(&mut app, PlaybackCommand::Seek(t));
        assert_eq!(c.mode, CursorMode::Replay, "before now is replay");
        send(&mut app, PlaybackCommand::Seek(ahead));
        let c = send(&mut app, PlaybackCommand::FutureUntil(None));
        assert!(c.is_live(), "no study, no future");
    }

    #[test]
    fn speed_is_clamped_and_play_advances_by_speed() {
        let mut app = app();
        let c = send(&mut app, PlaybackCommand::Speed(10_000.0));
        assert_eq!(c.speed, SPEED_MAX);
        let c = send(&mut app, PlaybackCommand::Speed(0.0));
        assert_eq!(c.speed, SPEED_MIN);
        send(&mut app, PlaybackCommand::Speed(10.0));
        let t = now_us() - 3_600_000_000;
        send(&mut app, PlaybackCommand::Seek(t));
        let c = send(&mut app, PlaybackCommand::Play);
        assert!(c.playing);
        let before = c.t_us;
        app.update();
        let after = app.world().resource::<TimeCursor>().t_us;
        // 100 ms of wall time at ×10 is one plant second.
        assert_eq!(after - before, 1_000_000);
    }

    #[test]
    fn the_future_plays_at_up_to_3600_and_stops_at_the_horizon() {
        let mut app = app();
        let end = now_us() + 1_800_000_000;
        send(&mut app, PlaybackCommand::FutureUntil(Some(end)));
        send(&mut app, PlaybackCommand::Speed(3600.0));
        let ahead = now_us() + 60_000_000;
        send(&mut app, PlaybackCommand::Seek(ahead));
        let c = send(&mut app, PlaybackCommand::Play);
        assert_eq!(c.mode, CursorMode::Future);
        assert!(c.playing);
        let before = c.t_us;
        app.update();
        let after = app.world().resource::<TimeCursor>().t_us;
        // 100 ms of wall time at ×3600 is six plant minutes.
        assert_eq!(after - before, 360_000_000);
        for _ in 0..10 {
            app.update();
        }
        let c = app.world().resource::<TimeCursor>().clone();
        assert_eq!((c.t_us, c.playing), (end, false), "stopped at the horizon");
        assert!(c.is_future());
        // A replay that catches up with now plays on into the future.
        send(&mut app, PlaybackCommand::Speed(600.0));
        send(&mut app, PlaybackCommand::Seek(now_us() - 30_000_000));
        send(&mut app, PlaybackCommand::Play);
        app.update();
        let c = app.world().resource::<TimeCursor>().clone();
        assert_eq!(c.mode, CursorMode::Future, "{c:?}");
        assert!(c.playing);
    }

    #[test]
    fn a_loop_wraps_to_its_start() {
        let mut app = app();
        let a = now_us() - 600_000_000;
        let b = a + 2_000_000;
        send(&mut app, PlaybackCommand::LoopRange(Some((a, b))));
        send(&mut app, PlaybackCommand::Speed(10.0));
        send(&mut app, PlaybackCommand::Seek(b - 500_000));
        send(&mut app, PlaybackCommand::Play);
        let c = app.world().resource::<TimeCursor>().clone();
        assert!(c.t_us >= a && c.t_us <= b, "{} not in {a}..{b}", c.t_us);
        assert_eq!(c.t_us, a, "wrapped to the loop start");
        // An empty range is refused.
        let c = send(&mut app, PlaybackCommand::LoopRange(Some((b, a))));
        assert_eq!(c.loop_range, None);
    }

    #[test]
    fn trend_buckets_are_round_and_about_600_per_window() {
        assert_eq!(trend_width_us(60_000_000), 100_000);
        assert_eq!(trend_width_us(15 * 60_000_000), 2_000_000);
        assert_eq!(trend_width_us(3_600_000_000), 10_000_000);
        assert_eq!(trend_width_us(7 * 24 * 3_600_000_000), 1_800_000_000);
        assert_eq!(trend_width_us(30 * 24 * 3_600_000_000), 3_600_000_000);
    }
}
