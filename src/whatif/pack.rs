//! The meeting pack: a finished study ([`WhatIfOutcome`]) and the pictures
//! the app took (the 3D view with ghosts, its charts) in; a folder a
//! colleague can open without the app out — the scenario file to run it
//! again, CSVs of the KPIs, orders and machines, the fingerprint as JSON,
//! the recommended sequence as B2MML, and a PDF report: what was asked,
//! the hypotheticals, the fingerprint, the KPI table with 95 % intervals,
//! the charts (drawn as vectors) and the pictures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pdf_writer::Name;

use crate::pdf::{MARGIN, PAGE_W, Page, assemble, read_png};

use super::WhatIfError;
use super::app::WhatIfOutcome;
use super::engine::SimState;

/// Each variant's colour (baseline, then scenarios), 0..1 sRGB: the
/// ghosts' colours.
const VARIANT_RGB: [[f32; 3]; 4] = [
    [0.27, 0.67, 1.0],
    [1.0, 0.47, 0.12],
    [0.75, 0.35, 1.0],
    [0.16, 0.82, 0.47],
];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WhatIfError + '_ {
    move |source| WhatIfError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the pack into `dir` (created); `pictures` are PNG files already
/// in it (or elsewhere) to put into the report. Returns the files written.
pub fn write_pack(
    o: &WhatIfOutcome,
    dir: &Path,
    pictures: &[PathBuf],
    time_zone: &str,
) -> Result<Vec<PathBuf>, WhatIfError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut files = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), WhatIfError> {
        let p = dir.join(name);
        // Write, then rename: a reader never sees half a file.
        let tmp = dir.join(format!(".{name}.part"));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))?;
        files.push(p);
        Ok(())
    };
    put("scenario.toml", o.file.to_toml().as_bytes())?;
    put("kpis.csv", kpis_csv(o).as_bytes())?;
    put("orders.csv", orders_csv(o).as_bytes())?;
    put("machines.csv", machines_csv(o).as_bytes())?;
    put("report.txt", o.report.to_text().as_bytes())?;
    let fp = serde_json::to_string_pretty(&o.fingerprint).unwrap_or_default();
    put("fingerprint.json", fp.as_bytes())?;
    if o.result.models.len() > 1 {
        let id = super::app::recommendation_id(o.at_us, 1);
        let xml = crate::mes::b2mml::write(&o.schedule_record(1, &id));
        put("recommended-schedule.b2mml.xml", xml.as_bytes())?;
    }
    let pdf = report_pdf(o, pictures, time_zone);
    put("report.pdf", &pdf)?;
    files.extend(pictures.iter().filter(|p| p.starts_with(dir)).cloned());
    Ok(files)
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        String::new()
    }
}

/// One row per KPI and variant: mean, 95 % half-width, and the paired
/// difference to the baseline.
pub fn kpis_csv(o: &WhatIfOutcome) -> String {
    let r = &o.report;
    let mut s = String::from(
        "kpi,unit,variant,mean,ci95_half_width,diff_vs_baseline,diff_ci95_half_width,significant,replications\n",
    );
    for k in &r.kpis {
        for (v, e) in k.values.iter().enumerate() {
            let d = v.checked_sub(1).and_then(|i| k.diffs.get(i));
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{}",
                csv(k.name),
                csv(k.unit),
                csv(&r.names[v]),
                num(e.mean),
                num(e.half_width),
                d.map_or(String::new(), |d| num(d.mean)),
                d.map_or(String::new(), |d| num(d.half_width)),
                d.map_or(String::new(), |d| d.significant().to_string()),
                e.n
            );
        }
    }
    s
}

/// One row per order and variant: due, mean completion, lateness, and
/// whether it turns late or early against the baseline.
pub fn orders_csv(o: &WhatIfOutcome) -> String {
    let r = &o.report;
    let unit = r.time_unit;
    let mut s = format!(
        "order,variant,due_{unit},done_mean_{unit},done_ci95_half_width_{unit},not_done_runs,diff_vs_baseline_{unit},late,change\n"
    );
    for row in &r.orders {
        for (v, e) in row.done.iter().enumerate() {
            let d = v.checked_sub(1).and_then(|i| row.diffs.get(i));
            let late = late(row.due, e.mean, e.n);
            let change = if v == 0 {
                String::new()
            } else {
                let base = late_of(row, 0);
                match (base, late) {
                    (Some(false), Some(true)) => "becomes late".into(),
                    (Some(true), Some(false)) => "becomes on time".into(),
                    _ => String::new(),
                }
            };
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{}",
                csv(&row.id),
                csv(&r.names[v]),
                row.due.map_or(String::new(), num),
                num(e.mean),
                num(e.half_width),
                row.not_done.get(v).copied().unwrap_or(0),
                d.map_or(String::new(), |d| num(d.mean)),
                late.map_or(String::new(), |l| l.to_string()),
                change
            );
        }
    }
    s
}

/// Utilisation per machine and variant, with the baseline's state shares.
pub fn machines_csv(o: &WhatIfOutcome) -> String {
    let r = &o.report;
    let mut s = String::from(
        "machine,variant,utilisation,ci95_half_width,diff_vs_baseline,diff_ci95_half_width",
    );
    for st in SimState::ALL {
        let _ = write!(s, ",baseline_share_{}", st.label().replace('-', "_"));
    }
    s.push('\n');
    for m in &r.machines {
        for (v, e) in m.utilisation.iter().enumerate() {
            let d = v.checked_sub(1).and_then(|i| m.diffs.get(i));
            let _ = write!(
                s,
                "{},{},{},{},{},{}",
                csv(&m.id),
                csv(&r.names[v]),
                num(e.mean),
                num(e.half_width),
                d.map_or(String::new(), |d| num(d.mean)),
                d.map_or(String::new(), |d| num(d.half_width)),
            );
            for st in SimState::ALL {
                let _ = write!(s, ",{}", num(m.time_in_share[st.index()]));
            }
            s.push('\n');
        }
    }
    s
}

/// Whether an order with mean completion `done` (in `n` runs) is late.
fn late(due: Option<f64>, done: f64, n: usize) -> Option<bool> {
    let due = due?;
    if n == 0 {
        return Some(true); // not done by the horizon
    }
    Some(done > due)
}

fn late_of(row: &super::report::OrderRow, v: usize) -> Option<bool> {
    let e = row.done.get(v)?;
    late(row.due, e.mean, e.n)
}

/// Orders that become late (or on time) in scenario `v`: (id, baseline
/// done, scenario done, due), in the report's time unit.
pub fn turned(o: &WhatIfOutcome, v: usize) -> (Vec<String>, Vec<String>) {
    let mut to_late = Vec::new();
    let mut to_time = Vec::new();
    for row in &o.report.orders {
        match (late_of(row, 0), late_of(row, v)) {
            (Some(false), Some(true)) => to_late.push(row.id.clone()),
            (Some(true), Some(false)) => to_time.push(row.id.clone()),
            _ => {}
        }
    }
    (to_late, to_time)
}

fn pm(e: &super::stats::Estimate, digits: usize) -> String {
    if !e.mean.is_finite() {
        "–".into()
    } else if e.half_width.is_finite() {
        format!("{:.*} ± {:.*}", digits, e.mean, digits, e.half_width)
    } else {
        format!("{:.*}", digits, e.mean)
    }
}

fn at_label(t_us: i64, tz: &str) -> String {
    let ts = jiff::Timestamp::from_microsecond(t_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    match ts.in_tz(tz) {
        Ok(z) => z.strftime("%Y-%m-%d %H:%M %Z (UTC%:z)").to_string(),
        Err(_) => ts.strftime("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// The PDF report.
pub fn report_pdf(o: &WhatIfOutcome, pictures: &[PathBuf], tz: &str) -> Vec<u8> {
    let r = &o.report;
    let base = &o.result.models[0];
    let mut pages: Vec<Page> = Vec::new();

    // Page 1: what was asked, the answer, how to reproduce it.
    let mut p = Page::new();
    p.para(b"F2", 20.0, &format!("What-if: {}", o.file.name));
    p.gap(4.0);
    p.para(
        b"F1",
        10.0,
        &format!(
            "{} — forked from the {} at {}; {:.1} h simulated ahead; {} replications per variant (seed {}); {} machines, {} open orders.",
            base.name,
            if o.live { "live plant" } else { "recorded plant" },
            at_label(o.at_us, tz),
            base.horizon_s / 3600.0,
            r.replications,
            o.file.seed,
            base.stations.len(),
            base.orders.len()
        ),
    );
    p.gap(8.0);
    p.para(b"F2", 13.0, "What was asked");
    for (v, s) in o.file.scenarios.iter().enumerate() {
        let colour = VARIANT_RGB[(v + 1) % VARIANT_RGB.len()];
        p.rect(MARGIN, p.y - 10.0, 8.0, 8.0, colour);
        p.text(MARGIN + 12.0, p.y - 9.5, b"F2", 10.5, &s.name);
        p.gap(14.0);
        for c in &s.changes {
            p.text(
                MARGIN + 16.0,
                p.y - 9.0,
                b"F1",
                9.5,
                &format!("• {}", c.describe()),
            );
            p.gap(12.5);
        }
    }
    p.rect(MARGIN, p.y - 10.0, 8.0, 8.0, VARIANT_RGB[0]);
    p.text(
        MARGIN + 12.0,
        p.y - 9.5,
        b"F1",
        10.0,
        "baseline: the plant as it is, no change",
    );
    p.gap(22.0);
    p.para(b"F2", 13.0, "The answer");
    for v in 1..r.names.len() {
        if let Some(k) = r.kpis.first()
            && let Some(d) = k.diffs.get(v - 1)
        {
            let (to_late, to_time) = turned(o, v);
            let verdict = if d.significant() {
                "the difference is real at 95 %"
            } else {
                "the interval includes 0: no clear difference"
            };
            p.para(
                b"F1",
                10.0,
                &format!(
                    "{}: {} {:+.2} ± {:.2} {} vs the baseline ({verdict}). {} order(s) become late{}, {} on time. Bottleneck: {} ({:.0} % utilised; baseline {} {:.0} %).",
                    r.names[v],
                    k.name,
                    d.mean,
                    d.half_width,
                    k.unit,
                    to_late.len(),
                    if to_late.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", to_late.join(", "))
                    },
                    to_time.len(),
                    r.bottleneck.get(v).map_or("–", |b| b.0.as_str()),
                    r.bottleneck.get(v).map_or(0.0, |b| b.1 * 100.0),
                    r.bottleneck.first().map_or("–", |b| b.0.as_str()),
                    r.bottleneck.first().map_or(0.0, |b| b.1 * 100.0),
                ),
            );
            p.gap(3.0);
        }
    }
    p.gap(8.0);
    p.para(
        b"F2",
        13.0,
        "Key figures (mean ± 95 % confidence half-width)",
    );
    kpi_table(&mut p, o);
    p.gap(6.0);
    p.para(
        b"F1",
        8.5,
        "diff is scenario − baseline, replication by replication with the same random numbers (common random numbers), so the interval is that of the difference itself. * marks an interval that excludes 0.",
    );
    p.gap(10.0);
    p.para(b"F2", 13.0, "Fingerprint (to get the same answer again)");
    for line in [
        format!("seeds: {:?}", o.fingerprint.seeds),
        format!("fork time: {}", o.fingerprint.fork_time),
        format!("model version: {}", o.fingerprint.model_version),
        format!("inputs SHA-256: {}", o.fingerprint.inputs_sha256),
        "scenario file: scenario.toml in this folder (mezzanine whatif scenario.toml --at <fork time>)".into(),
    ] {
        p.para(b"F3", 8.0, &line);
    }
    pages.push(p);

    // Page 2: charts.
    let mut p = Page::new();
    p.para(
        b"F2",
        14.0,
        "Utilisation per machine (running + setup share)",
    );
    utilisation_chart(&mut p, o);
    p.gap(16.0);
    if o.result.models.len() > 1 {
        p.para(
            b"F2",
            14.0,
            &format!(
                "Operations over time: baseline vs {} (replication 0)",
                r.names[1]
            ),
        );
        gantt_chart(&mut p, o, 1);
    }
    pages.push(p);

    // Page 3: orders that move.
    let mut p = Page::new();
    p.para(b"F2", 14.0, "Orders");
    orders_table(&mut p, o);
    pages.push(p);

    // Pictures, one a page.
    let mut images: Vec<(u32, u32, Vec<u8>, String)> = Vec::new();
    for path in pictures {
        if let Some((w, h, rgb)) = read_png(path) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let mut p = Page::new();
            p.para(b"F2", 14.0, &picture_title(&name));
            let max_w = PAGE_W - 2.0 * MARGIN;
            let max_h = p.y - MARGIN - 20.0;
            let scale = (max_w / w as f32).min(max_h / h as f32);
            let (dw, dh) = (w as f32 * scale, h as f32 * scale);
            let k = images.len();
            p.c.save_state();
            p.c.transform([dw, 0.0, 0.0, dh, MARGIN, p.y - 8.0 - dh]);
            p.c.x_object(Name(format!("Im{k}").as_bytes()));
            p.c.restore_state();
            p.y -= dh + 16.0;
            p.para(b"F1", 8.5, &format!("{name}, {w} × {h} px"));
            p.images.push(k);
            images.push((w, h, rgb, name));
            pages.push(p);
        }
    }
    assemble(pages, &images, "Mezzanine what-if report", &o.file.name)
}

fn picture_title(name: &str) -> String {
    if name.starts_with("view") {
        "The plant with the scenarios' ghosts (as the app showed it)".into()
    } else {
        format!(
            "Chart from the app: {}",
            name.trim_end_matches(".png").replace('-', " ")
        )
    }
}

fn kpi_table(p: &mut Page, o: &WhatIfOutcome) {
    let r = &o.report;
    let n = r.names.len();
    let name_w = 120.0;
    let col_w = ((PAGE_W - 2.0 * MARGIN - name_w) / (n + n - 1).max(1) as f32).min(110.0);
    let size = if n > 2 { 7.5 } else { 8.5 };
    let mut x = MARGIN + name_w;
    p.text(MARGIN, p.y - 10.0, b"F2", size, "KPI [unit]");
    for (v, name) in r.names.iter().enumerate() {
        p.rect(x, p.y - 10.0, 6.0, 6.0, VARIANT_RGB[v % VARIANT_RGB.len()]);
        p.text(x + 8.0, p.y - 10.0, b"F2", size, &clip(name, 20));
        x += col_w;
    }
    for name in &r.names[1..] {
        p.text(
            x,
            p.y - 10.0,
            b"F2",
            size,
            &format!("diff {}", clip(name, 15)),
        );
        x += col_w;
    }
    p.gap(14.0);
    p.line((MARGIN, p.y + 2.0), (PAGE_W - MARGIN, p.y + 2.0), 0.5, 0.6);
    for k in &r.kpis {
        p.text(
            MARGIN,
            p.y - 10.0,
            b"F1",
            size,
            &format!("{} [{}]", k.name, k.unit),
        );
        let mut x = MARGIN + name_w;
        for e in &k.values {
            p.text(x, p.y - 10.0, b"F1", size, &pm(e, 2));
            x += col_w;
        }
        for d in &k.diffs {
            let mark = if d.significant() { " *" } else { "" };
            p.text(x, p.y - 10.0, b"F2", size, &format!("{}{mark}", pm(d, 2)));
            x += col_w;
        }
        p.gap(13.0);
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn utilisation_chart(p: &mut Page, o: &WhatIfOutcome) {
    let r = &o.report;
    let n = r.names.len();
    let label_w = 90.0;
    let chart_w = PAGE_W - 2.0 * MARGIN - label_w - 40.0;
    let bar_h = 5.0;
    let row_h = bar_h * n as f32 + 4.0;
    let x0 = MARGIN + label_w;
    // Axis with 0, 25, 50, 75, 100 %.
    let top = p.y - 6.0;
    let height = row_h * r.machines.len() as f32;
    for i in 0..=4 {
        let x = x0 + chart_w * i as f32 / 4.0;
        p.line((x, top), (x, top - height), 0.3, 0.8);
        p.text(
            x - 8.0,
            top - height - 10.0,
            b"F1",
            7.5,
            &format!("{} %", i * 25),
        );
    }
    let mut y = top;
    for m in &r.machines {
        p.text(MARGIN, y - row_h * 0.5 - 3.0, b"F1", 8.0, &clip(&m.id, 18));
        for (v, e) in m.utilisation.iter().enumerate() {
            let w = (e.mean.clamp(0.0, 1.0) as f32) * chart_w;
            let yb = y - 2.0 - bar_h * (v + 1) as f32;
            p.rect(
                x0,
                yb,
                w.max(0.5),
                bar_h - 0.8,
                VARIANT_RGB[v % VARIANT_RGB.len()],
            );
        }
        y -= row_h;
    }
    p.y = top - height - 16.0;
    legend(p, &r.names);
}

fn legend(p: &mut Page, names: &[String]) {
    let mut x = MARGIN;
    for (v, n) in names.iter().enumerate() {
        p.rect(x, p.y - 8.0, 8.0, 8.0, VARIANT_RGB[v % VARIANT_RGB.len()]);
        p.text(x + 11.0, p.y - 7.5, b"F1", 8.5, &clip(n, 28));
        x += 14.0 + 5.0 * clip(n, 28).chars().count() as f32 + 12.0;
    }
    p.gap(14.0);
}

fn gantt_chart(p: &mut Page, o: &WhatIfOutcome, v: usize) {
    let base = &o.result.models[0];
    let ops = [o.operations(0), o.operations(v)];
    let label_w = 90.0;
    let chart_w = PAGE_W - 2.0 * MARGIN - label_w - 10.0;
    let x0 = MARGIN + label_w;
    let horizon = base.horizon_s.max(1.0) as f32;
    let row_h = 14.0;
    let top = p.y - 6.0;
    let rows = base.stations.len();
    let height = row_h * rows as f32;
    let steps = (horizon / 3600.0).ceil().max(1.0) as usize;
    let every = steps.div_ceil(8).max(1);
    for h in (0..=steps).step_by(every) {
        let x = x0 + chart_w * (h as f32 * 3600.0 / horizon).min(1.0);
        p.line((x, top), (x, top - height), 0.3, 0.8);
        p.text(x - 6.0, top - height - 10.0, b"F1", 7.5, &format!("+{h} h"));
    }
    for (s, st) in base.stations.iter().enumerate() {
        let y = top - row_h * (s + 1) as f32;
        p.text(MARGIN, y + 4.0, b"F1", 7.5, &clip(&st.id, 18));
        for (k, list) in ops.iter().enumerate() {
            let colour = VARIANT_RGB[if k == 0 { 0 } else { v % VARIANT_RGB.len() }];
            let yb = y + 1.0 + if k == 0 { 6.0 } else { 0.5 };
            for &(_, _, m, a, b) in list.iter().filter(|x| x.2 as usize == s) {
                let _ = m;
                let xa = x0 + chart_w * (a as f32 / horizon).min(1.0);
                let xb = x0 + chart_w * (b as f32 / horizon).min(1.0);
                p.rect(xa, yb, (xb - xa).max(0.6), 5.0, colour);
            }
        }
    }
    p.y = top - height - 16.0;
    legend(p, &[o.report.names[0].clone(), o.report.names[v].clone()]);
    p.para(
        b"F1",
        8.0,
        "Each machine's row: the baseline's operations above, the scenario's below. One replication (0) of each, with the same random numbers.",
    );
}

fn orders_table(p: &mut Page, o: &WhatIfOutcome) {
    let r = &o.report;
    let unit = r.time_unit;
    p.para(
        b"F1",
        9.0,
        &format!(
            "Completion after the fork, in {unit} (mean over replications); orders whose completion moves in a scenario first. Late: done after its due time, or not done by the horizon."
        ),
    );
    p.gap(4.0);
    let mut rows: Vec<&super::report::OrderRow> = r.orders.iter().collect();
    rows.sort_by(|a, b| {
        let m = |x: &super::report::OrderRow| {
            x.diffs
                .iter()
                .map(|d| {
                    if d.mean.is_finite() {
                        d.mean.abs()
                    } else {
                        0.0
                    }
                })
                .fold(0.0, f64::max)
        };
        m(b).total_cmp(&m(a))
    });
    let cols = [MARGIN, MARGIN + 110.0, MARGIN + 170.0];
    p.text(cols[0], p.y - 10.0, b"F2", 8.5, "order");
    p.text(cols[1], p.y - 10.0, b"F2", 8.5, &format!("due {unit}"));
    let col_w = 95.0;
    for (v, n) in r.names.iter().enumerate() {
        p.text(
            cols[2] + col_w * v as f32,
            p.y - 10.0,
            b"F2",
            8.5,
            &clip(n, 18),
        );
    }
    p.gap(14.0);
    for row in rows {
        if p.y < MARGIN + 20.0 {
            p.para(b"F1", 8.0, "… (every order is in orders.csv)");
            break;
        }
        p.text(cols[0], p.y - 10.0, b"F1", 8.0, &clip(&row.id, 20));
        p.text(
            cols[1],
            p.y - 10.0,
            b"F1",
            8.0,
            &row.due.map_or("–".into(), |d| format!("{d:.2}")),
        );
        for (v, e) in row.done.iter().enumerate() {
            let lt = late(row.due, e.mean, e.n) == Some(true);
            let cell = if e.n == 0 {
                "not done".to_string()
            } else {
                format!("{:.2}{}", e.mean, if lt { " late" } else { "" })
            };
            let font: &[u8] = if lt { b"F2" } else { b"F1" };
            p.text(cols[2] + col_w * v as f32, p.y - 10.0, font, 8.0, &cell);
        }
        p.gap(11.5);
    }
}
