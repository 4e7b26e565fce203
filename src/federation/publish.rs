//! The site summary publisher: the twin's state, OEE, discrepancies, MES
//! link and recorder health in (read from the app's resources each frame);
//! retained QoS 1 messages out on the site's broker, from a thread of its
//! own with its own MQTT client (`<client id>-summary`). An asset's summary
//! goes out when it changed, at most once per interval; the site heartbeat
//! once per interval. When the broker is away the newest summaries wait
//! (older ones of the same topic are replaced), so the enterprise gets the
//! current picture when the link comes back, not a backlog.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};

use super::{
    AssetSummary, FederationError, LineSummary, OeeSummary, RecorderHealth, SiteSummary,
    asset_topic, online_topic, site_topic,
};
use crate::history::History;
use crate::ingest::now_us;
use crate::mes::{LinkStatus, MesLink};
use crate::oee::Oee;
use crate::oee::live::OeeLive;
use crate::reconcile::Reconciliation;
use crate::registry::AssetRegistry;
use crate::twin::{AssetState, BoundAsset};

/// Where and how often the summary goes.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarySettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub topic_root: String,
    pub site: String,
    pub min_interval: Duration,
}

/// Publishes the site summary (see the module docs).
pub struct SummaryPlugin {
    pub settings: SummarySettings,
}

/// The newest payload per topic, waiting for the client.
type Pending = Arc<std::sync::Mutex<HashMap<String, Vec<u8>>>>;

#[derive(Resource)]
struct Publisher {
    settings: SummarySettings,
    pending: Pending,
    /// Per asset: when it was last sent and what (without its time).
    last: HashMap<String, (Instant, String)>,
    last_site: Option<Instant>,
    stop: Arc<AtomicBool>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Plugin for SummaryPlugin {
    fn build(&self, app: &mut App) {
        let pending: Pending = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        if let Err(e) = spawn_client(self.settings.clone(), pending.clone(), stop.clone()) {
            error!("site summary: {e}");
            return;
        }
        app.insert_resource(Publisher {
            settings: self.settings.clone(),
            pending,
            last: HashMap::new(),
            last_site: None,
            stop,
        })
        .add_systems(Update, publish_summary);
    }
}

fn oee_summary(shift: &str, o: &Oee) -> OeeSummary {
    OeeSummary {
        shift: shift.to_string(),
        availability: o.availability(),
        performance: o.performance(),
        quality: o.quality(),
        oee: o.oee(),
    }
}

fn mes_link_label(link: Option<&MesLink>) -> String {
    match link.map(|l| &l.status) {
        None | Some(LinkStatus::Unknown) => "unknown".into(),
        Some(LinkStatus::Up) => "up".into(),
        Some(LinkStatus::Down { .. }) => "down".into(),
        Some(_) => "catching up".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn publish_summary(
    mut p: ResMut<Publisher>,
    registry: Res<AssetRegistry>,
    states: Query<(&BoundAsset, &AssetState)>,
    oee: Option<Res<OeeLive>>,
    recon: Option<Res<Reconciliation>>,
    mes: Option<Res<MesLink>>,
    history: Option<Res<History>>,
) {
    let now = Instant::now();
    let ts_us = now_us();
    let interval = p.settings.min_interval;
    let shift = oee
        .as_ref()
        .and_then(|o| o.0.period.as_ref().map(|x| x.label.clone()))
        .unwrap_or_default();
    let oee_of = |i: crate::registry::AssetIdx| -> Option<&Oee> {
        oee.as_ref()
            .and_then(|o| o.0.records.iter().find(|(a, _)| *a == i).map(|(_, r)| r))
    };
    let open_on = |id: &str| -> u32 {
        recon
            .as_ref()
            .map_or(0, |r| r.engine.unresolved_on(id).count() as u32)
    };
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut lines: Vec<(String, String, Oee)> = Vec::new();
    let mut open_total = 0;
    for (bound, state) in &states {
        let Some(a) = registry.get(bound.0) else {
            continue;
        };
        let record = oee_of(bound.0);
        let open = open_on(&a.id);
        open_total += open;
        if let Some(r) = record {
            match lines
                .iter_mut()
                .find(|(ar, l, _)| *ar == a.isa95.area && *l == a.isa95.work_center)
            {
                Some((_, _, o)) => o.merge(r),
                None => lines.push((a.isa95.area.clone(), a.isa95.work_center.clone(), r.clone())),
            }
        }
        let mut s = AssetSummary {
            asset_id: a.id.clone(),
            name: a.name.clone(),
            area: a.isa95.area.clone(),
            line: a.isa95.work_center.clone(),
            state: state.state.label().to_string(),
            reason: state.reason.clone(),
            oee: record.map(|r| oee_summary(&shift, r)),
            open_discrepancies: open,
            ts_us: 0,
        };
        // Compared without the time, and with OEE to whole per mille, so a
        // running machine's creeping OEE does not send every second.
        let key = format!(
            "{}|{:?}|{}|{:?}",
            s.state,
            s.reason,
            s.open_discrepancies,
            s.oee
                .as_ref()
                .map(|o| o.oee.map(|x| (x * 1000.0).round() as i64))
        );
        let due = match p.last.get(&a.id) {
            None => true,
            Some((at, k)) => *k != key && now.duration_since(*at) >= interval,
        };
        if due {
            s.ts_us = ts_us;
            if let Ok(bytes) = serde_json::to_vec(&s) {
                out.push((
                    asset_topic(&p.settings.topic_root, &p.settings.site, &a.id),
                    bytes,
                ));
                p.last.insert(a.id.clone(), (now, key));
            }
        }
    }
    if p.last_site
        .is_none_or(|t| now.duration_since(t) >= interval)
    {
        p.last_site = Some(now);
        lines.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let site = SiteSummary {
            site: p.settings.site.clone(),
            name: registry.plant().name.clone(),
            time_zone: registry.plant().time_zone.clone(),
            mes_link: mes_link_label(mes.as_deref()),
            recorder: history.as_ref().map(|h| {
                let s = &h.stats;
                let failing = s.failing_since_us.load(Ordering::Relaxed);
                RecorderHealth {
                    samples_written: s.samples_written.load(Ordering::Relaxed),
                    backlog: s.backlog.load(Ordering::Relaxed),
                    failing_since_us: (failing != 0).then_some(failing),
                    dead_letters: s.dead_letters.load(Ordering::Relaxed),
                }
            }),
            lines: lines
                .iter()
                .map(|(area, line, o)| LineSummary {
                    area: area.clone(),
                    line: line.clone(),
                    oee: Some(oee_summary(&shift, o)),
                })
                .collect(),
            open_discrepancies: open_total,
            assets: registry.assets().len() as u32,
            ts_us,
        };
        if let Ok(bytes) = serde_json::to_vec(&site) {
            out.push((site_topic(&p.settings.topic_root, &p.settings.site), bytes));
        }
    }
    if !out.is_empty()
        && let Ok(mut pending) = p.pending.lock()
    {
        pending.extend(out);
    }
}

/// The client's thread: connects (and reconnects), announces `online`,
/// sends what is pending. The last will says `online: false`.
fn spawn_client(
    s: SummarySettings,
    pending: Pending,
    stop: Arc<AtomicBool>,
) -> Result<(), FederationError> {
    std::thread::Builder::new()
        .name("site-summary".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                error!("site summary: no async runtime");
                return;
            };
            rt.block_on(run_client(s, pending, stop));
        })
        .map(|_| ())
        .map_err(FederationError::Thread)
}

async fn run_client(s: SummarySettings, pending: Pending, stop: Arc<AtomicBool>) {
    let online = online_topic(&s.topic_root, &s.site);
    let mut opts = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_last_will(LastWill::new(&online, "false", QoS::AtLeastOnce, true));
    if let (Some(u), Some(pw)) = (&s.username, &s.password) {
        opts.set_credentials(u.clone(), pw.clone());
    }
    let (client, mut el) = AsyncClient::new(opts, 1024);
    let mut connected = false;
    let mut said_down = false;
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(100), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                connected = true;
                said_down = false;
                info!("site summary: connected to {}:{}", s.host, s.port);
                let _ = client.try_publish(&online, QoS::AtLeastOnce, true, "true");
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                connected = false;
                if !said_down {
                    warn!("site summary: broker {}:{} away ({e})", s.host, s.port);
                    said_down = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if connected {
            let batch: Vec<(String, Vec<u8>)> = match pending.lock() {
                Ok(mut p) => p.drain().collect(),
                Err(_) => Vec::new(),
            };
            for (topic, payload) in batch {
                if client
                    .try_publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
                    .is_err()
                {
                    // The client's queue is full: keep it for the next turn
                    // unless something newer for that topic came meanwhile.
                    if let Ok(mut p) = pending.lock() {
                        p.entry(topic).or_insert(payload);
                    }
                    break;
                }
            }
        }
    }
    let _ = client.try_publish(&online, QoS::AtLeastOnce, true, "false");
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if el.poll().await.is_err() {
                break;
            }
        }
    })
    .await;
}
