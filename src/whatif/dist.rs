//! Probability distributions of times: parameters in, draws from a
//! [`Stream`] out. Deterministic, exponential, truncated normal, Erlang-k,
//! uniform and empirical (resampled from observed values, as fitted from
//! the history). All values are in the model's time unit.

use std::sync::Arc;

use serde::Deserialize;

use super::rng::Stream;

/// A distribution of non-negative durations.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    Fixed(f64),
    Exponential {
        mean: f64,
    },
    /// A normal distribution truncated below at `min` (redrawn, never clamped).
    Normal {
        mean: f64,
        sd: f64,
        min: f64,
    },
    /// The sum of `k` exponentials with mean `mean / k` each.
    Erlang {
        mean: f64,
        k: u32,
    },
    Uniform {
        min: f64,
        max: f64,
    },
    /// Drawn uniformly from observed values.
    Empirical(Arc<[f64]>),
}

impl Dist {
    /// One draw.
    #[inline]
    pub fn sample(&self, s: &mut Stream) -> f64 {
        match self {
            Dist::Fixed(v) => *v,
            Dist::Exponential { mean } => -mean * s.open01().ln(),
            Dist::Normal { mean, sd, min } => {
                for _ in 0..64 {
                    let v = mean + sd * s.normal();
                    if v >= *min {
                        return v;
                    }
                }
                // Only when `min` lies many deviations above the mean.
                *min
            }
            Dist::Erlang { mean, k } => {
                let mut p = 1.0;
                for _ in 0..*k {
                    p *= s.open01();
                }
                -mean / f64::from(*k) * p.ln()
            }
            Dist::Uniform { min, max } => min + (max - min) * s.open01(),
            Dist::Empirical(v) => {
                if v.is_empty() {
                    return 0.0;
                }
                let i = ((s.open01() * v.len() as f64) as usize).min(v.len() - 1);
                v[i]
            }
        }
    }

    /// The mean (of the untruncated normal).
    pub fn mean(&self) -> f64 {
        match self {
            Dist::Fixed(v) => *v,
            Dist::Exponential { mean } | Dist::Normal { mean, .. } | Dist::Erlang { mean, .. } => {
                *mean
            }
            Dist::Uniform { min, max } => 0.5 * (min + max),
            Dist::Empirical(v) if v.is_empty() => 0.0,
            Dist::Empirical(v) => v.iter().sum::<f64>() / v.len() as f64,
        }
    }

    /// Every value multiplied by `k` (a cycle time × k, an MTTR × k).
    pub fn scaled(&self, k: f64) -> Dist {
        match self {
            Dist::Fixed(v) => Dist::Fixed(v * k),
            Dist::Exponential { mean } => Dist::Exponential { mean: mean * k },
            Dist::Normal { mean, sd, min } => Dist::Normal {
                mean: mean * k,
                sd: sd * k,
                min: min * k,
            },
            Dist::Erlang { mean, k: n } => Dist::Erlang {
                mean: mean * k,
                k: *n,
            },
            Dist::Uniform { min, max } => Dist::Uniform {
                min: min * k,
                max: max * k,
            },
            Dist::Empirical(v) => Dist::Empirical(v.iter().map(|x| x * k).collect()),
        }
    }

    /// Why these parameters are not a distribution of durations, if so.
    pub fn problem(&self) -> Option<String> {
        let bad = |v: f64| !v.is_finite() || v < 0.0;
        match self {
            Dist::Fixed(v) if bad(*v) => Some(format!("fixed value {v} is not a duration")),
            Dist::Exponential { mean } if bad(*mean) || *mean == 0.0 => {
                Some(format!("exponential mean {mean} must be > 0"))
            }
            Dist::Normal { mean, sd, min } if bad(*sd) || !mean.is_finite() || bad(*min) => Some(
                format!("normal mean {mean}, sd {sd}, min {min}: sd and min must be ≥ 0"),
            ),
            Dist::Erlang { mean, k } if bad(*mean) || *mean == 0.0 || *k == 0 || *k > 1000 => Some(
                format!("erlang mean {mean}, k {k}: mean > 0 and 1 ≤ k ≤ 1000"),
            ),
            Dist::Uniform { min, max } if bad(*min) || bad(*max) || max < min => Some(format!(
                "uniform [{min}, {max}] is not a range of durations"
            )),
            Dist::Empirical(v) if v.is_empty() => Some("empirical values are empty".into()),
            Dist::Empirical(v) if v.iter().any(|x| bad(*x)) => {
                Some("empirical values must be finite and ≥ 0".into())
            }
            _ => None,
        }
    }
}

/// A distribution as a model or scenario file writes it: a bare number
/// (fixed) or `{ dist = "exp", mean = 2.0 }`, `{ dist = "normal", mean,
/// sd, min }`, `{ dist = "erlang", mean, k }`, `{ dist = "uniform", min,
/// max }`, `{ dist = "empirical", values = [..] }`, `{ dist = "fixed",
/// value }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DistSpec {
    Number(f64),
    Table(DistTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum DistTable {
    Fixed {
        value: f64,
    },
    #[serde(alias = "exponential")]
    Exp {
        mean: f64,
    },
    Normal {
        mean: f64,
        sd: f64,
        #[serde(default)]
        min: f64,
    },
    Erlang {
        mean: f64,
        k: u32,
    },
    Uniform {
        min: f64,
        max: f64,
    },
    Empirical {
        values: Vec<f64>,
    },
}

impl DistSpec {
    /// The distribution, with every value multiplied by `unit_s` (the
    /// file's time unit in seconds).
    pub fn to_dist(&self, unit_s: f64) -> Result<Dist, String> {
        let d = match self {
            DistSpec::Number(v) => Dist::Fixed(*v),
            DistSpec::Table(t) => match t {
                DistTable::Fixed { value } => Dist::Fixed(*value),
                DistTable::Exp { mean } => Dist::Exponential { mean: *mean },
                DistTable::Normal { mean, sd, min } => Dist::Normal {
                    mean: *mean,
                    sd: *sd,
                    min: *min,
                },
                DistTable::Erlang { mean, k } => Dist::Erlang { mean: *mean, k: *k },
                DistTable::Uniform { min, max } => Dist::Uniform {
                    min: *min,
                    max: *max,
                },
                DistTable::Empirical { values } => Dist::Empirical(values.clone().into()),
            },
        };
        match d.problem() {
            Some(p) => Err(p),
            None => Ok(d.scaled(unit_s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatif::rng::Purpose;

    fn mean_of(d: &Dist) -> f64 {
        let mut s = Stream::new(5, 0, 1, Purpose::Process);
        (0..200_000).map(|_| d.sample(&mut s)).sum::<f64>() / 200_000.0
    }

    #[test]
    fn sample_means_match() {
        for d in [
            Dist::Fixed(3.0),
            Dist::Exponential { mean: 2.0 },
            Dist::Normal {
                mean: 10.0,
                sd: 1.0,
                min: 0.0,
            },
            Dist::Erlang { mean: 4.0, k: 3 },
            Dist::Uniform { min: 1.0, max: 3.0 },
            Dist::Empirical(vec![1.0, 2.0, 6.0].into()),
        ] {
            let m = mean_of(&d);
            assert!((m - d.mean()).abs() < 0.02 * d.mean(), "{d:?}: {m}");
        }
    }
}
