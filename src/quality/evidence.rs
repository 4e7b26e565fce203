//! The evidence pack: one failed part, everything an investigator or an
//! auditor needs, readable without the app.
//!
//! In: the history file, the registry, a serial. Out: a folder —
//! `genealogy.json` and `genealogy.csv` (operations in routing order with
//! order and material lot), `measurements.csv`, `differences.csv` (the
//! ranked list), `samples.parquet` (every sample of the part's assets in
//! its operation windows), `spectra.parquet` (every spectrum in those
//! windows, one row per bin), `plot-<k>-<asset>-<signal>.png` (the top
//! differences against the good-part envelope), `audit.csv` (the trail's
//! records about this part), `report.pdf`, and `manifest.sha256`
//! (`sha256sum -c` format, every other file) with `manifest.json` (which
//! also holds the whole audit trail's state: intact with its head hash, or
//! where it breaks). Written into `<out>.partial`, then renamed: a pack is
//! complete or absent.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use duckdb::{Connection, params};
use sha2::{Digest, Sha256};

use super::QualityError;
use super::compare::{Difference, Ranking, rank};
use super::genealogy::sql;
use crate::history::store::PropIds;
use crate::pdf::{MARGIN, PAGE_H, PAGE_W, Page, assemble, read_png};
use crate::registry::AssetRegistry;

/// Plots the pack draws (most different first).
pub const PLOTS: usize = 6;

/// What a pack holds.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceReport {
    pub dir: PathBuf,
    /// File names, with their SHA-256.
    pub files: Vec<(String, String)>,
    pub samples: u64,
    pub spectra: u64,
    pub ranking_ms: f64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QualityError + '_ {
    move |source| QualityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A time with its zone, e.g. `2026-11-30 15:02:11.250 CET (UTC+01:00)`.
pub fn at(ts_us: i64, tz: &str) -> String {
    let ts = jiff::Timestamp::from_microsecond(ts_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    match ts.in_tz(tz) {
        Ok(z) => z.strftime("%Y-%m-%d %H:%M:%S%.3f %Z (UTC%:z)").to_string(),
        Err(_) => ts.strftime("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
    }
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes the pack for `serial` into `out` (replaced if it exists).
#[allow(clippy::too_many_arguments)]
pub fn write_evidence(
    conn: &Connection,
    registry: &AssetRegistry,
    props: &PropIds,
    serial: &str,
    out: &Path,
    n_good: usize,
    mut progress: impl FnMut(f64, &str),
) -> Result<EvidenceReport, QualityError> {
    let tz = registry.plant().time_zone.clone();
    progress(0.05, "comparing with good parts");
    let r = rank(conn, registry, props, serial, n_good)?;
    let partial = out.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    let write = |name: &str, bytes: &[u8]| -> Result<(), QualityError> {
        let p = partial.join(name);
        std::fs::write(&p, bytes).map_err(io(&p))
    };
    let g = &r.genealogy;
    progress(0.2, "genealogy and measurements");
    write("genealogy.json", genealogy_json(&r, &tz).as_bytes())?;
    let mut gc =
        String::from("operation,asset_id,start,end,start_us,end_us,work_order,material_lot\n");
    for o in &g.operations {
        let _ = writeln!(
            gc,
            "{},{},{},{},{},{},{},{}",
            o.seq,
            csv(&o.asset_id),
            csv(&at(o.start_us, &tz)),
            o.end_us.map(|e| csv(&at(e, &tz))).unwrap_or_default(),
            o.start_us,
            o.end_us.map(|e| e.to_string()).unwrap_or_default(),
            csv(o.work_order.as_deref().unwrap_or("")),
            csv(o.material_lot.as_deref().unwrap_or(""))
        );
    }
    write("genealogy.csv", gc.as_bytes())?;
    let mut mc = String::from(
        "asset_id,feature,value,unit,nominal,tolerance,limit,excess,in_tolerance,measured\n",
    );
    for m in &g.measured {
        let _ = writeln!(
            mc,
            "{},{},{},{},{},{},{},{},{},{}",
            csv(&m.asset_id),
            csv(&m.name),
            m.value,
            csv(&m.unit),
            m.nominal,
            m.tolerance,
            if m.upper_only { "upper" } else { "both" },
            m.excess(),
            m.in_tolerance(),
            csv(&at(m.ts_us, &tz))
        );
    }
    write("measurements.csv", mc.as_bytes())?;
    let mut dc = String::from(
        "rank,operation,asset_id,signal,unit,score,alarm,value,good_median,good_spread,good_parts,at_hz\n",
    );
    for (k, d) in r.differences.iter().enumerate() {
        let _ = writeln!(
            dc,
            "{},{},{},{},{},{:.3},{},{},{},{},{},{}",
            k + 1,
            d.operation,
            csv(&d.asset_id),
            csv(&d.property),
            csv(&d.unit),
            d.score,
            d.alarm(),
            d.value,
            d.median,
            d.spread,
            d.n_good,
            d.at_hz.map(|h| h.to_string()).unwrap_or_default()
        );
    }
    write("differences.csv", dc.as_bytes())?;

    progress(0.35, "samples and spectra to Parquet");
    let (samples, spectra) = export_windows(conn, &r, &partial)?;

    progress(0.6, "plots");
    let mut pictures = Vec::new();
    for (k, d) in r.differences.iter().take(PLOTS).enumerate() {
        let name = format!("plot-{}-{}-{}.png", k + 1, d.asset_id, d.property);
        let png = plot_png(d, &plot_title(k, d));
        write(&name, &png)?;
        pictures.push(partial.join(&name));
    }

    let trail = crate::history::audit::records(conn, Some(serial))?;
    let mut ac =
        String::from("seq,time,time_zone,kind,field,value,previous_value,signer,meaning,hash\n");
    for a in &trail {
        let e = &a.entry;
        let _ = writeln!(
            ac,
            "{},{},{},{},{},{},{},{},{},{}",
            a.seq,
            csv(&at(e.ts_us, &e.time_zone)),
            csv(&e.time_zone),
            csv(&e.kind),
            csv(&e.field),
            csv(e.value.as_deref().unwrap_or("")),
            csv(e.previous_value.as_deref().unwrap_or("")),
            csv(e.signer.as_deref().unwrap_or("")),
            csv(e.meaning.as_deref().unwrap_or("")),
            a.hash
        );
    }
    write("audit.csv", ac.as_bytes())?;

    progress(0.8, "report");
    let pdf = report_pdf(&r, &trail, &tz, samples, spectra, &pictures);
    write("report.pdf", &pdf)?;

    progress(0.95, "manifest");
    let mut names: Vec<String> = std::fs::read_dir(&partial)
        .map_err(io(&partial))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut files = Vec::new();
    let mut manifest = String::new();
    let mut mj = Vec::new();
    for n in &names {
        let p = partial.join(n);
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        let h = sha256_hex(&bytes);
        let _ = writeln!(manifest, "{h}  {n}");
        mj.push(serde_json::json!({"file": n, "sha256": h, "bytes": bytes.len()}));
        files.push((n.clone(), h));
    }
    write("manifest.sha256", manifest.as_bytes())?;
    // The whole trail's state when the pack was written: a later rewrite of
    // the chain shows against this head hash.
    let chain = match crate::history::audit::verify(conn)? {
        Ok((records, head)) => {
            serde_json::json!({"intact": true, "records": records, "head_hash": head})
        }
        Err(b) => serde_json::json!({"intact": false, "broken_at": b.seq, "reason": b.reason}),
    };
    let manifest_json = serde_json::json!({
        "audit_trail": chain,
        "serial": serial,
        "written": at(crate::ingest::now_us(), &tz),
        "producer": concat!("Mezzanine ", env!("CARGO_PKG_VERSION")),
        "good_parts_per_operation": n_good,
        "files": mj,
    });
    write(
        "manifest.json",
        serde_json::to_string_pretty(&manifest_json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io(out))?;
    }
    std::fs::rename(&partial, out).map_err(io(out))?;
    progress(1.0, "done");
    Ok(EvidenceReport {
        dir: out.to_path_buf(),
        files,
        samples,
        spectra,
        ranking_ms: r.elapsed_ms,
    })
}

/// Checks a pack's `manifest.sha256`: the files whose hash differs (or that
/// are missing).
pub fn verify_manifest(dir: &Path) -> Result<Vec<String>, QualityError> {
    let m = dir.join("manifest.sha256");
    let text = std::fs::read_to_string(&m).map_err(io(&m))?;
    let mut bad = Vec::new();
    for line in text.lines() {
        let Some((h, name)) = line.split_once("  ") else {
            bad.push(format!("manifest line `{line}`"));
            continue;
        };
        match std::fs::read(dir.join(name)) {
            Ok(b) if sha256_hex(&b) == h => {}
            Ok(_) => bad.push(format!("{name}: hash differs")),
            Err(e) => bad.push(format!("{name}: {e}")),
        }
    }
    Ok(bad)
}

fn genealogy_json(r: &Ranking, tz: &str) -> String {
    let g = &r.genealogy;
    let v = serde_json::json!({
        "serial": g.serial,
        "verdict": format!("{:?}", g.verdict()).to_lowercase(),
        "reasons": g.reasons(),
        "work_order": g.work_order(),
        "material_lots": g.material_lots(),
        "time_zone": tz,
        "operations": g.operations.iter().map(|o| serde_json::json!({
            "operation": o.seq, "asset_id": o.asset_id,
            "start": at(o.start_us, tz), "end": o.end_us.map(|e| at(e, tz)),
            "start_us": o.start_us, "end_us": o.end_us,
            "work_order": o.work_order, "material_lot": o.material_lot,
        })).collect::<Vec<_>>(),
        "measured": g.measured.iter().map(|m| serde_json::json!({
            "asset_id": m.asset_id, "feature": m.name, "value": m.value, "unit": m.unit,
            "nominal": m.nominal, "tolerance": m.tolerance, "upper_only": m.upper_only,
            "in_tolerance": m.in_tolerance(), "measured": at(m.ts_us, tz),
        })).collect::<Vec<_>>(),
        "dispositions": g.dispositions.iter().map(|d| serde_json::json!({
            "disposition": d.disposition, "defect_codes": d.defect_codes,
            "work_order": d.work_order, "at": at(d.ts_us, tz),
        })).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// The operation windows as a DuckDB `VALUES` list.
fn windows_sql(r: &Ranking) -> Option<String> {
    let rows: Vec<String> = r
        .genealogy
        .operations
        .iter()
        .filter_map(|o| {
            Some(format!(
                "({}, '{}', {}, {})",
                o.seq,
                o.asset_id.replace('\'', "''"),
                o.start_us,
                o.end_us?
            ))
        })
        .collect();
    (!rows.is_empty()).then(|| rows.join(", "))
}

/// Every sample and every spectrum of the part's assets in its operation
/// windows, to Parquet; returns (samples, spectra).
fn export_windows(conn: &Connection, r: &Ranking, dir: &Path) -> Result<(u64, u64), QualityError> {
    let Some(values) = windows_sql(r) else {
        return Ok((0, 0));
    };
    let path = |n: &str| dir.join(n).to_string_lossy().replace('\'', "''");
    let samples: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM samples s JOIN properties p USING (prop_id)
                 JOIN (VALUES {values}) w(operation, asset_id, start_us, end_us)
                   ON p.asset_id = w.asset_id AND s.ts_us >= w.start_us AND s.ts_us < w.end_us"
            ),
            [],
            |row| row.get(0),
        )
        .map_err(sql("counting window samples"))?;
    conn.execute_batch(&format!(
        "COPY (SELECT w.operation, p.asset_id, p.property, p.unit, to_timestamp(s.ts_us / 1e6) AS ts,
                      s.ts_us, s.value, s.text, s.blob_id, s.work_order, s.quality, s.origin,
                      to_timestamp(s.received_us / 1e6) AS received
               FROM samples s JOIN properties p USING (prop_id)
               JOIN (VALUES {values}) w(operation, asset_id, start_us, end_us)
                 ON p.asset_id = w.asset_id AND s.ts_us >= w.start_us AND s.ts_us < w.end_us
               ORDER BY w.operation, s.ts_us, p.property)
         TO '{}' (FORMAT parquet)",
        path("samples.parquet")
    ))
    .map_err(sql("writing samples.parquet"))?;
    // Spectra: the bins are little-endian f32 in the history; one row per
    // bin here, which every Parquet reader takes without a decoder.
    let mut st = conn
        .prepare(&format!(
            "SELECT w.operation, p.asset_id, p.property, p.unit, b.blob_id, b.ts_us, b.bin_hz, b.bins_f32le
             FROM blobs b JOIN properties p USING (prop_id)
             JOIN (VALUES {values}) w(operation, asset_id, start_us, end_us)
               ON p.asset_id = w.asset_id AND b.ts_us >= w.start_us AND b.ts_us < w.end_us
             ORDER BY b.ts_us"
        ))
        .map_err(sql("reading window spectra"))?;
    type Row = (
        i32,
        String,
        String,
        String,
        i64,
        i64,
        Option<f32>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = st
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
            ))
        })
        .map_err(sql("reading window spectra"))?
        .collect::<Result<_, _>>()
        .map_err(sql("reading window spectra"))?;
    let table = format!("evidence_spectra_{}", std::process::id());
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {table} (operation INTEGER, asset_id VARCHAR, property VARCHAR,
           unit VARCHAR, blob_id BIGINT, ts_us BIGINT, bin INTEGER, frequency_hz DOUBLE, amplitude FLOAT)"
    ))
    .map_err(sql("preparing spectra.parquet"))?;
    {
        let mut a = conn
            .appender(&table)
            .map_err(sql("preparing spectra.parquet"))?;
        for (op, asset, prop, unit, blob_id, ts, hz, bytes) in &rows {
            let bins = crate::history::query::spectrum_bins(bytes.as_deref().unwrap_or(&[]));
            for (k, amp) in bins.into_iter().enumerate() {
                a.append_row(params![
                    op,
                    asset,
                    prop,
                    unit,
                    blob_id,
                    ts,
                    k as i32,
                    f64::from(hz.unwrap_or(1.0)) * k as f64,
                    amp
                ])
                .map_err(sql("writing spectra.parquet"))?;
            }
        }
        a.flush().map_err(sql("writing spectra.parquet"))?;
    }
    conn.execute_batch(&format!(
        "COPY (SELECT operation, asset_id, property, unit, blob_id, to_timestamp(ts_us / 1e6) AS ts, ts_us,
                      bin, frequency_hz, amplitude FROM {table} ORDER BY ts_us, bin)
         TO '{}' (FORMAT parquet);
         DROP TABLE {table};",
        path("spectra.parquet")
    ))
    .map_err(sql("writing spectra.parquet"))?;
    Ok((samples as u64, rows.len() as u64))
}

fn plot_title(k: usize, d: &Difference) -> String {
    format!(
        "#{} {} {} [{}]  score {:+.1}{}",
        k + 1,
        d.asset_id,
        d.property,
        d.unit,
        d.score,
        d.at_hz
            .map(|h| format!(" at {h:.0} Hz"))
            .unwrap_or_default()
    )
}

/// An envelope plot as PNG: the good parts' 5–95 % band (light), their
/// median (dark), this part (red).
pub fn plot_png(d: &Difference, title: &str) -> Vec<u8> {
    let (w, h) = (720u32, 360u32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let (x0, x1, y0, y1) = (70.0f64, 700.0f64, 40.0f64, 320.0f64);
    let e = &d.envelope;
    let all = e
        .p05
        .iter()
        .chain(&e.p95)
        .chain(&e.part)
        .chain(&e.p50)
        .copied()
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let pad = 0.06 * (hi - lo);
    let (lo, hi) = (lo - pad, hi + pad);
    let n = e.x.len().max(2);
    let (xmin, xmax) = (
        e.x.first().copied().unwrap_or(0.0),
        e.x.last().copied().unwrap_or(1.0).max(1e-9),
    );
    let px = |x: f64| x0 + (x - xmin) / (xmax - xmin).max(1e-12) * (x1 - x0);
    let py = |v: f64| y1 - (v - lo) / (hi - lo) * (y1 - y0);
    // Band.
    for k in 0..n.saturating_sub(1).min(e.x.len().saturating_sub(1)) {
        let (xa, xb) = (px(e.x[k]) as i64, px(e.x[k + 1]) as i64);
        for x in xa..=xb {
            let f = if xb > xa {
                (x - xa) as f64 / (xb - xa) as f64
            } else {
                0.0
            };
            let a = e.p05[k] + (e.p05[k + 1] - e.p05[k]) * f;
            let b = e.p95[k] + (e.p95[k + 1] - e.p95[k]) * f;
            if !(a.is_finite() && b.is_finite()) {
                continue;
            }
            let (ya, yb) = (py(b) as i64, py(a) as i64);
            for y in ya..=yb {
                put(&mut img, x, y, [190, 210, 235]);
            }
        }
    }
    // Axes.
    line(&mut img, (x0, y1), (x1, y1), [90, 90, 90], 1);
    line(&mut img, (x0, y0), (x0, y1), [90, 90, 90], 1);
    let series = |img: &mut image::RgbImage, ys: &[f64], rgb: [u8; 3], t: i64| {
        for k in 0..ys.len().saturating_sub(1).min(e.x.len().saturating_sub(1)) {
            if ys[k].is_finite() && ys[k + 1].is_finite() {
                line(
                    img,
                    (px(e.x[k]), py(ys[k])),
                    (px(e.x[k + 1]), py(ys[k + 1])),
                    rgb,
                    t,
                );
            }
        }
    };
    series(&mut img, &e.p50, [30, 70, 140], 1);
    series(&mut img, &e.part, [215, 40, 30], 2);
    let scale = if title.len() as i64 * 16 <= i64::from(w) - 20 {
        2
    } else {
        1
    };
    text(
        &mut img,
        10,
        10 + 4 * (2 - scale),
        title,
        [20, 20, 20],
        scale,
    );
    text(&mut img, 4, y0 as i64 - 4, &short(hi), [60, 60, 60], 1);
    text(&mut img, 4, y1 as i64 - 4, &short(lo), [60, 60, 60], 1);
    let xl = if d.spectrum {
        format!("{:.0} Hz", xmin)
    } else {
        "start".into()
    };
    let xr = if d.spectrum {
        format!("{:.0} Hz", xmax)
    } else {
        "end of operation".into()
    };
    text(&mut img, x0 as i64, y1 as i64 + 8, &xl, [60, 60, 60], 1);
    text(
        &mut img,
        x1 as i64 - 8 * xr.len() as i64,
        y1 as i64 + 8,
        &xr,
        [60, 60, 60],
        1,
    );
    text(
        &mut img,
        x0 as i64,
        y1 as i64 + 24,
        &format!(
            "band: 5-95 % of {} good parts   dark: their median   red: this part",
            d.n_good
        ),
        [60, 60, 60],
        1,
    );
    let mut out = Vec::new();
    let _ = image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png);
    out
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn put(img: &mut image::RgbImage, x: i64, y: i64, rgb: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, image::Rgb(rgb));
    }
}

fn line(img: &mut image::RgbImage, a: (f64, f64), b: (f64, f64), rgb: [u8; 3], t: i64) {
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) as i64).max(1);
    for s in 0..=steps {
        let f = s as f64 / steps as f64;
        let (x, y) = (
            (a.0 + (b.0 - a.0) * f) as i64,
            (a.1 + (b.1 - a.1) * f) as i64,
        );
        for dx in 0..t {
            for dy in 0..t {
                put(img, x + dx, y + dy, rgb);
            }
        }
    }
}

/// Text in the 8×8 bitmap font, `scale` pixels per font pixel.
fn text(img: &mut image::RgbImage, x: i64, y: i64, s: &str, rgb: [u8; 3], scale: i64) {
    for (i, c) in s.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(c as usize)
            .copied()
            .unwrap_or(font8x8::legacy::BASIC_LEGACY[b'?' as usize]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dx in 0..scale {
                        for dy in 0..scale {
                            put(
                                img,
                                x + (i as i64 * 8 + col) * scale + dx,
                                y + row as i64 * scale + dy,
                                rgb,
                            );
                        }
                    }
                }
            }
        }
    }
}

fn report_pdf(
    r: &Ranking,
    trail: &[crate::history::audit::AuditRecord],
    tz: &str,
    samples: u64,
    spectra: u64,
    pictures: &[PathBuf],
) -> Vec<u8> {
    let g = &r.genealogy;
    let mut pages = Vec::new();
    let mut p = Page::new();
    p.para(
        b"F2",
        18.0,
        &format!("Quality evidence — part {}", g.serial),
    );
    p.gap(4.0);
    let verdict = match g.verdict() {
        super::Verdict::Failed => "FAILED",
        super::Verdict::Good => "good",
        super::Verdict::Unknown => "not inspected",
    };
    p.para(
        b"F1",
        10.5,
        &format!(
            "Verdict: {verdict}. {}",
            if g.reasons().is_empty() {
                String::new()
            } else {
                format!("Why: {}.", g.reasons().join("; "))
            }
        ),
    );
    p.para(
        b"F1",
        10.0,
        &format!(
            "Work order {}, material lot {}. Times in {tz}.",
            g.work_order().unwrap_or("unknown"),
            if g.material_lots().is_empty() {
                "unknown".to_string()
            } else {
                g.material_lots().join(", ")
            }
        ),
    );
    if let Some(top) = r.top() {
        p.gap(4.0);
        p.para(
            b"F2",
            11.0,
            &format!(
                "Most different: {} {} (operation {}), {:+.1} robust standard deviations from the last {} good parts of that operation{}.",
                top.asset_id,
                top.property,
                top.operation,
                top.score,
                top.n_good,
                top.at_hz
                    .map(|h| format!(", at {h:.0} Hz"))
                    .unwrap_or_default()
            ),
        );
    }
    p.gap(8.0);
    p.para(b"F2", 12.0, "Genealogy (routing order)");
    if let Some(o) = g.operations.first() {
        p.para(
            b"F1",
            9.0,
            &format!(
                "From {} (below: time of day, same zone).",
                at(o.start_us, tz)
            ),
        );
    }
    let tod = |t: i64| {
        let s = at(t, tz);
        s.get(11..23).unwrap_or(&s).to_string()
    };
    for o in &g.operations {
        p.para(
            b"F3",
            8.5,
            &format!(
                "{}  {:<12} {} - {}  order {}  lot {}",
                o.seq,
                o.asset_id,
                tod(o.start_us),
                o.end_us.map(tod).unwrap_or_else(|| "(still there)".into()),
                o.work_order.as_deref().unwrap_or("-"),
                o.material_lot.as_deref().unwrap_or("-")
            ),
        );
    }
    p.gap(8.0);
    p.para(b"F2", 12.0, "Measurements");
    for m in &g.measured {
        p.para(
            b"F3",
            8.5,
            &format!(
                "{:<10} {:>9.4} {}  nominal {:.3} {} {:.3}  {}",
                m.name,
                m.value,
                m.unit,
                m.nominal,
                if m.upper_only { "<= +" } else { "+/-" },
                m.tolerance,
                if m.in_tolerance() {
                    "ok"
                } else {
                    "OUT OF TOLERANCE"
                }
            ),
        );
    }
    p.gap(8.0);
    p.para(
        b"F2",
        12.0,
        "What was different (robust score, |score| >= 6 is an alarm)",
    );
    for (k, d) in r.differences.iter().take(18).enumerate() {
        p.para(
            b"F3",
            8.5,
            &format!(
                "{:>2}. {:<12} {:<20} {:>+8.1}{} value {} vs median {} ({} good)",
                k + 1,
                d.asset_id,
                d.property,
                d.score,
                if d.alarm() { " ALARM" } else { "      " },
                short(d.value),
                short(d.median),
                d.n_good
            ),
        );
    }
    p.gap(8.0);
    p.para(
        b"F1",
        9.0,
        &format!(
            "Data in this pack: {samples} samples (samples.parquet) and {spectra} spectra (spectra.parquet, one row per bin) from the part's operation windows; the plots; the audit trail's records about this part ({}); manifest.sha256 lists the SHA-256 of every file (check with `sha256sum -c manifest.sha256`).",
            trail.len()
        ),
    );
    pages.push(p);
    let mut images = Vec::new();
    let mut p = Page::new();
    p.para(b"F2", 14.0, "Signals against the good-part envelope");
    for path in pictures {
        if let Some((w, h, rgb)) = read_png(path) {
            let draw_w = PAGE_W - 2.0 * MARGIN;
            let draw_h = draw_w * h as f32 / w as f32;
            if p.y - draw_h < MARGIN + 20.0 {
                pages.push(p);
                p = Page::new();
            }
            let k = images.len();
            p.c.save_state();
            p.c.transform([draw_w, 0.0, 0.0, draw_h, MARGIN, p.y - draw_h]);
            p.c.x_object(pdf_writer::Name(format!("Im{k}").as_bytes()));
            p.c.restore_state();
            p.y -= draw_h + 10.0;
            p.images.push(k);
            images.push((
                w,
                h,
                rgb,
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ));
        }
    }
    pages.push(p);
    if !trail.is_empty() {
        let mut p = Page::new();
        p.para(b"F2", 14.0, "Audit trail (this part)");
        for a in trail {
            let e = &a.entry;
            p.para(
                b"F1",
                9.0,
                &format!(
                    "#{} {} — {} {}: {}{}{}{}",
                    a.seq,
                    at(e.ts_us, &e.time_zone),
                    e.kind,
                    e.field,
                    e.value.as_deref().unwrap_or(""),
                    e.previous_value
                        .as_deref()
                        .map(|v| format!(" (was: {v})"))
                        .unwrap_or_default(),
                    e.signer
                        .as_deref()
                        .map(|s| format!(" — signed by {s}"))
                        .unwrap_or_default(),
                    e.meaning
                        .as_deref()
                        .map(|m| format!(", meaning: {m}"))
                        .unwrap_or_default()
                ),
            );
            p.para(b"F3", 7.0, &format!("hash {}", a.hash));
            if p.y < MARGIN + 40.0 {
                pages.push(p);
                p = Page::new();
            }
        }
        pages.push(p);
    }
    let _ = PAGE_H;
    assemble(pages, &images, "Mezzanine quality evidence", &g.serial)
}
