//! Randomized robustness, seeded so a failure replays: encode → decode
//! round trips of the payload formats, and every parser fed mutated valid
//! inputs (bit flips, truncations, splices, random bytes) must answer with
//! a value or an error, never a panic (a fixed-seed sweep that runs in
//! seconds); and the coverage-guided fuzzer's corpus (`make fuzz`,
//! `fuzz/corpus/`) replayed through the same entry points.

use std::path::Path;

use mezzanine::ingest::SampleValue;
use mezzanine::ingest::decode::{decode_json, decode_spectrum, encode_json, encode_spectrum};
use mezzanine::ingest::sparkplug::{self, AliasBook};
use mezzanine::tools::fuzz::Target;

/// xorshift64*: fast, seedable, good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn finite_f64(&mut self) -> f64 {
        loop {
            let v = f64::from_bits(self.next());
            if v.is_finite() {
                return v;
            }
        }
    }
    fn text(&mut self) -> String {
        const POOL: &[char] = &[
            'a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\t', '\u{0}', 'é', 'ß', '中', '😀',
            '\u{7f}', '{', '}', '[', ']',
        ];
        (0..self.below(40))
            .map(|_| POOL[self.below(POOL.len())])
            .collect()
    }
    /// A mutated copy of `input`.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        match self.below(5) {
            0 if !v.is_empty() => {
                let i = self.below(v.len());
                v[i] ^= 1 << self.below(8);
            }
            1 => v.truncate(self.below(v.len() + 1)),
            2 if !v.is_empty() => {
                let i = self.below(v.len());
                let extra: Vec<u8> = (0..self.below(16)).map(|_| self.next() as u8).collect();
                v.splice(i..i, extra);
            }
            3 if v.len() > 1 => {
                let (a, b) = (self.below(v.len()), self.below(v.len()));
                v.swap(a, b);
            }
            _ => v = (0..self.below(256)).map(|_| self.next() as u8).collect(),
        }
        v
    }
}

const CASES: usize = 5_000;

#[test]
fn json_samples_round_trip_exactly() {
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..CASES {
        let ts_us = rng.next() as i64;
        let (value, unit) = match rng.below(3) {
            0 => (SampleValue::Number(rng.finite_f64()), "rpm"),
            1 => (SampleValue::Bool(rng.below(2) == 1), "1"),
            _ => (SampleValue::Text(rng.text()), "1"),
        };
        let bytes = encode_json(&value, ts_us, None);
        let d = decode_json(&bytes, unit).unwrap_or_else(|e| {
            panic!(
                "{value:?} at {ts_us}: {e}: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!((d.value, d.source_ts_us), (value, Some(ts_us)));
    }
}

#[test]
fn spectra_round_trip_bit_for_bit() {
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..CASES / 5 {
        let bins: Vec<f32> = (0..rng.below(2_000))
            .map(|_| f32::from_bits(rng.next() as u32))
            .collect();
        let bin_hz = f32::from_bits(rng.next() as u32);
        let ts_us = rng.next() as i64;
        let d = decode_spectrum(&encode_spectrum(bin_hz, &bins, ts_us)).expect("decodes");
        let SampleValue::Spectrum {
            bin_hz: hz,
            bins: got,
        } = d.value
        else {
            panic!("not a spectrum");
        };
        assert_eq!(hz.to_bits(), bin_hz.to_bits());
        assert_eq!(d.source_ts_us, Some(ts_us));
        let bits = |v: &[f32]| v.iter().map(|b| b.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&bins));
    }
}

#[test]
fn sparkplug_metrics_round_trip() {
    let mut rng = Rng(0x5eed_0003);
    let topic = sparkplug::parse_topic("spBv1.0/acme/DDATA/line1/robot01").expect("topic");
    for seq in 0..CASES as u64 {
        let values: Vec<(String, SampleValue)> = (0..1 + rng.below(5))
            .map(|k| {
                let v = match rng.below(3) {
                    0 => SampleValue::Number(rng.finite_f64()),
                    1 => SampleValue::Bool(rng.below(2) == 1),
                    _ => SampleValue::Text(rng.text()),
                };
                (format!("m{k}"), v)
            })
            .collect();
        let refs: Vec<(&str, &SampleValue)> = values.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let ts_ms = rng.next() >> 20;
        let bytes = sparkplug::encode(&refs, ts_ms, seq % 256);
        let (metrics, skipped) = AliasBook::default()
            .decode(&topic, &bytes)
            .expect("decodes");
        assert!(skipped.is_empty(), "{skipped:?}");
        let got: Vec<(String, SampleValue)> =
            metrics.into_iter().map(|m| (m.name, m.value)).collect();
        assert_eq!(got, values);
    }
}

/// Every parser, fed mutations of a valid input, answers without panicking.
#[test]
fn parsers_survive_mutated_inputs() {
    let mut rng = Rng(0x5eed_0004);
    let mut answered = 0usize;
    for target in Target::ALL {
        let seeds = target.seeds().expect("seeds");
        for seed in &seeds {
            let mut input = seed.clone();
            for _ in 0..CASES / seeds.len() {
                // Mutations pile up for a while, then start again from the seed.
                input = if rng.below(8) == 0 {
                    seed.clone()
                } else {
                    rng.mutate(&input)
                };
                answered += usize::from(target.feed(&input).expect("fixtures"));
            }
        }
    }
    // Some mutations stay valid (whitespace, a digit): the sweep reached
    // past the first check of each parser.
    assert!(answered > 0);
    println!(
        "{} mutated inputs over {} parsers: no panic, {answered} accepted",
        Target::ALL.len() * CASES,
        Target::ALL.len()
    );
}

/// The coverage-guided fuzzer's corpus (`make fuzz`), replayed: every input
/// that once reached new code, and every crash once fixed, stays a test.
#[test]
fn fuzz_corpus_replays_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut rows = Vec::new();
    for target in Target::ALL {
        let dir = root.join(target.name());
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect::<Vec<_>>();
        // Every seed a healthy plant sends is accepted, so a replay that
        // refuses everything (a broken fixture) cannot pass.
        for seed in target.seeds().expect("seeds") {
            assert!(
                target.feed(&seed).expect("fixtures"),
                "{}: seed refused",
                target.name()
            );
        }
        assert!(!entries.is_empty(), "{}: empty corpus", dir.display());
        let mut accepted = 0;
        for path in &entries {
            let data = std::fs::read(path).expect("corpus file");
            accepted += usize::from(target.feed(&data).expect("fixtures"));
        }
        rows.push(format!("{} {}/{}", target.name(), accepted, entries.len()));
    }
    println!("corpus replayed (accepted/inputs): {}", rows.join(", "));
}
