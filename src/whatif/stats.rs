//! Statistics over replications: per-replication values in, means with 95 %
//! confidence intervals and paired differences out.
//!
//! The baseline and each scenario run with the same seeds (common random
//! numbers), so their difference is estimated per replication and its
//! interval is the paired-t interval on those differences: much narrower
//! than two independent intervals, and exactly 0 when nothing changed.

/// Student-t 0.975 quantiles for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::INFINITY,
        1..=30 => T975[df - 1],
        // Cornish–Fisher expansion around the normal quantile.
        _ => {
            let z: f64 = 1.959_964;
            let d = df as f64;
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

/// A mean with its 95 % confidence half-width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub half_width: f64,
    pub n: usize,
}

impl Estimate {
    /// From replication values (NaNs skipped).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Estimate {
        let v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        let n = v.len();
        if n == 0 {
            return Estimate {
                mean: f64::NAN,
                half_width: f64::NAN,
                n,
            };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let half_width = if n < 2 {
            f64::INFINITY
        } else {
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t975(n - 1) * (var / n as f64).sqrt()
        };
        Estimate {
            mean,
            half_width,
            n,
        }
    }

    /// The paired difference scenario − baseline, replication by replication.
    pub fn paired(base: &[f64], scen: &[f64]) -> Estimate {
        Estimate::of(base.iter().zip(scen).map(|(b, s)| {
            if b.is_nan() || s.is_nan() {
                f64::NAN
            } else {
                s - b
            }
        }))
    }

    /// The interval excludes 0.
    pub fn significant(&self) -> bool {
        self.mean.abs() > self.half_width
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_match_hand_computation() {
        let e = Estimate::of([1.0, 2.0, 3.0, 4.0]);
        assert_eq!(e.mean, 2.5);
        // s = 1.29099, t(3) = 3.182 → 3.182 × 1.29099 / 2
        assert!((e.half_width - 2.054_01).abs() < 1e-4, "{}", e.half_width);
        let d = Estimate::paired(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!((d.mean, d.half_width), (0.0, 0.0));
        assert!((t975(60) - 2.000).abs() < 0.002, "{}", t975(60));
        assert!((t975(120) - 1.980).abs() < 0.002);
    }
}
