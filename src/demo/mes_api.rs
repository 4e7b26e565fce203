//! The MES simulator's REST API (`/api/v1/…`, axum): GET requests in,
//! the simulator's work orders, schedule (JSON and B2MML), equipment modes
//! and event log out, as JSON. Every request is counted in [`MesShared`].

use std::sync::Arc;

use serde_json::{Value, json};

use super::mes::{MesShared, OrderRecord};
use crate::ingest::now_us;
use crate::mes::rfc3339;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(super) async fn serve_api(listener: tokio::net::TcpListener, shared: Arc<MesShared>) {
    let app = axum::Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/work-orders", get(work_orders))
        .route("/api/v1/schedule", get(schedule))
        .route("/api/v1/schedule.b2mml", get(schedule_b2mml))
        .route("/api/v1/equipment", get(equipment))
        .route("/api/v1/events", get(events))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            log_request,
        ))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        bevy::log::warn!("MES simulator API: {e}");
    }
}

async fn log_request(State(sh): State<Arc<MesShared>>, req: Request, next: Next) -> Response {
    let authorized = sh.required_token.get().is_none_or(|t| {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {t}"))
    });
    if let Ok(mut r) = sh.requests.lock() {
        r.push(format!(
            "{} {}{}",
            req.method(),
            req.uri().path(),
            if authorized { "" } else { " (401)" }
        ));
    }
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
    }
    next.run(req).await
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "online", "as_of": rfc3339(now_us())}))
}

fn order_json(o: &OrderRecord) -> Value {
    json!({
        "work_order": o.work_order, "product": o.product,
        "quantity": {"value": o.quantity, "unit": o.unit},
        "routing": o.routing, "asset_id": o.asset_id, "status": o.status,
        "operation": o.operation, "good_count": o.good_count, "scrap_count": o.scrap_count,
        "hold_reason": o.hold_reason,
        "planned_start": rfc3339(o.planned_start_us), "planned_end": rfc3339(o.planned_end_us),
        "due": rfc3339(o.due_us),
        "started": o.started_us.map(rfc3339), "completed": o.completed_us.map(rfc3339),
    })
}

async fn work_orders(State(sh): State<Arc<MesShared>>) -> impl IntoResponse {
    let orders: Vec<Value> = sh.sim().orders().iter().map(order_json).collect();
    axum::Json(json!({"as_of": rfc3339(now_us()), "work_orders": orders}))
}

async fn schedule(State(sh): State<Arc<MesShared>>) -> impl IntoResponse {
    let orders: Vec<Value> = sh.sim().schedule().iter().map(order_json).collect();
    axum::Json(json!({"as_of": rfc3339(now_us()), "requests": orders}))
}

async fn schedule_b2mml(State(sh): State<Arc<MesShared>>) -> impl IntoResponse {
    let xml = crate::mes::b2mml::write(&sh.sim().schedule_b2mml(now_us()));
    ([(header::CONTENT_TYPE, "application/xml")], xml)
}

async fn equipment(State(sh): State<Arc<MesShared>>) -> impl IntoResponse {
    let eq: Vec<Value> = sh
        .sim()
        .equipment()
        .into_iter()
        .map(|(a, mode, wo)| json!({"asset_id": a, "mode": mode, "work_order": wo}))
        .collect();
    axum::Json(json!({"as_of": rfc3339(now_us()), "equipment": eq}))
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    since_us: Option<i64>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Largest page the API hands out; also the page without a `limit`.
const MAX_PAGE_EVENTS: usize = 1_000;

/// The event log since a time, a page at a time: `next_cursor` is set
/// while more events follow.
async fn events(State(sh): State<Arc<MesShared>>, q: Query<EventsQuery>) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m).into_response();
    let Some(since) = q.since_us else {
        return bad("since_us (microseconds since the Unix epoch) is required".into());
    };
    let limit = q.limit.unwrap_or(MAX_PAGE_EVENTS);
    if !(1..=MAX_PAGE_EVENTS).contains(&limit) {
        return bad(format!("limit {limit} is not in 1..={MAX_PAGE_EVENTS}"));
    }
    let after = match q.cursor.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => return bad("cursor: use the next_cursor of the previous page".into()),
    };
    let (ev, next) = sh.sim().events_page(since, after, limit);
    axum::Json(json!({"as_of": rfc3339(now_us()), "events": ev,
                      "next_cursor": next.map(|n| n.to_string())}))
    .into_response()
}
