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
}

impl Problems<'_> {
    fn at(&mut self, n: roxmltree::Node, msg: String) {
        let p = self.doc.text_pos_at(n.range().start);
        self.list.push(format!("{}:{}: {msg}", p.row, p.col));
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
    match text(n).parse::<jiff::Timestamp>() {
        Ok(t) => Some(t.as_microsecond()),
        Err(e) => {
            p.at(
                n,
                format!(
                    "{what} `{}` is not a time with a zone (RFC 3339): {e}",
                    text(n)
                ),
            );
            None
        }
    }
}

/// Reads a B2MML `ProductionSchedule`. With a registry, every equipment id
/// must name an asset in it. `path` names the document in messages.
pub fn parse(
    xml: &str,
    path: &Path,
    registry: Option<&AssetRegistry>,
) -> Result<Schedule, MesError> {
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
    let mut p = Problems {
        doc: &doc,
        list: Vec::new(),
    };
    let root = doc.root_element();
    if root.tag_name().name() != "ProductionSchedule" {
        p.at(
            root,
            format!(
                "the document is a <{}>, not a B2MML <ProductionSchedule>",
                root.tag_name().name()
            ),
        );
        return Err(fail(p.list));
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
        let segments: Vec<_> = children(r, "SegmentRequirement").collect();
        if segments.is_empty() {
            p.at(
                r,
                format!("production request {rid} has no <SegmentRequirement>"),
            );
        }
        for s in segments {
            let eq = child(s, "EquipmentRequirement").and_then(|e| child(e, "EquipmentID"));
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
            if let Some(m) = child(s, "MaterialProducedRequirement") {
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
                                "{rid}: <MaterialProducedRequirement> has no <Quantity>/<QuantityString>"
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
                    format!("{rid}: no quantity to produce (<MaterialProducedRequirement>)"),
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
    Ok(Schedule {
        id,
        published_us,
        requests,
    })
}
