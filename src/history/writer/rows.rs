//! Row encoding and the batch's SQL: samples in, rows of the `samples`,
//! `blobs`, `transitions` and `dead_letters` tables out, appended with
//! DuckDB's Appender; plus the in-memory idempotency keys that drop a
//! duplicate (same property, same source time) before it reaches a table,
//! and the state transitions derived from each asset's `state` property.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use duckdb::{Connection, params};

use crate::history::query::StoredValue;
use crate::history::store::PropIds;
use crate::history::{HistoryError, sql_err as q};
use crate::ingest::{DeadLetter, SampleValue};
use crate::registry::{AssetIdx, AssetRegistry};

pub(super) struct SampleRow {
    pub(super) ts_us: i64,
    pub(super) prop_id: i32,
    pub(super) value: Option<f64>,
    pub(super) text: Option<String>,
    pub(super) blob_id: Option<i64>,
    pub(super) quality: u8,
    pub(super) origin: u8,
    pub(super) received_us: i64,
    pub(super) work_order: Option<Arc<str>>,
    pub(super) seq: i64,
    /// Recorded while the MES was unreachable: the work order is unknown
    /// until the back-fill after it returns.
    pub(super) context_unavailable: bool,
    /// Sent late from the source's buffer (Sparkplug `is_historical`).
    pub(super) historical: bool,
    /// For a sample stamped at arrival: its MQTT packet id (to know a
    /// redelivery after a restart).
    pub(super) mqtt_pkid: Option<u16>,
    pub(super) typed: Typed,
}

pub(super) struct BlobRow {
    pub(super) blob_id: i64,
    pub(super) ts_us: i64,
    pub(super) prop_id: i32,
    pub(super) bin_hz: f32,
    pub(super) bytes: Vec<u8>,
}

/// One state transition: (source time, asset id, state code, reason).
pub(super) type TransitionRow = (i64, String, String, Option<String>);

/// A value as its row's columns: number, text, spectrum (as a blob row,
/// numbered from `next_blob_id`, which it advances).
pub(super) fn encode_value(
    value: SampleValue,
    ts_us: i64,
    prop_id: i32,
    next_blob_id: &mut i64,
) -> (Option<f64>, Option<String>, Option<BlobRow>, Typed) {
    let plain = Typed::default();
    match value {
        SampleValue::Number(v) => (Some(v), None, None, plain),
        // Rollups and trends read `value`; the type and the exact integer
        // ride beside it.
        SampleValue::Bool(b) => {
            let (v, t) = Typed::boolean(b);
            (v, None, None, t)
        }
        SampleValue::Integer(i) => {
            let (v, t) = Typed::integer(i);
            (v, None, None, t)
        }
        SampleValue::Text(t) => (None, Some(t), None, plain),
        SampleValue::Spectrum { bin_hz, bins } => {
            let blob_id = *next_blob_id;
            *next_blob_id += 1;
            let mut bytes = Vec::with_capacity(bins.len() * 4);
            for b in bins.iter() {
                bytes.extend_from_slice(&b.to_le_bytes());
            }
            (
                None,
                None,
                Some(BlobRow {
                    blob_id,
                    ts_us,
                    prop_id,
                    bin_hz,
                    bytes,
                }),
                plain,
            )
        }
    }
}

/// `vtype` of a row holding a boolean (1 or 0 in `value`).
pub(crate) const VTYPE_BOOL: u8 = 1;
/// `vtype` of a row holding a 64-bit integer (exact in `ivalue`, rounded
/// in `value`). NULL: a number, a text or a spectrum, as the columns say.
pub(crate) const VTYPE_INT: u8 = 2;

/// A value's type beyond its `value` column: what a replay and an export
/// need to give back what the source sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Typed {
    pub(super) ivalue: Option<i64>,
    pub(super) vtype: Option<u8>,
}

impl Typed {
    /// A boolean's `value` (1 or 0) and its type.
    fn boolean(b: bool) -> (Option<f64>, Typed) {
        let t = Typed {
            ivalue: None,
            vtype: Some(VTYPE_BOOL),
        };
        (Some(f64::from(u8::from(b))), t)
    }

    /// An integer's rounded `value` and the exact one.
    fn integer(i: i64) -> (Option<f64>, Typed) {
        let t = Typed {
            ivalue: Some(i),
            vtype: Some(VTYPE_INT),
        };
        (Some(i as f64), t)
    }
}

/// The stored value's columns (the inverse of [`encode_value`], with the
/// spectrum left in its blob).
pub(super) fn stored_columns(v: StoredValue) -> (Option<f64>, Option<String>, Option<i64>, Typed) {
    match v {
        StoredValue::Number(x) => (Some(x), None, None, Typed::default()),
        StoredValue::Bool(b) => {
            let (v, t) = Typed::boolean(b);
            (v, None, None, t)
        }
        StoredValue::Integer(i) => {
            let (v, t) = Typed::integer(i);
            (v, None, None, t)
        }
        StoredValue::Text(t) => (None, Some(t), None, Typed::default()),
        StoredValue::Spectrum { blob_id, .. } => (None, None, Some(blob_id), Typed::default()),
        StoredValue::Missing => (None, None, None, Typed::default()),
    }
}

/// Appends the batch's rows, inside the caller's transaction.
pub(super) fn append(
    c: &Connection,
    samples: &[SampleRow],
    blobs: &[BlobRow],
    transitions: &[TransitionRow],
    dead: &[DeadLetter],
) -> duckdb::Result<()> {
    if !samples.is_empty() {
        let mut a = c.appender("samples")?;
        for r in samples {
            a.append_row(params![
                r.ts_us,
                r.prop_id,
                r.value,
                r.text.as_deref(),
                r.blob_id,
                r.quality,
                r.origin,
                r.received_us,
                r.work_order.as_deref(),
                r.seq,
                r.context_unavailable,
                r.historical,
                r.mqtt_pkid,
                r.typed.ivalue,
                r.typed.vtype
            ])?;
        }
        a.flush()?;
    }
    if !blobs.is_empty() {
        let mut a = c.appender("blobs")?;
        for r in blobs {
            a.append_row(params![
                r.blob_id,
                r.ts_us,
                r.prop_id,
                r.bin_hz,
                &r.bytes[..]
            ])?;
        }
        a.flush()?;
    }
    if !transitions.is_empty() {
        let mut a = c.appender("transitions")?;
        for (ts, asset, state, reason) in transitions {
            a.append_row(params![ts, asset, state, reason.as_deref()])?;
        }
        a.flush()?;
    }
    if !dead.is_empty() {
        let mut a = c.appender("dead_letters")?;
        for d in dead {
            a.append_row(params![
                d.received_us,
                d.origin.label(),
                d.source,
                d.reason,
                d.payload_len as i64,
                &d.payload_head[..]
            ])?;
        }
        a.flush()?;
    }
    Ok(())
}

/// A fast hasher for the integer keys of the hot path (the idempotency set
/// is touched twice per sample; SipHash's cost buys nothing for them).
#[derive(Default, Clone, Copy)]
pub(super) struct IntHasher(u64);

impl IntHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }
    fn write_i32(&mut self, i: i32) {
        self.add(u64::from(i as u32));
    }
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
}

/// What tells two values of one property at one source time apart: the
/// exact integer, the number's bits, or a hash of the text or of the
/// spectrum.
pub(super) fn fingerprint(
    value: Option<f64>,
    ivalue: Option<i64>,
    text: Option<&str>,
    blob: Option<(f32, &[u8])>,
) -> u64 {
    use std::hash::Hasher;
    if let Some(i) = ivalue {
        return (i as u64).rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    }
    if let Some(v) = value {
        return v.to_bits();
    }
    let mut h = IntHasher::default();
    match (text, blob) {
        (Some(t), _) => {
            h.write_u64(1);
            h.write(t.as_bytes());
        }
        (None, Some((bin_hz, bytes))) => {
            h.write_u64(2);
            h.write_u64(u64::from(bin_hz.to_bits()));
            h.write(bytes);
        }
        (None, None) => h.write_u64(3),
    }
    h.finish()
}

/// An idempotency key: property id, source time, value fingerprint. For a
/// sample stamped at arrival a second key puts its MQTT packet id in the
/// time's place ([`pkid_slot`]).
pub(super) type DedupeKey = (i32, i64, u64);

/// Where a packet id goes in a [`DedupeKey`]: below any time the
/// plausibility window lets in, so never a source time.
pub(super) fn pkid_slot(pkid: u16) -> i64 {
    i64::MIN + i64::from(pkid)
}

pub(super) type IntBuild = std::hash::BuildHasherDefault<IntHasher>;

/// The keys of the newest samples, oldest forgotten first. The value is
/// part of the key: a redelivery is a duplicate, but two different values
/// stamped with the same source time (a coarse PLC clock) are both kept.
pub(super) struct Dedupe {
    seen: HashSet<DedupeKey, IntBuild>,
    order: VecDeque<DedupeKey>,
    capacity: usize,
}

impl Dedupe {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::default(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// The keys of the end of the file (up to `capacity`, from the last
    /// five minutes of source time), so a redelivery after a restart is
    /// still recognised as a duplicate.
    pub(super) fn seed(&mut self, conn: &Connection, last_ts_us: i64) -> Result<(), HistoryError> {
        let from = last_ts_us.saturating_sub(300_000_000);
        let keys: Vec<(i32, i64, u64, Option<u16>)> = {
            let mut st = conn
                .prepare(
                    "SELECT s.prop_id, s.ts_us, s.value, s.text, b.bin_hz, b.bins_f32le, \
                     s.mqtt_pkid, s.ivalue \
                     FROM samples s LEFT JOIN blobs b ON b.blob_id = s.blob_id \
                     WHERE s.ts_us >= ? ORDER BY s.ts_us DESC LIMIT ?",
                )
                .map_err(q("reading recent keys"))?;
            let rows = st
                .query_map(params![from, self.capacity as i64], |r| {
                    let value: Option<f64> = r.get(2)?;
                    let text: Option<String> = r.get(3)?;
                    let bin_hz: Option<f32> = r.get(4)?;
                    let bytes: Option<Vec<u8>> = r.get(5)?;
                    let blob = bin_hz.zip(bytes.as_deref());
                    let pkid: Option<u16> = r.get(6)?;
                    let ivalue: Option<i64> = r.get(7)?;
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        fingerprint(value, ivalue, text.as_deref(), blob),
                        pkid,
                    ))
                })
                .map_err(q("reading recent keys"))?;
            rows.collect::<Result<_, _>>()
                .map_err(q("reading recent keys"))?
        };
        for (prop, ts, print, pkid) in keys.into_iter().rev() {
            self.first_time((prop, ts, print));
            if let Some(p) = pkid {
                self.refresh((prop, pkid_slot(p), print));
            }
        }
        Ok(())
    }

    pub(super) fn contains(&self, k: &DedupeKey) -> bool {
        self.seen.contains(k)
    }

    /// Keeps `k` as the newest key (a packet id is reused: the latest
    /// sample that carried it is the one a redelivery repeats).
    pub(super) fn refresh(&mut self, k: DedupeKey) {
        if self.seen.contains(&k) {
            self.order.retain(|o| o != &k);
            self.seen.remove(&k);
        }
        self.first_time(k);
    }

    /// True the first time a key is offered.
    pub(super) fn first_time(&mut self, k: DedupeKey) -> bool {
        if !self.seen.insert(k) {
            return false;
        }
        self.order.push_back(k);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// Each asset's last recorded state, to record transitions only.
pub(super) struct Transitions {
    /// prop id → asset id, for the `state` property of each asset.
    state_props: HashMap<i32, String>,
    last: HashMap<String, (i64, String, Option<String>)>,
}

impl Transitions {
    /// The `state` properties of the registry and the file's last states.
    pub(super) fn load(
        conn: &Connection,
        registry: &AssetRegistry,
        props: &PropIds,
    ) -> Result<Self, HistoryError> {
        let mut state_props = HashMap::new();
        for (ai, a) in registry.assets().iter().enumerate() {
            if let Some(r) = registry.property_by_name(AssetIdx(ai as u32), "state")
                && let Some(id) = props.id(r)
            {
                state_props.insert(id, a.id.clone());
            }
        }
        let mut last = HashMap::new();
        let mut st = conn
            .prepare(
                "SELECT asset_id, max(ts_us), arg_max(state, ts_us), arg_max_null(reason, ts_us)
                 FROM transitions GROUP BY asset_id",
            )
            .map_err(q("reading the last states"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(q("reading the last states"))?;
        for row in rows {
            let (a, ts, s, reason) = row.map_err(q("reading the last states"))?;
            last.insert(a, (ts, s, reason));
        }
        Ok(Self { state_props, last })
    }

    /// The transition a sample makes, if it is a newer, different state of
    /// an asset's `state` property.
    pub(super) fn offer(
        &mut self,
        prop_id: i32,
        ts_us: i64,
        code: Option<&String>,
        reason: &Option<String>,
    ) -> Option<TransitionRow> {
        let (asset_id, code) = (self.state_props.get(&prop_id)?, code?);
        let prev = self.last.get(asset_id);
        let newer = prev.is_none_or(|(t, _, _)| *t <= ts_us);
        let changed = prev.is_none_or(|(_, st, r)| st != code || r != reason);
        if !(newer && changed) {
            return None;
        }
        self.last
            .insert(asset_id.clone(), (ts_us, code.clone(), reason.clone()));
        Some((ts_us, asset_id.clone(), code.clone(), reason.clone()))
    }
}

/// The `part_serial` property of each asset: prop id → asset id.
pub(super) fn part_props(registry: &AssetRegistry, props: &PropIds) -> HashMap<i32, String> {
    let mut m = HashMap::new();
    for (ai, a) in registry.assets().iter().enumerate() {
        if let Some(r) = registry.property_by_name(AssetIdx(ai as u32), "part_serial")
            && let Some(id) = props.id(r)
        {
            m.insert(id, a.id.clone());
        }
    }
    m
}

/// A part entering (or, with an empty serial, leaving) a station, for every
/// `part_serial` sample of the batch.
pub(super) fn append_part_events(
    c: &Connection,
    samples: &[SampleRow],
    part_props: &HashMap<i32, String>,
) -> duckdb::Result<()> {
    if part_props.is_empty() {
        return Ok(());
    }
    let mut a = None;
    for r in samples {
        if let (Some(asset), Some(serial)) = (part_props.get(&r.prop_id), r.text.as_deref()) {
            if a.is_none() {
                a = Some(c.appender("part_events")?);
            }
            if let Some(a) = a.as_mut() {
                a.append_row(params![r.ts_us, asset, serial, r.work_order.as_deref()])?;
            }
        }
    }
    if let Some(mut a) = a {
        a.flush()?;
    }
    Ok(())
}
