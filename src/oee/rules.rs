//! The loss rules: a TOML file in (which machine state and reason counts
//! as which loss, the micro-stop threshold, whether changeovers count
//! against availability, the start-up window for rejects); [`LossRules`]
//! out, or every problem as `file:line:column`.
//!
//! ```toml
//! version = 1
//! micro_stop_threshold_s = 120     # shorter stops: performance (micro-stops)
//! changeover = "availability"      # or "planned": setups leave planned busy time
//! startup_reject_window_s = 600    # rejects this soon after a setup ends: start-up rejects
//!
//! [[loss]]                         # first match wins; reason "*" or absent: any
//! state = "down"
//! loss = "breakdown"
//!
//! [[loss]]
//! state = "idle"
//! reason = "break"
//! loss = "planned"                 # not planned busy time
//! ```
//!
//! Losses: `breakdown`, `setup`, `stop` (availability), `micro_stop`
//! (performance, whatever its length), `planned` (out of planned busy
//! time). Stops no rule names: down → breakdown, setup → setup, idle,
//! blocked, starved → stop; any of these shorter than the threshold is a
//! micro-stop (performance). Time with no recorded state is its own
//! availability loss, `no data`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::OeeError;
use crate::twin::MachineState;

/// What a stop costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loss {
    Breakdown,
    Setup,
    /// A stop at least as long as the threshold (idle, blocked, starved).
    Stop,
    NoData,
    MicroStop,
    ReducedSpeed,
    StartupRejects,
    ProductionRejects,
    /// Not planned busy time.
    Planned,
}

impl Loss {
    pub fn label(self) -> &'static str {
        match self {
            Loss::Breakdown => "breakdowns",
            Loss::Setup => "setups and changeovers",
            Loss::Stop => "stops",
            Loss::NoData => "no data",
            Loss::MicroStop => "micro-stops",
            Loss::ReducedSpeed => "reduced speed",
            Loss::StartupRejects => "start-up rejects",
            Loss::ProductionRejects => "production rejects",
            Loss::Planned => "planned (excluded)",
        }
    }

    /// Which factor it lowers: 'A', 'P', 'Q', or '-' (excluded).
    pub fn factor(self) -> char {
        match self {
            Loss::Breakdown | Loss::Setup | Loss::Stop | Loss::NoData => 'A',
            Loss::MicroStop | Loss::ReducedSpeed => 'P',
            Loss::StartupRejects | Loss::ProductionRejects => 'Q',
            Loss::Planned => '-',
        }
    }

    fn parse(s: &str) -> Option<Loss> {
        Some(match s {
            "breakdown" => Loss::Breakdown,
            "setup" => Loss::Setup,
            "stop" => Loss::Stop,
            "micro_stop" => Loss::MicroStop,
            "planned" => Loss::Planned,
            _ => return None,
        })
    }
}

/// One mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct LossRule {
    pub state: MachineState,
    /// None: any reason.
    pub reason: Option<String>,
    pub loss: Loss,
}

/// The loss rules.
#[derive(Debug, Clone, PartialEq)]
pub struct LossRules {
    pub source: Option<PathBuf>,
    pub micro_stop_threshold_s: f64,
    /// Setups count against availability (false: they are planned).
    pub changeover_counts: bool,
    pub startup_reject_window_s: f64,
    pub rules: Vec<LossRule>,
}

impl Default for LossRules {
    fn default() -> Self {
        Self {
            source: None,
            micro_stop_threshold_s: 120.0,
            changeover_counts: true,
            startup_reject_window_s: 600.0,
            rules: Vec::new(),
        }
    }
}

/// What a stop state is before the threshold applies.
pub fn default_loss(state: MachineState) -> Option<Loss> {
    match state {
        MachineState::Running => None,
        MachineState::Down => Some(Loss::Breakdown),
        MachineState::Setup => Some(Loss::Setup),
        MachineState::Idle | MachineState::Blocked | MachineState::Starved => Some(Loss::Stop),
        _ => Some(Loss::NoData),
    }
}

impl LossRules {
    /// The rules in a clock `time_scale` times faster (the embedded demo
    /// compresses plant time): its thresholds divided by it.
    pub fn scaled(&self, time_scale: f64) -> LossRules {
        let k = time_scale.max(1e-9);
        LossRules {
            micro_stop_threshold_s: self.micro_stop_threshold_s / k,
            startup_reject_window_s: self.startup_reject_window_s / k,
            ..self.clone()
        }
    }

    /// The loss of a stop in `state` for `reason` (None: running).
    pub fn classify(&self, state: MachineState, reason: &str) -> Option<Loss> {
        if state == MachineState::Running {
            return None;
        }
        let mapped = self
            .rules
            .iter()
            .find(|r| {
                r.state == state
                    && r.reason
                        .as_deref()
                        .is_none_or(|x| x.eq_ignore_ascii_case(reason))
            })
            .map(|r| r.loss);
        let loss = mapped.or_else(|| default_loss(state));
        match loss {
            Some(Loss::Setup) if !self.changeover_counts => Some(Loss::Planned),
            l => l,
        }
    }

    pub fn load(path: &Path) -> Result<Self, OeeError> {
        let text = std::fs::read_to_string(path).map_err(|source| OeeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, OeeError> {
        let mut problems: Vec<(usize, usize, String)> = Vec::new();
        let at = |offset: usize| {
            let before = &text[..offset.min(text.len())];
            (
                before.matches('\n').count() + 1,
                before.chars().rev().take_while(|c| *c != '\n').count() + 1,
            )
        };
        let file: FileToml = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let (l, c) = e.span().map_or((1, 1), |s| at(s.start));
                return Err(OeeError::File {
                    path: path.to_path_buf(),
                    problems: vec![(l, c, e.message().to_string())],
                });
            }
        };
        let mut rules = LossRules {
            source: Some(path.to_path_buf()),
            ..Default::default()
        };
        if *file.version.get_ref() != 1 {
            let (l, c) = at(file.version.span().start);
            problems.push((l, c, format!("version {} is not 1", file.version.get_ref())));
        }
        let positive = |v: &Option<Spanned<f64>>, name: &str, problems: &mut Vec<_>| {
            v.as_ref().and_then(|x| {
                let val = *x.get_ref();
                if val.is_finite() && val >= 0.0 {
                    Some(val)
                } else {
                    let (l, c) = at(x.span().start);
                    problems.push((l, c, format!("{name} must be a number of seconds ≥ 0")));
                    None
                }
            })
        };
        if let Some(v) = positive(
            &file.micro_stop_threshold_s,
            "micro_stop_threshold_s",
            &mut problems,
        ) {
            rules.micro_stop_threshold_s = v;
        }
        if let Some(v) = positive(
            &file.startup_reject_window_s,
            "startup_reject_window_s",
            &mut problems,
        ) {
            rules.startup_reject_window_s = v;
        }
        if let Some(c) = &file.changeover {
            match c.get_ref().as_str() {
                "availability" => rules.changeover_counts = true,
                "planned" => rules.changeover_counts = false,
                other => {
                    let (l, col) = at(c.span().start);
                    problems.push((
                        l,
                        col,
                        format!("changeover {other:?}: expected \"availability\" or \"planned\""),
                    ));
                }
            }
        }
        for r in &file.loss {
            let state = MachineState::parse(r.state.get_ref());
            let loss = Loss::parse(r.loss.get_ref());
            match (state, loss) {
                (Some(MachineState::Running), _) => {
                    let (l, c) = at(r.state.span().start);
                    problems.push((l, c, "running is production time, not a loss".into()));
                }
                (Some(state), Some(loss)) => rules.rules.push(LossRule {
                    state,
                    reason: r
                        .reason
                        .as_ref()
                        .map(|x| x.get_ref().clone())
                        .filter(|x| x != "*"),
                    loss,
                }),
                (None, _) => {
                    let (l, c) = at(r.state.span().start);
                    problems.push((
                        l,
                        c,
                        format!(
                            "state {:?}: expected down, setup, idle, blocked or starved",
                            r.state.get_ref()
                        ),
                    ));
                }
                (_, None) => {
                    let (l, c) = at(r.loss.span().start);
                    problems.push((
                        l,
                        c,
                        format!(
                            "loss {:?}: expected breakdown, setup, stop, micro_stop or planned",
                            r.loss.get_ref()
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(rules)
        } else {
            Err(OeeError::File {
                path: path.to_path_buf(),
                problems,
            })
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    version: Spanned<u32>,
    micro_stop_threshold_s: Option<Spanned<f64>>,
    changeover: Option<Spanned<String>>,
    startup_reject_window_s: Option<Spanned<f64>>,
    #[serde(default)]
    loss: Vec<LossToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LossToml {
    state: Spanned<String>,
    reason: Option<Spanned<String>>,
    loss: Spanned<String>,
}
