//! Live-data panels: latency waterfall, link status, ingest counters and dead
//! letters, and the live values of the selected asset.

use bevy_egui::egui::{self, Color32, RichText};

use crate::ingest::latency::HopSummary;
use crate::ingest::{DeadLetters, Hop, LatencyStats, LinkState, LinkStatus, Origin, SampleValue};
use crate::registry::AssetRecord;
use crate::twin::{LiveValues, TwinCounters};

/// The reference end-to-end budget, PLC change → twin state on screen.
pub const BUDGET_LOW_MS: f64 = 100.0;
pub const BUDGET_HIGH_MS: f64 = 500.0;

fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

pub fn link_label(state: &LinkState) -> (String, Color32) {
    match state {
        LinkState::NotStarted => ("off".into(), Color32::GRAY),
        LinkState::Connecting => ("connecting…".into(), Color32::from_rgb(230, 180, 40)),
        LinkState::Connected => ("connected".into(), Color32::from_rgb(60, 190, 90)),
        LinkState::Disconnected(why) => (format!("down: {why}"), Color32::from_rgb(225, 60, 60)),
    }
}

/// Waterfall per origin: each hop's median as a bar starting where the
/// previous hop ended, against the 100–500 ms budget; p95/p99 in the table.
pub fn latency_ui(ui: &mut egui::Ui, stats: &LatencyStats) {
    for origin in [Origin::Mqtt, Origin::OpcUa] {
        let rows: Vec<(Hop, HopSummary)> = Hop::ALL
            .iter()
            .filter_map(|&h| stats.summary(origin, h).map(|s| (h, s)))
            .collect();
        ui.label(RichText::new(origin.label()).strong());
        if rows.is_empty() {
            ui.weak("no samples yet");
            ui.separator();
            continue;
        }
        egui::Grid::new(("latency", origin.label()))
            .striped(true)
            .num_columns(6)
            .show(ui, |ui| {
                for h in ["hop", "samples", "p50 ms", "p95 ms", "p99 ms", ""] {
                    ui.label(RichText::new(h).weak());
                }
                ui.end_row();
                let scale_ms = BUDGET_HIGH_MS;
                let mut start_ms = 0.0;
                for (hop, s) in &rows {
                    ui.label(hop.label());
                    ui.label(s.count.to_string());
                    ui.label(ms(s.p50_us));
                    ui.label(ms(s.p95_us));
                    let p99_ms = s.p99_us as f64 / 1000.0;
                    let colour = if *hop != Hop::EndToEnd || p99_ms <= BUDGET_LOW_MS {
                        ui.visuals().text_color()
                    } else if p99_ms <= BUDGET_HIGH_MS {
                        Color32::from_rgb(230, 180, 40)
                    } else {
                        Color32::from_rgb(225, 60, 60)
                    };
                    ui.colored_label(colour, ms(s.p99_us));
                    let (rect, _) =
                        ui.allocate_exact_size(egui::vec2(160.0, 10.0), egui::Sense::hover());
                    let x = |v_ms: f64| {
                        rect.left() + (v_ms / scale_ms).clamp(0.0, 1.0) as f32 * rect.width()
                    };
                    ui.painter().rect_filled(rect, 0.0, Color32::from_gray(40));
                    let budget_x = x(BUDGET_LOW_MS);
                    ui.painter().line_segment(
                        [
                            egui::pos2(budget_x, rect.top()),
                            egui::pos2(budget_x, rect.bottom()),
                        ],
                        egui::Stroke::new(1.0, Color32::from_gray(120)),
                    );
                    let p50_ms = s.p50_us as f64 / 1000.0;
                    let (a, b) = if matches!(
                        *hop,
                        Hop::EndToEnd
                            | Hop::SourceToTwin
                            | Hop::SourceToServer
                            | Hop::SourceToAdapter
                    ) {
                        (0.0, p50_ms)
                    } else {
                        (start_ms, start_ms + p50_ms)
                    };
                    let bar = egui::Rect::from_min_max(
                        egui::pos2(x(a), rect.top() + 1.0),
                        egui::pos2(x(b).max(x(a) + 1.0), rect.bottom() - 1.0),
                    );
                    ui.painter()
                        .rect_filled(bar, 0.0, Color32::from_rgb(70, 150, 230));
                    if !matches!(
                        *hop,
                        Hop::EndToEnd
                            | Hop::SourceToServer
                            | Hop::SourceToTwin
                            | Hop::SourceToAdapter
                    ) {
                        start_ms += p50_ms;
                    }
                    ui.end_row();
                }
            });
        ui.weak(format!(
            "bar scale 0–{BUDGET_HIGH_MS:.0} ms, tick at {BUDGET_LOW_MS:.0} ms (reference budget {BUDGET_LOW_MS:.0}–{BUDGET_HIGH_MS:.0} ms end to end)"
        ));
        ui.separator();
    }
    if stats.clock_skew_count > 0 {
        ui.colored_label(
            Color32::from_rgb(230, 180, 40),
            format!(
                "{} intervals were negative: source and twin clocks disagree",
                stats.clock_skew_count
            ),
        );
    }
}

/// Link states, counters and the latest dead letters.
pub fn ingest_ui(
    ui: &mut egui::Ui,
    links: &LinkStatus,
    counters: &TwinCounters,
    dead: &DeadLetters,
) {
    egui::Grid::new("links").num_columns(2).show(ui, |ui| {
        for (name, state, reconnects) in [
            ("MQTT", &links.mqtt, links.mqtt_reconnects),
            ("OPC UA", &links.opcua, links.opcua_reconnects),
        ] {
            let (text, colour) = link_label(state);
            ui.label(name);
            ui.colored_label(colour, format!("{text} ({reconnects} reconnects)"));
            ui.end_row();
        }
        ui.label("applied");
        ui.label(counters.applied.to_string());
        ui.end_row();
        ui.label("duplicates dropped");
        ui.label(counters.duplicates.to_string());
        ui.end_row();
        ui.label("out of order");
        ui.label(counters.out_of_order.to_string());
        ui.end_row();
        ui.label("stamped at arrival").on_hover_text(
            "Samples whose payload carried no source time the twin reads: their time is \
                 when the twin received them. Map the publishers' time field with \
                 [[mqtt.payload]] (the log names the field it saw).",
        );
        let colour = if counters.arrival_stamped > 0 {
            Color32::from_rgb(230, 170, 60)
        } else {
            ui.visuals().text_color()
        };
        ui.colored_label(colour, counters.arrival_stamped.to_string());
        ui.end_row();
        ui.label("historical (recorded, not live)").on_hover_text(
            "Values a source sent late from its buffer (Sparkplug is_historical): recorded \
             with their flag, never the live value.",
        );
        ui.label(counters.historical.to_string());
        ui.end_row();
        ui.label("dead letters");
        ui.label(dead.total.to_string());
        ui.end_row();
    });
    if !dead.recent.is_empty() {
        ui.separator();
        ui.label(RichText::new("Latest dead letters").strong());
        for d in dead.recent.iter().rev().take(8) {
            ui.label(format!(
                "{} `{}`: {} ({} bytes)",
                d.origin.label(),
                d.source,
                d.reason,
                d.payload_len
            ));
        }
    }
}

fn value_text(v: &SampleValue, unit: &str) -> String {
    let unit = if unit == "1" || unit == "count" {
        ""
    } else {
        unit
    };
    match v {
        SampleValue::Number(n) if n.fract() == 0.0 && n.abs() < 1e12 => format!("{n:.0} {unit}"),
        SampleValue::Number(n) => format!("{n:.2} {unit}"),
        SampleValue::Integer(i) => format!("{i} {unit}"),
        SampleValue::Bool(b) => b.to_string(),
        SampleValue::Text(t) => t.clone(),
        SampleValue::Spectrum { bin_hz, bins } => {
            let (peak_i, peak) =
                bins.iter().enumerate().fold(
                    (0, 0.0f32),
                    |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                );
            format!(
                "{} bins, peak {:.2} {unit} at {:.0} Hz",
                bins.len(),
                peak,
                peak_i as f32 * bin_hz
            )
        }
    }
}

fn age_text(age_us: i64) -> String {
    let s = age_us as f64 / 1e6;
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}

/// Live values of one asset: value with unit, age, source and quality.
pub fn live_values_ui(
    ui: &mut egui::Ui,
    asset: &AssetRecord,
    values: Option<&LiveValues>,
    now_us: i64,
) {
    egui::Grid::new("live_values")
        .striped(true)
        .num_columns(3)
        .show(ui, |ui| {
            for (i, p) in asset.properties.iter().enumerate() {
                let last = values.and_then(|v| v.0.get(i)).and_then(Option::as_ref);
                ui.label(p.name.replace('_', " "));
                match last {
                    Some(l) => {
                        ui.label(RichText::new(value_text(&l.value, &p.unit)).monospace());
                        let age = now_us - l.received_us;
                        let stale = p
                            .expected_period_ms
                            .is_some_and(|ms| age > (ms as i64) * 3000);
                        let mut text = format!("{} ago · {}", age_text(age), l.origin.label());
                        if l.historical {
                            // Only a replay shows one: the source sent it late.
                            text.push_str(" · historical (sent late from the source's buffer)");
                        }
                        if stale {
                            ui.colored_label(
                                Color32::from_rgb(230, 180, 40),
                                format!("{text} · stale"),
                            );
                        } else {
                            ui.weak(text);
                        }
                    }
                    None => {
                        ui.weak("—");
                        ui.weak(format!("[{}] no data", p.unit));
                    }
                }
                ui.end_row();
            }
        });
}
