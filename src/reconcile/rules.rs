//! The authority file: which side owns each data domain, and the thresholds
//! of each detector. TOML text in; [`ReconcileRules`] out, or every problem
//! listed as `file:line:column: message`.
//!
//! Authority is declared, never inferred from data: a file that leaves a
//! domain without an owner is refused, and so is a rule on a domain that has
//! none.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::ReconcileError;
use crate::registry::line_col;

/// The format this build reads.
pub const RULES_FORMAT_VERSION: u32 = 1;

/// A kind of data whose owner the file declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// Which work order and operation a machine runs, and its status.
    WorkOrderState,
    /// Whether a machine is physically running, stopped or cutting.
    PhysicalState,
    /// How many parts a machine made.
    PartCount,
    /// Inspection results and dispositions.
    QualityRecords,
}

impl Domain {
    pub const ALL: [Domain; 4] = [
        Domain::WorkOrderState,
        Domain::PhysicalState,
        Domain::PartCount,
        Domain::QualityRecords,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Domain::WorkOrderState => "work_order_state",
            Domain::PhysicalState => "physical_state",
            Domain::PartCount => "part_count",
            Domain::QualityRecords => "quality_records",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.key() == s)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The side whose view of a domain is authoritative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Authority {
    Mes,
    Twin,
}

impl Authority {
    pub fn label(self) -> &'static str {
        match self {
            Authority::Mes => "MES",
            Authority::Twin => "twin",
        }
    }
}

/// A detector and its thresholds.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// The MES has an order running on a machine whose spindle and vibration
    /// say it is stopped, for longer than `after_s`.
    MesRunningMachineStopped {
        after_s: f64,
        spindle_below_rpm: f64,
        vibration_below_mm_s: f64,
    },
    /// The MES has nothing running on a machine whose spindle is turning
    /// under load, for longer than `after_s`.
    MesIdleMachineCutting {
        after_s: f64,
        spindle_above_rpm: f64,
        load_above_pct: f64,
    },
    /// The count an operation reports differs from the machine's counter
    /// over the operation by more than the tolerance (whichever is larger).
    PartCountDivergence {
        tolerance_parts: f64,
        tolerance_pct: f64,
        settle_s: f64,
    },
    /// An order completed and no quality disposition for it arrived within
    /// `after_s`.
    CompletedOrderWithoutQuality { after_s: f64 },
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::MesRunningMachineStopped { .. } => "mes_running_machine_stopped",
            RuleKind::MesIdleMachineCutting { .. } => "mes_idle_machine_cutting",
            RuleKind::PartCountDivergence { .. } => "part_count_divergence",
            RuleKind::CompletedOrderWithoutQuality { .. } => "completed_order_without_quality",
        }
    }
}

/// One enabled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub kind: RuleKind,
    pub domain: Domain,
    pub authority: Authority,
}

/// The whole file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileRules {
    pub source: PathBuf,
    pub authority: BTreeMap<Domain, Authority>,
    pub rules: Vec<Rule>,
    /// Registry property names the detectors read.
    pub properties: PropertyNames,
}

/// Which registry properties carry the physical signals.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyNames {
    pub spindle_speed: String,
    pub spindle_load: String,
    pub vibration: String,
    pub part_count: String,
}

impl ReconcileRules {
    pub fn authority_of(&self, d: Domain) -> Authority {
        // Validation guarantees every domain has one.
        self.authority.get(&d).copied().unwrap_or(Authority::Mes)
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.kind.name() == name)
    }

    /// Read and validate a rules file.
    pub fn load(path: &Path) -> Result<Self, ReconcileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReconcileError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Validate rules text; `path` names the file in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ReconcileError> {
        let raw: RawRules = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            ReconcileError::Rules {
                path: path.to_path_buf(),
                problems: vec![format!("{line}:{column}: {}", e.message().trim())],
            }
        })?;
        let mut problems = Vec::new();
        let mut at = |s: std::ops::Range<usize>, msg: String| {
            let (line, column) = line_col(text, s.start);
            problems.push(format!("{line}:{column}: {msg}"));
        };
        if *raw.version.get_ref() != RULES_FORMAT_VERSION {
            at(
                raw.version.span(),
                format!(
                    "version {} is not supported (this build reads version {RULES_FORMAT_VERSION})",
                    raw.version.get_ref()
                ),
            );
        }
        let mut authority = BTreeMap::new();
        for (key, owner) in raw.authority.get_ref() {
            let Some(d) = Domain::parse(key.get_ref()) else {
                at(
                    key.span(),
                    format!(
                        "authority: unknown domain `{}` (known: {})",
                        key.get_ref(),
                        Domain::ALL.map(Domain::key).join(", ")
                    ),
                );
                continue;
            };
            let who = match owner.get_ref().as_str() {
                "mes" => Authority::Mes,
                "twin" => Authority::Twin,
                other => {
                    at(
                        owner.span(),
                        format!(
                            "authority.{d}: `{other}` is not an owner (use \"mes\" or \"twin\")"
                        ),
                    );
                    continue;
                }
            };
            authority.insert(d, who);
        }
        for d in Domain::ALL {
            if !raw
                .authority
                .get_ref()
                .keys()
                .any(|k| k.get_ref() == d.key())
            {
                at(
                    raw.authority.span(),
                    format!(
                        "authority.{d} is not declared: every domain needs an owner, it is never inferred from data"
                    ),
                );
            }
        }

        let mut rules = Vec::new();
        let mut rule = |r: &RawRule, kind: RuleKind, problems: &mut Vec<String>| {
            if !r.enabled {
                return;
            }
            let name = kind.name();
            let Some(domain) = Domain::parse(r.domain.get_ref()) else {
                let (line, column) = line_col(text, r.domain.span().start);
                problems.push(format!(
                    "{line}:{column}: rules.{name}.domain: unknown domain `{}`",
                    r.domain.get_ref()
                ));
                return;
            };
            let Some(&who) = authority.get(&domain) else {
                // Reported above as an undeclared domain.
                return;
            };
            for (field, v) in r.numbers() {
                if !(v.get_ref().is_finite() && *v.get_ref() >= 0.0) {
                    let (line, column) = line_col(text, v.span().start);
                    problems.push(format!(
                        "{line}:{column}: rules.{name}.{field}: {} must be a finite number ≥ 0",
                        v.get_ref()
                    ));
                }
            }
            rules.push(Rule {
                kind,
                domain,
                authority: who,
            });
        };
        let num = |r: &RawRule, k: &str, problems: &mut Vec<String>| -> f64 {
            match r.numbers().into_iter().find(|(n, _)| *n == k) {
                Some((_, v)) => *v.get_ref(),
                None => {
                    let (line, column) = line_col(text, r.domain.span().start);
                    problems.push(format!("{line}:{column}: rule is missing `{k}` (a number)"));
                    0.0
                }
            }
        };
        let known = |problems: &mut Vec<String>, r: &RawRule, allowed: &[&str], name: &str| {
            for (k, v) in r.numbers() {
                if !allowed.contains(&k) {
                    let (line, column) = line_col(text, v.span().start);
                    problems.push(format!(
                        "{line}:{column}: rules.{name}: unknown setting `{k}` (known: {})",
                        allowed.join(", ")
                    ));
                }
            }
        };
        let r = &raw.rules;
        if let Some(x) = &r.mes_running_machine_stopped {
            let allowed = ["after_s", "spindle_below_rpm", "vibration_below_mm_s"];
            known(&mut problems, x, &allowed, "mes_running_machine_stopped");
            let k = RuleKind::MesRunningMachineStopped {
                after_s: num(x, "after_s", &mut problems),
                spindle_below_rpm: num(x, "spindle_below_rpm", &mut problems),
                vibration_below_mm_s: num(x, "vibration_below_mm_s", &mut problems),
            };
            rule(x, k, &mut problems);
        }
        if let Some(x) = &r.mes_idle_machine_cutting {
            let allowed = ["after_s", "spindle_above_rpm", "load_above_pct"];
            known(&mut problems, x, &allowed, "mes_idle_machine_cutting");
            let k = RuleKind::MesIdleMachineCutting {
                after_s: num(x, "after_s", &mut problems),
                spindle_above_rpm: num(x, "spindle_above_rpm", &mut problems),
                load_above_pct: num(x, "load_above_pct", &mut problems),
            };
            rule(x, k, &mut problems);
        }
        if let Some(x) = &r.part_count_divergence {
            let allowed = ["tolerance_parts", "tolerance_pct", "settle_s"];
            known(&mut problems, x, &allowed, "part_count_divergence");
            let k = RuleKind::PartCountDivergence {
                tolerance_parts: num(x, "tolerance_parts", &mut problems),
                tolerance_pct: num(x, "tolerance_pct", &mut problems),
                settle_s: num(x, "settle_s", &mut problems),
            };
            rule(x, k, &mut problems);
        }
        if let Some(x) = &r.completed_order_without_quality {
            let allowed = ["after_s"];
            known(
                &mut problems,
                x,
                &allowed,
                "completed_order_without_quality",
            );
            let k = RuleKind::CompletedOrderWithoutQuality {
                after_s: num(x, "after_s", &mut problems),
            };
            rule(x, k, &mut problems);
        }
        if !problems.is_empty() {
            return Err(ReconcileError::Rules {
                path: path.to_path_buf(),
                problems,
            });
        }
        let p = raw.properties;
        Ok(Self {
            source: path.to_path_buf(),
            authority,
            rules,
            properties: PropertyNames {
                spindle_speed: p.spindle_speed,
                spindle_load: p.spindle_load,
                vibration: p.vibration,
                part_count: p.part_count,
            },
        })
    }
}

// ---- raw form straight from serde ------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    version: Spanned<u32>,
    authority: Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
    #[serde(default)]
    properties: RawProperties,
    #[serde(default)]
    rules: RawRuleSet,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProperties {
    spindle_speed: String,
    spindle_load: String,
    vibration: String,
    part_count: String,
}

impl Default for RawProperties {
    fn default() -> Self {
        Self {
            spindle_speed: "spindle_speed".into(),
            spindle_load: "spindle_load".into(),
            vibration: "vibration_rms".into(),
            part_count: "part_count".into(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuleSet {
    mes_running_machine_stopped: Option<RawRule>,
    mes_idle_machine_cutting: Option<RawRule>,
    part_count_divergence: Option<RawRule>,
    completed_order_without_quality: Option<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    domain: Spanned<String>,
    #[serde(default = "yes")]
    enabled: bool,
    after_s: Option<Spanned<f64>>,
    spindle_below_rpm: Option<Spanned<f64>>,
    vibration_below_mm_s: Option<Spanned<f64>>,
    spindle_above_rpm: Option<Spanned<f64>>,
    load_above_pct: Option<Spanned<f64>>,
    tolerance_parts: Option<Spanned<f64>>,
    tolerance_pct: Option<Spanned<f64>>,
    settle_s: Option<Spanned<f64>>,
}

impl RawRule {
    /// The numeric settings present, by name.
    fn numbers(&self) -> Vec<(&'static str, &Spanned<f64>)> {
        [
            ("after_s", &self.after_s),
            ("spindle_below_rpm", &self.spindle_below_rpm),
            ("vibration_below_mm_s", &self.vibration_below_mm_s),
            ("spindle_above_rpm", &self.spindle_above_rpm),
            ("load_above_pct", &self.load_above_pct),
            ("tolerance_parts", &self.tolerance_parts),
            ("tolerance_pct", &self.tolerance_pct),
            ("settle_s", &self.settle_s),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect()
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rules_load() {
        let p = crate::config::shipped("config/reconcile.toml");
        let r = ReconcileRules::load(&p).expect("shipped rules");
        assert_eq!(r.authority_of(Domain::WorkOrderState), Authority::Mes);
        assert_eq!(r.authority_of(Domain::PhysicalState), Authority::Twin);
        assert_eq!(r.rules.len(), 4);
    }
}
