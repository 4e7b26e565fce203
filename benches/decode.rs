//! Decoder throughput: JSON UNS payloads, binary spectra, and the full MQTT
//! decode path (registry lookup + decode) per message.

// A benchmark's fixed inputs: a failure to parse them is the bench failing.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mezzanine::demo::plant::PlantSpec;
use mezzanine::ingest::SampleValue;
use mezzanine::ingest::decode::{decode_json, decode_spectrum, encode_json, encode_spectrum};
use mezzanine::ingest::mqtt::{decode_publish, decode_sparkplug};
use mezzanine::ingest::sparkplug::{self, AliasBook};
use mezzanine::registry::AssetRegistry;

fn decoders(c: &mut Criterion) {
    let json = encode_json(&SampleValue::Number(9123.5), 1_764_000_000_000_000, None);
    let state = encode_json(
        &SampleValue::Text("down".into()),
        1_764_000_000_000_000,
        Some("tool breakage"),
    );
    let bins: Vec<f32> = (0..64).map(|i| i as f32 * 0.01).collect();
    let spectrum = encode_spectrum(10.0, &bins, 1_764_000_000_000_000);
    let reg = AssetRegistry::new(PlantSpec::demo().registry());
    let topic = "acme/lyon/machining/line1/mill01/spindle_speed";

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("json_number", |b| {
        b.iter(|| decode_json(black_box(&json), "rpm"))
    });
    g.bench_function("json_state_with_reason", |b| {
        b.iter(|| decode_json(black_box(&state), "1"))
    });
    g.bench_function("spectrum_64_bins", |b| {
        b.iter(|| decode_spectrum(black_box(&spectrum)))
    });
    g.bench_function("mqtt_publish_resolve_and_decode", |b| {
        let layout = mezzanine::ingest::payload::JsonLayout::preset(
            mezzanine::config::PayloadPreset::Mezzanine,
        );
        b.iter(|| decode_publish(&reg, black_box(topic), black_box(&json), 0, &layout))
    });
    let robot_metrics = [
        ("state", SampleValue::Text("running".into())),
        ("power", SampleValue::Number(3.2)),
        ("axis1_temp", SampleValue::Number(41.5)),
        ("cycle_count", SampleValue::Number(1234.0)),
    ];
    let named: Vec<(&str, &SampleValue)> = robot_metrics.iter().map(|(n, v)| (*n, v)).collect();
    let ddata = sparkplug::encode(&named, 1_764_000_000_000, 1);
    let topic_name = "spBv1.0/acme/DDATA/line1/robot01";
    let topic = sparkplug::parse_topic(topic_name).expect("topic");
    let mut book = AliasBook::default();
    g.throughput(Throughput::Elements(robot_metrics.len() as u64));
    g.bench_function("sparkplug_ddata_4_metrics_resolve_and_decode", |b| {
        b.iter(|| decode_sparkplug(&reg, &mut book, topic_name, &topic, black_box(&ddata), 0))
    });
    g.finish();
}

criterion_group!(benches, decoders);
criterion_main!(benches);
