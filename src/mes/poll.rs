//! Polling the MES REST API: a base URL and the polled domains in;
//! [`PollMsg`]s (snapshots, outages, catch-up events) out on a channel.
//!
//! Runs on its own named thread. Every interval it asks `/api/v1/health`,
//! then the resources of the domains configured for polling; on request it
//! fetches the event log since a time (catch-up after an outage). It knows
//! nothing about entities or the twin's model, and it only ever sends GET.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::MesError;
use crate::ingest::now_us;
use crate::ingest::worker::WorkerThread;

/// What the poller is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct PollSettings {
    /// e.g. `http://127.0.0.1:8080`
    pub api_url: String,
    /// Sent as a bearer token with every request (never logged).
    pub token: Option<crate::config::Secret>,
    /// The CA (PEM) that signed the API's certificate, for `https://`.
    pub ca_file: Option<std::path::PathBuf>,
    pub interval_ms: u64,
    /// Events asked for per page of a catch-up (`limit`).
    pub catch_up_page_events: usize,
    pub work_orders: bool,
    pub equipment: bool,
    pub schedule: bool,
}

/// One order in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSnapshot {
    pub work_order: String,
    pub product: String,
    pub quantity: f64,
    pub unit: String,
    pub asset_id: String,
    /// released | running | held | completed
    pub status: String,
    pub operation: Option<u32>,
    pub good_count: u64,
    pub scrap_count: u64,
    pub planned_start_us: Option<i64>,
    pub planned_end_us: Option<i64>,
    pub due_us: Option<i64>,
}

/// One machine's mode in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct EquipmentSnapshot {
    pub asset_id: String,
    pub mode: String,
    pub work_order: Option<String>,
}

/// What one poll saw (a domain not polled is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The MES's own time of the answer.
    pub as_of_us: i64,
    pub received_us: i64,
    pub work_orders: Option<Vec<OrderSnapshot>>,
    pub equipment: Option<Vec<EquipmentSnapshot>>,
    pub schedule: Option<Vec<OrderSnapshot>>,
}

/// What the poller reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PollMsg {
    Snapshot(Snapshot),
    /// The API did not answer (or answered an error).
    Unreachable {
        at_us: i64,
        error: String,
    },
    /// One page of the event log since `since_us`, as the MES sent each
    /// event; `more` until the last page.
    CatchUp {
        since_us: i64,
        events: Vec<Value>,
        more: bool,
    },
    CatchUpFailed {
        since_us: i64,
        error: String,
    },
}

/// What the app asks of the poller.
#[derive(Debug, Clone, PartialEq)]
pub enum PollCommand {
    CatchUp { since_us: i64 },
}

/// The running poller.
pub struct MesPoller {
    worker: WorkerThread,
    pub results: Receiver<PollMsg>,
    pub commands: Sender<PollCommand>,
    pub settings: PollSettings,
}

impl MesPoller {
    pub fn stop(self) {
        self.worker.stop();
    }
}

const TIMEOUT: Duration = Duration::from_secs(3);

/// How requests reach the API: the bearer token and, for `https://`, the
/// TLS configuration trusting the configured CA.
#[derive(Clone, Default)]
pub struct ApiClient {
    pub token: Option<crate::config::Secret>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("token", &self.token)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ApiClient {
    /// A client for `s`: its token, and TLS trusting `s.ca_file` (PEM)
    /// when one is named. A CA file that cannot be read is named.
    pub fn new(s: &PollSettings) -> Result<Self, MesError> {
        let tls = match &s.ca_file {
            None => None,
            Some(path) => {
                let bad = |message: String| MesError::Api {
                    url: s.api_url.clone(),
                    message: format!("CA file {}: {message}", path.display()),
                };
                let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|e| bad(e.to_string()))?;
                    roots.add(cert).map_err(|e| bad(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(bad("no certificate in it".into()));
                }
                // One process-wide crypto provider (ring); a second install is a no-op.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(std::sync::Arc::new(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                ))
            }
        };
        Ok(Self {
            token: s.token.clone(),
            tls,
        })
    }
}

/// GET `url`; the body of a 2xx answer.
/// The largest answer taken from the API; a larger one is refused.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// GET `url` (with `token` as a bearer token), the body of a 2xx answer
/// up to [`MAX_ANSWER_BYTES`].
pub async fn http_get(url: &str, client: &ApiClient) -> Result<Vec<u8>, MesError> {
    let err = |message: String| MesError::Api {
        url: url.to_string(),
        message,
    };
    let uri: hyper::Uri = url.parse().map_err(|e| err(format!("bad URL: {e}")))?;
    let host = uri.host().ok_or_else(|| err("no host".into()))?.to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = tokio::time::timeout(
        TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| err("no answer within 3 s (connect)".into()))?
    .map_err(|e| err(e.to_string()))?;
    if !https {
        let io = hyper_util::rt::TokioIo::new(stream);
        return exchange(url, io, &uri, &host, port, client).await;
    }
    let Some(tls) = &client.tls else {
        return Err(err(
            "https:// needs [mes] ca_file, the CA (PEM) that signed the MES's certificate".into(),
        ));
    };
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| err(format!("`{host}` is not a name TLS can check: {e}")))?;
    let stream = tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream),
    )
    .await
    .map_err(|_| err("no TLS handshake within 3 s".into()))?
    .map_err(|e| err(format!("TLS: {e}")))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    exchange(url, io, &uri, &host, port, client).await
}

/// One GET over an open connection (plain or TLS).
async fn exchange<IO>(
    url: &str,
    io: IO,
    uri: &hyper::Uri,
    host: &str,
    port: u16,
    client: &ApiClient,
) -> Result<Vec<u8>, MesError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let err = |message: String| MesError::Api {
        url: url.to_string(),
        message,
    };
    let token = client.token.as_ref();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| err(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::ACCEPT, "application/json");
    if let Some(t) = token {
        req = req.header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", t.expose()),
        );
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| err(e.to_string()))?;
    let result = async {
        let res = tokio::time::timeout(TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| err("no answer within 3 s".into()))?
            .map_err(|e| err(e.to_string()))?;
        let status = res.status();
        let limited = http_body_util::Limited::new(res.into_body(), MAX_ANSWER_BYTES);
        let body = tokio::time::timeout(TIMEOUT, limited.collect())
            .await
            .map_err(|_| err("body not received within 3 s".into()))?
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    err(format!("answer over {MAX_ANSWER_BYTES} bytes, refused"))
                } else {
                    err(e.to_string())
                }
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        Ok(body.to_vec())
    }
    .await;
    conn.abort();
    result
}

fn time_us(s: &Option<String>) -> Option<i64> {
    s.as_deref()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_microsecond())
}

#[derive(Deserialize)]
struct RawQuantity {
    value: f64,
    unit: String,
}

#[derive(Deserialize)]
struct RawOrder {
    work_order: String,
    #[serde(default)]
    product: String,
    quantity: RawQuantity,
    asset_id: String,
    status: String,
    operation: Option<u32>,
    #[serde(default)]
    good_count: u64,
    #[serde(default)]
    scrap_count: u64,
    planned_start: Option<String>,
    planned_end: Option<String>,
    due: Option<String>,
}

impl RawOrder {
    fn into_snapshot(self) -> OrderSnapshot {
        OrderSnapshot {
            planned_start_us: time_us(&self.planned_start),
            planned_end_us: time_us(&self.planned_end),
            due_us: time_us(&self.due),
            work_order: self.work_order,
            product: self.product,
            quantity: self.quantity.value,
            unit: self.quantity.unit,
            asset_id: self.asset_id,
            status: self.status,
            operation: self.operation,
            good_count: self.good_count,
            scrap_count: self.scrap_count,
        }
    }
}

#[derive(Deserialize)]
struct RawOrders {
    as_of: String,
    #[serde(alias = "requests")]
    work_orders: Vec<RawOrder>,
}

#[derive(Deserialize)]
struct RawEquipment {
    equipment: Vec<RawMode>,
}

#[derive(Deserialize)]
struct RawMode {
    asset_id: String,
    mode: String,
    work_order: Option<String>,
}

fn json<T: serde::de::DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, MesError> {
    serde_json::from_slice(body).map_err(|e| MesError::Api {
        url: url.to_string(),
        message: format!("unexpected answer: {e}"),
    })
}

/// One poll of every configured resource.
pub async fn poll_once(s: &PollSettings) -> Result<Snapshot, MesError> {
    let base = s.api_url.trim_end_matches('/');
    let health_url = format!("{base}/api/v1/health");
    let token = &ApiClient::new(s)?;
    let health: Value = json(&health_url, &http_get(&health_url, token).await?)?;
    let mut as_of_us = health
        .get("as_of")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or_else(now_us, |t| t.as_microsecond());
    let mut snap = Snapshot {
        as_of_us,
        received_us: now_us(),
        work_orders: None,
        equipment: None,
        schedule: None,
    };
    if s.work_orders {
        let url = format!("{base}/api/v1/work-orders");
        let raw: RawOrders = json(&url, &http_get(&url, token).await?)?;
        if let Ok(t) = raw.as_of.parse::<jiff::Timestamp>() {
            as_of_us = t.as_microsecond();
        }
        snap.work_orders = Some(
            raw.work_orders
                .into_iter()
                .map(RawOrder::into_snapshot)
                .collect(),
        );
    }
    if s.equipment {
        let url = format!("{base}/api/v1/equipment");
        let raw: RawEquipment = json(&url, &http_get(&url, token).await?)?;
        snap.equipment = Some(
            raw.equipment
                .into_iter()
                .map(|m| EquipmentSnapshot {
                    asset_id: m.asset_id,
                    mode: m.mode,
                    work_order: m.work_order,
                })
                .collect(),
        );
    }
    if s.schedule {
        let url = format!("{base}/api/v1/schedule");
        let raw: RawOrders = json(&url, &http_get(&url, token).await?)?;
        snap.schedule = Some(
            raw.work_orders
                .into_iter()
                .map(RawOrder::into_snapshot)
                .collect(),
        );
    }
    snap.as_of_us = as_of_us;
    Ok(snap)
}

/// One page of the MES event log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<Value>,
    /// Where the next page starts, as the MES said (absent: the last page;
    /// an API without pagination answers everything in one page).
    pub next_cursor: Option<String>,
}

/// At most this many pages in one catch-up: a cursor that never ends is a
/// fault of the API, not a long outage (10,000 × 500 events).
pub const MAX_CATCH_UP_PAGES: usize = 10_000;

/// Query-string encoding of a cursor the MES chose (unreserved characters
/// pass as they are).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One page of the event log since `since_us`: at most `limit` events,
/// after `cursor` when continuing.
pub async fn events_page(
    api_url: &str,
    client: &ApiClient,
    since_us: i64,
    cursor: Option<&str>,
    limit: usize,
) -> Result<EventPage, MesError> {
    let mut url = format!(
        "{}/api/v1/events?since_us={since_us}&limit={limit}",
        api_url.trim_end_matches('/')
    );
    if let Some(c) = cursor {
        url.push_str("&cursor=");
        url.push_str(&query_escape(c));
    }
    let v: Value = json(&url, &http_get(&url, client).await?)?;
    let events = match v.get("events") {
        Some(Value::Array(a)) => a.clone(),
        _ => {
            return Err(MesError::Api {
                url,
                message: "the answer has no `events` array".into(),
            });
        }
    };
    let next_cursor = match v.get("next_cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if cursor == Some(c.as_str()) => {
            return Err(MesError::Api {
                url,
                message: format!("next_cursor `{c}` did not advance"),
            });
        }
        Some(Value::String(c)) => Some(c.clone()),
        Some(other) => {
            return Err(MesError::Api {
                url,
                message: format!("next_cursor is not a string: {other}"),
            });
        }
    };
    Ok(EventPage {
        events,
        next_cursor,
    })
}

/// The whole event log since `since_us`, page by page.
pub async fn events_since(
    api_url: &str,
    client: &ApiClient,
    since_us: i64,
    page_events: usize,
) -> Result<Vec<Value>, MesError> {
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_CATCH_UP_PAGES {
        let page = events_page(api_url, client, since_us, cursor.as_deref(), page_events).await?;
        all.extend(page.events);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(all),
        }
    }
    Err(too_many_pages(api_url))
}

fn too_many_pages(api_url: &str) -> MesError {
    MesError::Api {
        url: format!("{api_url}/api/v1/events"),
        message: format!("more than {MAX_CATCH_UP_PAGES} pages; catch-up abandoned"),
    }
}

/// Runs one catch-up, sending each page as it arrives (so a long outage
/// never holds its whole log in memory). False when the app has gone.
async fn catch_up(s: &PollSettings, since_us: i64, results: &Sender<PollMsg>) -> bool {
    let client = match ApiClient::new(s) {
        Ok(c) => c,
        Err(e) => {
            return results
                .send(PollMsg::CatchUpFailed {
                    since_us,
                    error: e.to_string(),
                })
                .is_ok();
        }
    };
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_CATCH_UP_PAGES {
        let page = events_page(
            &s.api_url,
            &client,
            since_us,
            cursor.as_deref(),
            s.catch_up_page_events.max(1),
        )
        .await;
        let msg = match page {
            Ok(p) => {
                let more = p.next_cursor.is_some();
                cursor = p.next_cursor;
                PollMsg::CatchUp {
                    since_us,
                    events: p.events,
                    more,
                }
            }
            Err(e) => PollMsg::CatchUpFailed {
                since_us,
                error: e.to_string(),
            },
        };
        let last = !matches!(msg, PollMsg::CatchUp { more: true, .. });
        if results.send(msg).is_err() {
            return false;
        }
        if last {
            return true;
        }
    }
    results
        .send(PollMsg::CatchUpFailed {
            since_us,
            error: too_many_pages(&s.api_url).to_string(),
        })
        .is_ok()
}

/// Starts the poller thread.
pub fn spawn_poller(settings: PollSettings) -> Result<MesPoller, MesError> {
    let (res_tx, results) = crossbeam_channel::bounded(256);
    // Commands are rare (a catch-up after an outage); a few suffice.
    let (commands, cmd_rx) = crossbeam_channel::bounded::<PollCommand>(16);
    let s = settings.clone();
    let worker = WorkerThread::spawn("mes-poller", "MES poller", move |stop| async move {
        let interval = Duration::from_millis(s.interval_ms.max(100));
        let mut next = tokio::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            while let Ok(c) = cmd_rx.try_recv() {
                let PollCommand::CatchUp { since_us } = c;
                if !catch_up(&s, since_us, &res_tx).await {
                    return;
                }
                // Re-poll right after a catch-up.
                next = tokio::time::Instant::now();
            }
            if tokio::time::Instant::now() >= next {
                next = tokio::time::Instant::now() + interval;
                let msg = match poll_once(&s).await {
                    Ok(snap) => PollMsg::Snapshot(snap),
                    Err(e) => PollMsg::Unreachable {
                        at_us: now_us(),
                        error: e.to_string(),
                    },
                };
                if res_tx.send(msg).is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .map_err(|e| MesError::Api {
        url: settings.api_url.clone(),
        message: e.to_string(),
    })?;
    Ok(MesPoller {
        worker,
        results,
        commands,
        settings,
    })
}
