//! The enterprise view's data: `enterprise.toml` in; the site summaries from
//! the enterprise broker (through [`spawn_feed`]) applied to an
//! [`EnterpriseModel`] out — sites, their areas and lines with state and
//! OEE, each site live or stale by the age of its last heartbeat.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;

use super::{AssetSummary, FederationError, SiteSummary};

/// `enterprise.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseConfig {
    /// The enterprise broker the sites' bridges publish to
    /// (`mqtt://host:port`).
    pub broker: String,
    #[serde(default = "default_root")]
    pub topic_root: String,
    /// A site whose heartbeat is older than this is shown stale.
    #[serde(default = "default_stale")]
    pub stale_after_s: u64,
    /// Client id on the enterprise broker.
    #[serde(default = "default_client")]
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sites expected (others that publish are shown too).
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteEntry>,
}

fn default_root() -> String {
    "mezzanine/sites".into()
}
fn default_stale() -> u64 {
    10
}
fn default_client() -> String {
    "mezzanine-enterprise".into()
}

/// One expected site.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEntry {
    /// The site's short name (its `[plant] site`).
    pub name: String,
    /// The site twin's config (its layout, registry and broker): the view's
    /// drill-down opens the site's 3D layout with it. Relative to this file.
    pub config: Option<PathBuf>,
}

impl EnterpriseConfig {
    pub fn load(path: &Path) -> Result<Self, FederationError> {
        let cfg_err = |message: String| FederationError::Config {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| cfg_err(e.to_string()))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| cfg_err(e.to_string()))?;
        crate::ingest::mqtt::parse_mqtt_url(&cfg.broker)
            .map_err(|e| cfg_err(format!("broker: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for s in &mut cfg.sites {
            if let Some(c) = &s.config
                && c.is_relative()
            {
                s.config = Some(base.join(c));
            }
        }
        Ok(cfg)
    }
}

/// How current a site's picture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteFreshness {
    /// Never heard from (expected in the config only).
    Unheard,
    Live,
    /// Heartbeat older than `stale_after_s`: the last picture, kept.
    Stale {
        last_seen_us: i64,
    },
    /// The twin's last will arrived: the twin, or the site broker it was
    /// connected to, went away.
    Offline {
        last_seen_us: Option<i64>,
    },
}

/// One site as last heard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteView {
    pub site: String,
    pub config: Option<PathBuf>,
    pub status: Option<SiteSummary>,
    pub assets: BTreeMap<String, AssetSummary>,
    /// The twin's `online` flag (None: not heard).
    pub online: Option<bool>,
}

impl SiteView {
    pub fn last_seen_us(&self) -> Option<i64> {
        self.status.as_ref().map(|s| s.ts_us)
    }
}

/// A line of a site: its machines and OEE.
#[derive(Debug, Clone, PartialEq)]
pub struct LineView<'a> {
    pub area: &'a str,
    pub line: &'a str,
    pub oee: Option<f64>,
    pub machines: Vec<&'a AssetSummary>,
}

/// Every site the enterprise broker told of.
#[derive(Debug, Clone, Default)]
pub struct EnterpriseModel {
    pub topic_root: String,
    pub stale_after_us: i64,
    pub sites: BTreeMap<String, SiteView>,
    /// Messages that could not be read, with why (the latest 20).
    pub rejected: Vec<String>,
    pub rejected_total: u64,
}

impl EnterpriseModel {
    pub fn new(cfg: &EnterpriseConfig) -> Self {
        let mut m = Self {
            topic_root: cfg.topic_root.trim_end_matches('/').to_string(),
            stale_after_us: cfg.stale_after_s as i64 * 1_000_000,
            ..Self::default()
        };
        for s in &cfg.sites {
            m.sites.insert(
                s.name.clone(),
                SiteView {
                    site: s.name.clone(),
                    config: s.config.clone(),
                    ..SiteView::default()
                },
            );
        }
        m
    }

    /// Applies one message from the enterprise broker. Topics outside the
    /// root are ignored; a payload that cannot be read is kept as rejected
    /// (and returned), the model unchanged.
    pub fn apply(&mut self, topic: &str, payload: &[u8]) -> Result<(), FederationError> {
        let r = self.apply_inner(topic, payload);
        if let Err(e) = &r {
            self.rejected_total += 1;
            if self.rejected.len() >= 20 {
                self.rejected.remove(0);
            }
            self.rejected.push(e.to_string());
        }
        r
    }

    fn apply_inner(&mut self, topic: &str, payload: &[u8]) -> Result<(), FederationError> {
        let Some(rest) = topic
            .strip_prefix(&self.topic_root)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Ok(());
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(site), Some(kind)) = (parts.next(), parts.next()) else {
            return Ok(());
        };
        let bad = |message: String| FederationError::Payload {
            topic: topic.to_string(),
            message,
        };
        // An empty retained message clears the topic.
        if payload.is_empty() {
            if let (Some(v), "assets", Some(id)) = (self.sites.get_mut(site), kind, parts.next()) {
                v.assets.remove(id);
            }
            return Ok(());
        }
        match (kind, parts.next()) {
            ("site", None) => {
                let s: SiteSummary =
                    serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
                let v = self.site_mut(site);
                // A retained older heartbeat never replaces a newer one.
                if v.status.as_ref().is_none_or(|o| o.ts_us <= s.ts_us) {
                    v.status = Some(s);
                }
            }
            ("assets", Some(id)) => {
                let a: AssetSummary =
                    serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
                if a.asset_id != id {
                    return Err(bad(format!("asset id {} under topic of {id}", a.asset_id)));
                }
                let v = self.site_mut(site);
                if v.assets.get(id).is_none_or(|o| o.ts_us <= a.ts_us) {
                    v.assets.insert(id.to_string(), a);
                }
            }
            ("online", None) => {
                let on = match payload {
                    b"true" => true,
                    b"false" => false,
                    other => {
                        return Err(bad(format!(
                            "`online` is `true` or `false`, not {:?}",
                            String::from_utf8_lossy(other)
                        )));
                    }
                };
                self.site_mut(site).online = Some(on);
            }
            _ => {}
        }
        Ok(())
    }

    fn site_mut(&mut self, site: &str) -> &mut SiteView {
        self.sites
            .entry(site.to_string())
            .or_insert_with(|| SiteView {
                site: site.to_string(),
                ..SiteView::default()
            })
    }

    pub fn freshness(&self, site: &str, now_us: i64) -> SiteFreshness {
        let Some(v) = self.sites.get(site) else {
            return SiteFreshness::Unheard;
        };
        let last = v.last_seen_us();
        if v.online == Some(false) {
            return SiteFreshness::Offline { last_seen_us: last };
        }
        match last {
            None => SiteFreshness::Unheard,
            Some(t) if now_us - t > self.stale_after_us => SiteFreshness::Stale { last_seen_us: t },
            Some(_) => SiteFreshness::Live,
        }
    }

    /// A site's lines in area and line order, with their machines and the
    /// line OEE the site stated.
    pub fn lines(&self, site: &str) -> Vec<LineView<'_>> {
        let Some(v) = self.sites.get(site) else {
            return Vec::new();
        };
        let mut out: Vec<LineView<'_>> = Vec::new();
        for a in v.assets.values() {
            match out
                .iter_mut()
                .find(|l| l.area == a.area && l.line == a.line)
            {
                Some(l) => l.machines.push(a),
                None => out.push(LineView {
                    area: &a.area,
                    line: &a.line,
                    oee: v.status.as_ref().and_then(|s| {
                        s.lines
                            .iter()
                            .find(|l| l.area == a.area && l.line == a.line)
                            .and_then(|l| l.oee.as_ref().and_then(|o| o.oee))
                    }),
                    machines: vec![a],
                }),
            }
        }
        out.sort_by(|a, b| (a.area, a.line).cmp(&(b.area, b.line)));
        out
    }
}

/// What the feed delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    /// Connected to the enterprise broker (true) or not.
    Link(bool),
}

/// The enterprise broker subscription, on its own thread. Dropping it stops
/// the thread.
pub struct EnterpriseFeed {
    pub events: Receiver<FeedEvent>,
    stop: Arc<AtomicBool>,
}

impl Drop for EnterpriseFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Subscribes to `<topic_root>/#` on the enterprise broker (QoS 1; the
/// retained summaries give the picture at once).
pub fn spawn_feed(cfg: &EnterpriseConfig) -> Result<EnterpriseFeed, FederationError> {
    let url =
        crate::ingest::mqtt::parse_mqtt_url(&cfg.broker).map_err(|e| FederationError::Broker {
            url: cfg.broker.clone(),
            message: e.to_string(),
        })?;
    if url.tls {
        return Err(FederationError::Broker {
            url: cfg.broker.clone(),
            message: "the enterprise view connects over plain MQTT only (TLS is not built in \
                      for it yet)"
                .into(),
        });
    }
    let (tx, rx) = crossbeam_channel::bounded(65_536);
    let stop = Arc::new(AtomicBool::new(false));
    let mut opts = MqttOptions::new(cfg.client_id.clone(), url.host, url.port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(true);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    let filter = format!("{}/#", cfg.topic_root.trim_end_matches('/'));
    let stop_t = stop.clone();
    std::thread::Builder::new()
        .name("enterprise-feed".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(feed(opts, filter, tx, stop_t));
        })
        .map_err(FederationError::Thread)?;
    Ok(EnterpriseFeed { events: rx, stop })
}

async fn feed(opts: MqttOptions, filter: String, tx: Sender<FeedEvent>, stop: Arc<AtomicBool>) {
    let (client, mut el) = AsyncClient::new(opts, 256);
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                let _ = tx.try_send(FeedEvent::Link(true));
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let _ = tx.try_send(FeedEvent::Message {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                });
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(_)) => {
                let _ = tx.try_send(FeedEvent::Link(false));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> EnterpriseModel {
        let cfg: EnterpriseConfig = toml::from_str(
            "broker = \"mqtt://127.0.0.1:1883\"\nstale_after_s = 5\n[[site]]\nname = \"lyon\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        EnterpriseModel::new(&cfg)
    }

    #[test]
    fn a_bad_summary_is_rejected_with_its_topic_and_the_model_kept() {
        let mut m = model();
        assert_eq!(m.freshness("lyon", 0), SiteFreshness::Unheard);
        let e = m.apply("mezzanine/sites/lyon/site", b"{not json");
        assert!(e.is_err());
        assert_eq!(m.rejected_total, 1);
        assert!(
            m.rejected[0]
                .to_string()
                .contains("mezzanine/sites/lyon/site")
        );
        assert!(m.sites["lyon"].status.is_none());
        assert!(m.apply("other/topic", b"x").is_ok());
        assert!(m.apply("mezzanine/sites/lyon/online", b"maybe").is_err());
    }
}
