//! The audit trail: quality investigations (opened, notes, conclusion,
//! sign-off) and discrepancy acknowledgements and resolutions, as records
//! appended to `audit_log` and never changed.
//!
//! In: [`AuditEntry`]s (through the writer, or [`append`] on a connection).
//! Out: records numbered from 1, each carrying the SHA-256 of the one before
//! (`prev_hash`) and its own (`hash`, over every field and `prev_hash`), and
//! [`verify`], which recomputes the chain and names the first record whose
//! content or link does not match. An edit is a new record with the old
//! value in `previous_value`: the trail only grows. Hashes make tampering
//! visible; they do not stop someone with the file from rewriting the whole
//! chain (keep the head hash elsewhere — a signed report, the evidence
//! pack — to catch that).

use duckdb::{Connection, OptionalExt, params};
use sha2::{Digest, Sha256};

use super::{HistoryError, sql_err as q};

/// The hash a chain starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub ts_us: i64,
    /// IANA zone the time was shown in when signed (e.g. Europe/Paris).
    pub time_zone: String,
    /// e.g. `investigation.opened`, `investigation.note`,
    /// `investigation.conclusion`, `investigation.signed`,
    /// `discrepancy.acknowledged`, `discrepancy.resolved`.
    pub kind: String,
    /// What the record is about: an investigation id, a discrepancy id.
    pub subject: String,
    pub field: String,
    pub value: Option<String>,
    /// For an edit: the value it replaces.
    pub previous_value: Option<String>,
    pub signer: Option<String>,
    /// The meaning of a signature (e.g. "approved: root cause confirmed").
    pub meaning: Option<String>,
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

fn field(h: &mut Sha256, name: &str, v: Option<&str>) {
    // Length-prefixed, so no two different records hash alike by moving a
    // separator.
    h.update(name.as_bytes());
    match v {
        Some(s) => {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        None => h.update(u64::MAX.to_le_bytes()),
    }
}

/// The hash of record `seq` with `entry` after `prev_hash`, hex.
pub fn record_hash(seq: i64, e: &AuditEntry, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"mezzanine-audit-v1");
    field(&mut h, "prev", Some(prev_hash));
    h.update(seq.to_le_bytes());
    h.update(e.ts_us.to_le_bytes());
    field(&mut h, "zone", Some(&e.time_zone));
    field(&mut h, "kind", Some(&e.kind));
    field(&mut h, "subject", Some(&e.subject));
    field(&mut h, "field", Some(&e.field));
    field(&mut h, "value", e.value.as_deref());
    field(&mut h, "previous", e.previous_value.as_deref());
    field(&mut h, "signer", e.signer.as_deref());
    field(&mut h, "meaning", e.meaning.as_deref());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends one record after the last (inside the caller's transaction, if
/// any); returns it.
pub fn append(c: &Connection, e: &AuditEntry) -> Result<AuditRecord, HistoryError> {
    let last: Option<(i64, String)> = c
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(q("reading the audit trail's last record"))?;
    let (seq, prev_hash) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let hash = record_hash(seq, e, &prev_hash);
    c.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            seq,
            e.ts_us,
            e.time_zone,
            e.kind,
            e.subject,
            e.field,
            e.value,
            e.previous_value,
            e.signer,
            e.meaning,
            prev_hash,
            hash
        ],
    )
    .map_err(q("appending to the audit trail"))?;
    Ok(AuditRecord {
        seq,
        entry: e.clone(),
        prev_hash,
        hash,
    })
}

/// Every record, in order (optionally those about one subject).
pub fn records(c: &Connection, subject: Option<&str>) -> Result<Vec<AuditRecord>, HistoryError> {
    let mut st = c
        .prepare(
            "SELECT seq, ts_us, time_zone, kind, subject, field, value, previous_value, signer,
                    meaning, prev_hash, hash
             FROM audit_log WHERE ? IS NULL OR subject = ? ORDER BY seq",
        )
        .map_err(q("reading the audit trail"))?;
    let rows = st
        .query_map(params![subject, subject], |r| {
            Ok(AuditRecord {
                seq: r.get(0)?,
                entry: AuditEntry {
                    ts_us: r.get(1)?,
                    time_zone: r.get(2)?,
                    kind: r.get(3)?,
                    subject: r.get(4)?,
                    field: r.get(5)?,
                    value: r.get(6)?,
                    previous_value: r.get(7)?,
                    signer: r.get(8)?,
                    meaning: r.get(9)?,
                },
                prev_hash: r.get(10)?,
                hash: r.get(11)?,
            })
        })
        .map_err(q("reading the audit trail"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(q("reading the audit trail"))
}

/// Recomputes the chain: Ok((records, head hash)) or the first broken record.
pub fn verify(c: &Connection) -> Result<Result<(usize, String), ChainBreak>, HistoryError> {
    let recs = records(c, None)?;
    let mut prev = GENESIS.to_string();
    for (i, r) in recs.iter().enumerate() {
        let want_seq = i as i64 + 1;
        if r.seq != want_seq {
            return Ok(Err(ChainBreak {
                seq: r.seq,
                reason: format!(
                    "record number {} where {want_seq} was expected (a record is missing or was added out of order)",
                    r.seq
                ),
            }));
        }
        if r.prev_hash != prev {
            return Ok(Err(ChainBreak {
                seq: r.seq,
                reason: "its link to the record before does not match that record's hash".into(),
            }));
        }
        let h = record_hash(r.seq, &r.entry, &r.prev_hash);
        if h != r.hash {
            return Ok(Err(ChainBreak {
                seq: r.seq,
                reason: format!(
                    "its content does not match its hash (stored {}…, recomputed {}…): it was changed after it was written",
                    &r.hash.get(..12).unwrap_or(&r.hash),
                    &h[..12]
                ),
            }));
        }
        prev = r.hash.clone();
    }
    Ok(Ok((recs.len(), prev)))
}
