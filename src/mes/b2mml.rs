//! Production schedules as B2MML (ISA-95 Part 6, the MESA XML binding):
//! a [`Schedule`] out as a `ProductionSchedule` document, and a document in
//! as a validated [`Schedule`], or every problem listed as
//! `file:line:column: message`.
//!
//! Each production request becomes one `ProductionRequest`; each step of its
//! routing one `SegmentRequirement` with an `EquipmentRequirement`; the first
//! step carries the planned window and the quantity produced.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use super::{MesError, rfc3339};
use crate::registry::AssetRegistry;

/// The B2MML namespace.
pub const B2MML_NS: &str = "http://www.mesa.org/xml/B2MML";

pub use crate::contract::schedule::{ProductionRequest, Schedule};

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// The schedule as a B2MML `ProductionSchedule` document.
pub fn write(s: &Schedule) -> String {
    let mut x = String::new();
    let _ = writeln!(x, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(x, r#"<ProductionSchedule xmlns="{B2MML_NS}">"#);
    let _ = writeln!(x, "  <ID>{}</ID>", esc(&s.id));
    if let Some(p) = s.published_us {
        let _ = writeln!(x, "  <PublishedDate>{}</PublishedDate>", rfc3339(p));
    }
    for r in &s.requests {
        let _ = writeln!(x, "  <ProductionRequest>");
        let _ = writeln!(x, "    <ID>{}</ID>", esc(&r.id));
        let _ = writeln!(x, "    <Description>{}</Description>", esc(&r.product));
        if let Some(t) = r.earliest_start_us {
            let _ = writeln!(x, "    <StartTime>{}</StartTime>", rfc3339(t));
        }
        if let Some(t) = r.latest_end_us {
            let _ = writeln!(x, "    <EndTime>{}</EndTime>", rfc3339(t));
        }
        for (i, eq) in r.routing.iter().enumerate() {
            let _ = writeln!(x, "    <SegmentRequirement>");
            let _ = writeln!(x, "      <ID>{}-{}</ID>", esc(&r.id), (i + 1) * 10);
            let _ = writeln!(
                x,
                "      <ProcessSegmentID>{}</ProcessSegmentID>",
                if i == 0 { "MACHINE" } else { "FINISH" }
            );
            if i == 0 {
                if let Some(t) = r.earliest_start_us {
                    let _ = writeln!(
                        x,
                        "      <EarliestStartTime>{}</EarliestStartTime>",
                        rfc3339(t)
                    );
                }
                if let Some(t) = r.latest_end_us {
                    let _ = writeln!(x, "      <LatestEndTime>{}</LatestEndTime>", rfc3339(t));
                }
            }
            let _ = writeln!(
                x,
                "      <EquipmentRequirement><EquipmentID>{}</EquipmentID></EquipmentRequirement>",
                esc(eq)
            );
            if i == 0 {
                let _ = writeln!(x, "      <MaterialProducedRequirement>");
                let _ = writeln!(
                    x,
                    "        <MaterialDefinitionID>{}</MaterialDefinitionID>",
                    esc(&r.product)
                );
                let _ = writeln!(
                    x,
                    "        <Quantity><QuantityString>{}</QuantityString><UnitOfMeasure>{}</UnitOfMeasure></Quantity>",
                    r.quantity,
                    esc(&r.unit)
                );
                let _ = writeln!(x, "      </MaterialProducedRequirement>");
            }
            let _ = writeln!(x, "    </SegmentRequirement>");
        }
        let _ = writeln!(x, "  </ProductionRequest>");
    }
    let _ = writeln!(x, "</ProductionSchedule>");
    x
}

struct Problems<'a> {
    doc: &'a roxmltree::Document<'a>,
    list: Vec<String>,
    /// What was read with an assumption, for the import report.
    notes: Vec<String>,
    /// The plant's zone, for times written without one.
    zone: Option<jiff::tz::TimeZone>,
    zone_name: String,
    zoneless_times: usize,
}

impl Problems<'_> {
    fn pos(&self, n: roxmltree::Node) -> String {
        let p = self.doc.text_pos_at(n.range().start);
        format!("{}:{}", p.row, p.col)
    }

    fn at(&mut self, n: roxmltree::Node, msg: String) {
        let pos = self.pos(n);
        self.list.push(format!("{pos}: {msg}"));
    }
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn text(n: roxmltree::Node) -> String {
    n.text().unwrap_or_default().trim().to_string()
}

fn time(p: &mut Problems, n: Option<roxmltree::Node>, what: &str) -> Option<i64> {
    let n = n?;
    let t = text(n);
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Some(ts.as_microsecond());
    }
    // A valid xs:dateTime may carry no zone: it is then read in the plant's.
    match (t.parse::<jiff::civil::DateTime>(), p.zone.clone()) {
        (Ok(civil), Some(zone)) => match civil.to_zoned(zone) {
            Ok(z) => {
                if p.zoneless_times == 0 {
                    let pos = p.pos(n);
                    p.notes.push(format!(
                        "{pos}: {what} `{t}` has no zone: read in the plant's zone, {} (so are \
                         the other times without one)",
                        p.zone_name
                    ));
                }
                p.zoneless_times += 1;
                Some(z.timestamp().as_microsecond())
            }
            Err(e) => {
                p.at(
                    n,
                    format!("{what} `{t}` does not exist in {}: {e}", p.zone_name),
                );
                None
            }
        },
        (Ok(_), None) => {
            p.at(
                n,
                format!("{what} `{t}` has no zone, and without the registry there is no plant zone to read it in"),
            );
            None
        }
        (Err(e), _) => {
            p.at(
                n,
                format!("{what} `{t}` is not a time (xs:dateTime / RFC 3339): {e}"),
            );
            None
        }
    }
}

/// Elements of a request and its segments that the reader uses; any other
/// is listed in the import report as not imported.
const READ_ELEMENTS: &[&str] = &[
    "ID",
    "Description",
    "StartTime",
    "EndTime",
    "SegmentRequirement",
    "ProcessSegmentID",
    "EarliestStartTime",
    "LatestEndTime",
    "EquipmentRequirement",
    "MaterialProducedRequirement",
    "MaterialRequirement",
];

/// The quantity a material requirement asks to produce: the V0500
/// `MaterialProducedRequirement`, or a V0600/V0700 `MaterialRequirement`
/// whose `MaterialUse` is `Produced`.
fn produced<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> Vec<roxmltree::Node<'a, 'i>> {
    n.children().filter_map(produced_use).collect()
}

/// `n` when it is a requirement for material to produce.
fn produced_use<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> Option<roxmltree::Node<'a, 'i>> {
    let yes = n.is_element()
        && match n.tag_name().name() {
            "MaterialProducedRequirement" => true,
            "MaterialRequirement" => {
                child(n, "MaterialUse").is_some_and(|u| text(u).eq_ignore_ascii_case("produced"))
            }
            _ => false,
        };
    yes.then_some(n)
}

/// Segment requirements in document order, nested ones after their
/// parent (B2MML V0600 nests them to write a routing).
fn segments_of<'a, 'i>(n: roxmltree::Node<'a, 'i>, out: &mut Vec<roxmltree::Node<'a, 'i>>) {
    for s in children(n, "SegmentRequirement") {
        out.push(s);
        segments_of(s, out);
    }
}

/// Reads a B2MML `ProductionSchedule`. With a registry, every equipment id
/// must name an asset in it. `path` names the document in messages.
pub fn parse(
    xml: &str,
    path: &Path,
    registry: Option<&AssetRegistry>,
) -> Result<Schedule, MesError> {
    parse_with_notes(xml, path, registry).map(|(s, _)| s)
}

/// [`parse`], with what was read under an assumption (times without a zone)
/// or not imported (durations, setups, states …), one line each.
pub fn parse_with_notes(
    xml: &str,
    path: &Path,
    registry: Option<&AssetRegistry>,
) -> Result<(Schedule, Vec<String>), MesError> {
    let fail = |problems: Vec<String>| MesError::B2mml {
        file: path.display().to_string(),
        problems,
    };
    let doc = roxmltree::Document::parse(xml).map_err(|e| {
        let p = e.pos();
        fail(vec![format!(
            "{}:{}: not well-formed XML: {e}",
            p.row, p.col
        )])
    })?;
    let zone_name = registry
        .map(|r| r.plant().time_zone.clone())
        .unwrap_or_default();
    let mut p = Problems {
        doc: &doc,
        list: Vec::new(),
        notes: Vec::new(),
        zone: registry.and_then(|r| jiff::tz::TimeZone::get(&r.plant().time_zone).ok()),
        zone_name,
        zoneless_times: 0,
    };
    let top = doc.root_element();
    // An envelope (a Sync/Process/Show verb, a gateway's wrapper) holds the
    // schedule somewhere inside.
    let Some(root) = top
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "ProductionSchedule")
    else {
        p.at(
            top,
            format!(
                "the document is a <{}> with no B2MML <ProductionSchedule> in it",
                top.tag_name().name()
            ),
        );
        return Err(fail(p.list));
    };
    if root != top {
        let pos = p.pos(root);
        p.notes.push(format!(
            "{pos}: the <ProductionSchedule> inside <{}> was read",
            top.tag_name().name()
        ));
    }
    if let Some(ns) = root.tag_name().namespace()
        && !ns.starts_with(B2MML_NS)
    {
        p.at(root, format!("namespace `{ns}` is not B2MML ({B2MML_NS})"));
    }
    let id = match child(root, "ID").map(text).filter(|s| !s.is_empty()) {
        Some(id) => id,
        None => {
            p.at(root, "<ProductionSchedule> has no <ID>".into());
            String::new()
        }
    };
    let published_us = time(&mut p, child(root, "PublishedDate"), "PublishedDate");
    let mut requests = Vec::new();
    let mut seen = HashSet::new();
    for r in children(root, "ProductionRequest") {
        let Some(rid) = child(r, "ID").map(text).filter(|s| !s.is_empty()) else {
            p.at(r, "<ProductionRequest> has no <ID>".into());
            continue;
        };
        if !seen.insert(rid.clone()) {
            p.at(r, format!("production request {rid} appears twice"));
        }
        let start = time(&mut p, child(r, "StartTime"), "StartTime");
        let end = time(&mut p, child(r, "EndTime"), "EndTime");
        let mut routing = Vec::new();
        let mut quantity = None;
        let mut quantity_reported = false;
        let mut unit = String::from("count");
        let mut product = child(r, "Description").map(text).unwrap_or_default();
        let (mut seg_start, mut seg_end) = (None, None);
        let mut segments = Vec::new();
        segments_of(r, &mut segments);
        if segments.is_empty() {
            p.at(
                r,
                format!("production request {rid} has no <SegmentRequirement>"),
            );
        }
        // The request's own material requirements, then each segment's.
        let mut materials = produced(r);
        for s in segments {
            materials.extend(produced(s));
            let eq = child(s, "EquipmentRequirement").and_then(|e| child(e, "EquipmentID"));
            let nested = children(s, "SegmentRequirement").next().is_some();
            match eq.map(|e| (e, text(e))) {
                Some((e, id)) if !id.is_empty() => {
                    if let Some(reg) = registry
                        && reg.by_id(&id).is_none()
                    {
                        p.at(
                            e,
                            format!("{rid}: equipment `{id}` is not an asset in the registry"),
                        );
                    }
                    routing.push(id);
                }
                // A grouping step: its nested requirements name the machines.
                None if nested => {}
                _ => p.at(
                    s,
                    format!(
                        "{rid}: a <SegmentRequirement> has no <EquipmentRequirement>/<EquipmentID>"
                    ),
                ),
            }
            seg_start = seg_start.or(time(
                &mut p,
                child(s, "EarliestStartTime"),
                "EarliestStartTime",
            ));
            seg_end = seg_end.or(time(&mut p, child(s, "LatestEndTime"), "LatestEndTime"));
        }
        for m in materials {
            {
                if product.is_empty() {
                    product = child(m, "MaterialDefinitionID")
                        .map(text)
                        .unwrap_or_default();
                }
                match child(m, "Quantity").and_then(|q| child(q, "QuantityString")) {
                    Some(qs) => match text(qs).parse::<f64>() {
                        Ok(v) if v.is_finite() && v > 0.0 => {
                            quantity = Some(v);
                            if let Some(u) =
                                child(m, "Quantity").and_then(|q| child(q, "UnitOfMeasure"))
                            {
                                unit = text(u);
                            }
                        }
                        _ => {
                            quantity_reported = true;
                            p.at(
                                qs,
                                format!(
                                    "{rid}: quantity `{}` is not a number greater than 0",
                                    text(qs)
                                ),
                            )
                        }
                    },
                    None => {
                        quantity_reported = true;
                        p.at(
                            m,
                            format!(
                                "{rid}: <{}> has no <Quantity>/<QuantityString>",
                                m.tag_name().name()
                            ),
                        )
                    }
                }
            }
        }
        let earliest_start_us = start.or(seg_start);
        let latest_end_us = end.or(seg_end);
        if let (Some(a), Some(b)) = (earliest_start_us, latest_end_us)
            && b < a
        {
            p.at(r, format!("{rid}: ends before it starts"));
        }
        let Some(quantity) = quantity else {
            if !quantity_reported {
                p.at(
                    r,
                    format!(
                        "{rid}: no quantity to produce (<MaterialProducedRequirement>, or a \
                         <MaterialRequirement> with <MaterialUse>Produced</MaterialUse>)"
                    ),
                );
            }
            continue;
        };
        requests.push(ProductionRequest {
            id: rid,
            product,
            quantity,
            unit,
            routing,
            earliest_start_us,
            latest_end_us,
        });
    }
    if requests.is_empty() && p.list.is_empty() {
        p.at(root, "the schedule holds no <ProductionRequest>".into());
    }
    if !p.list.is_empty() {
        return Err(fail(p.list));
    }
    let mut notes = p.notes;
    notes.extend(not_imported(root));
    Ok((
        Schedule {
            id,
            published_us,
            requests,
        },
        notes,
    ))
}

/// What the schedule holds that is not imported (durations, setups,
/// states, personnel …), one line per element name with its count.
fn not_imported(root: roxmltree::Node) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut schedule_level: std::collections::BTreeMap<String, usize> = Default::default();
    for n in root.children().filter(|n| n.is_element()) {
        let name = n.tag_name().name();
        if name == "ProductionRequest" {
            let mut stack: Vec<roxmltree::Node> = n.children().collect();
            while let Some(c) = stack.pop() {
                if !c.is_element() {
                    continue;
                }
                let cname = c.tag_name().name();
                if cname == "SegmentRequirement" {
                    stack.extend(c.children());
                } else if cname == "MaterialRequirement" && produced_use(c).is_none() {
                    let used = child(c, "MaterialUse").map(text).unwrap_or_default();
                    *counts
                        .entry(format!("MaterialRequirement ({used})"))
                        .or_default() += 1;
                } else if !READ_ELEMENTS.contains(&cname) {
                    *counts.entry(cname.to_string()).or_default() += 1;
                }
            }
        } else if !["ID", "PublishedDate", "Description"].contains(&name) {
            *schedule_level.entry(name.to_string()).or_default() += 1;
        }
    }
    let list = |m: std::collections::BTreeMap<String, usize>| {
        m.into_iter()
            .map(|(k, n)| {
                if n == 1 {
                    format!("<{k}>")
                } else {
                    format!("<{k}> ×{n}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    if !counts.is_empty() {
        out.push(format!(
            "not imported from the requests and their segments: {}",
            list(counts)
        ));
    }
    if !schedule_level.is_empty() {
        out.push(format!(
            "not imported from the schedule: {}",
            list(schedule_level)
        ));
    }
    out
}
