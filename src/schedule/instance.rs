//! Scheduling instances: the two standard benchmark formats in, an
//! [`Instance`] out, or an error naming the file and line.
//!
//! - Job shop (`.txt`, OR-Library): `jobs machines`, then per job the
//!   `machine time` pairs in operation order; machines from 0.
//! - Flexible job shop (`.fjs`, Brandimarte): `jobs machines [avg]`, then
//!   per job the number of operations, then per operation `k` followed by
//!   `k` pairs `machine time`; machines from 1.

use std::path::{Path, PathBuf};

use super::ScheduleError;

/// One operation: the machines that can run it and how long each takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub job: usize,
    /// (machine, duration), at least one.
    pub alternatives: Vec<(usize, u32)>,
}

/// A (flexible) job shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub machines: usize,
    /// Operations of each job, in order, as indexes into `ops`.
    pub jobs: Vec<Vec<usize>>,
    pub ops: Vec<Operation>,
}

impl Instance {
    /// Every operation has exactly one machine.
    pub fn is_classic(&self) -> bool {
        self.ops.iter().all(|o| o.alternatives.len() == 1)
    }

    /// A lower bound on the makespan: the longest job (shortest
    /// alternative per operation) and the most loaded machine (classic only).
    pub fn trivial_lower_bound(&self) -> u32 {
        let job = self
            .jobs
            .iter()
            .map(|j| {
                j.iter()
                    .map(|&o| {
                        self.ops[o]
                            .alternatives
                            .iter()
                            .map(|a| a.1)
                            .min()
                            .unwrap_or(0)
                    })
                    .sum::<u32>()
            })
            .max()
            .unwrap_or(0);
        let mut load = vec![0u32; self.machines];
        if self.is_classic() {
            for o in &self.ops {
                load[o.alternatives[0].0] += o.alternatives[0].1;
            }
        }
        job.max(load.into_iter().max().unwrap_or(0))
    }
}

fn numbers(path: &Path, text: &str) -> Result<Vec<(usize, Vec<u64>)>, ScheduleError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut v = Vec::new();
        for tok in line.split_whitespace() {
            match tok.parse::<u64>() {
                Ok(n) => v.push(n),
                Err(_) => {
                    return Err(ScheduleError::Instance {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: format!("{tok:?} is not a whole number"),
                    });
                }
            }
        }
        if !v.is_empty() {
            out.push((i + 1, v));
        }
    }
    Ok(out)
}

fn bad(path: &Path, line: usize, message: impl Into<String>) -> ScheduleError {
    ScheduleError::Instance {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// The first line's job and machine counts (checked against the job lines
/// after it) → an empty instance of that size, and the number of jobs.
fn header(
    path: &Path,
    rows: &[(usize, Vec<u64>)],
    form: &str,
) -> Result<(Instance, usize), ScheduleError> {
    let Some((l0, head)) = rows.first() else {
        return Err(bad(path, 1, format!("empty file: expected `{form}`")));
    };
    if head.len() < 2 || head[0] == 0 || head[1] == 0 || head[0] > 100_000 || head[1] > 10_000 {
        return Err(bad(path, *l0, format!("expected `{form}` (both ≥ 1)")));
    }
    let (n_jobs, n_m) = (head[0] as usize, head[1] as usize);
    let lines = rows.len() - 1;
    if lines < n_jobs {
        return Err(bad(
            path,
            rows.last().map_or(1, |r| r.0),
            format!(
                "{n_jobs} jobs announced, only {lines} job line{} follow{}",
                if lines == 1 { "" } else { "s" },
                if lines == 1 { "s" } else { "" }
            ),
        ));
    }
    let inst = Instance {
        name: name_of(path),
        machines: n_m,
        jobs: Vec::with_capacity(n_jobs),
        ops: Vec::new(),
    };
    Ok((inst, n_jobs))
}

/// Reads a classic job-shop file.
pub fn parse_jsp(path: &Path, text: &str) -> Result<Instance, ScheduleError> {
    let rows = numbers(path, text)?;
    let (mut inst, n_jobs) = header(path, &rows, "jobs machines")?;
    let n_m = inst.machines;
    for (j, (line, v)) in rows[1..=n_jobs].iter().enumerate() {
        if v.is_empty() || v.len() % 2 != 0 {
            return Err(bad(path, *line, "expected `machine time` pairs"));
        }
        let mut ops = Vec::new();
        for pair in v.chunks(2) {
            let (m, t) = (pair[0] as usize, pair[1]);
            if m >= n_m {
                return Err(bad(path, *line, format!("machine {m} is not below {n_m}")));
            }
            if t > u64::from(u32::MAX / 4) {
                return Err(bad(path, *line, format!("time {t} is too large")));
            }
            ops.push(inst.ops.len());
            inst.ops.push(Operation {
                job: j,
                alternatives: vec![(m, t as u32)],
            });
        }
        inst.jobs.push(ops);
    }
    Ok(inst)
}

/// Reads a flexible job-shop file.
pub fn parse_fjsp(path: &Path, text: &str) -> Result<Instance, ScheduleError> {
    let rows = numbers(path, text)?;
    let (mut inst, n_jobs) = header(path, &rows, "jobs machines [average]")?;
    let n_m = inst.machines;
    for (j, (line, v)) in rows[1..=n_jobs].iter().enumerate() {
        let mut it = v.iter().copied();
        let n_ops = it.next().unwrap_or(0) as usize;
        if n_ops == 0 || n_ops > 100_000 {
            return Err(bad(
                path,
                *line,
                "a job needs its number of operations first",
            ));
        }
        let mut ops = Vec::new();
        for k in 0..n_ops {
            let alts = it.next().unwrap_or(0) as usize;
            if alts == 0 || alts > n_m {
                return Err(bad(
                    path,
                    *line,
                    format!("operation {}: {alts} machines", k + 1),
                ));
            }
            let mut a = Vec::with_capacity(alts);
            for _ in 0..alts {
                let (Some(m), Some(t)) = (it.next(), it.next()) else {
                    return Err(bad(
                        path,
                        *line,
                        format!("operation {}: a `machine time` pair is cut short", k + 1),
                    ));
                };
                if m == 0 || m as usize > n_m {
                    return Err(bad(path, *line, format!("machine {m} is not in 1..={n_m}")));
                }
                if t > u64::from(u32::MAX / 4) {
                    return Err(bad(path, *line, format!("time {t} is too large")));
                }
                a.push((m as usize - 1, t as u32));
            }
            ops.push(inst.ops.len());
            inst.ops.push(Operation {
                job: j,
                alternatives: a,
            });
        }
        if it.next().is_some() {
            return Err(bad(path, *line, "more numbers than its operations take"));
        }
        inst.jobs.push(ops);
    }
    Ok(inst)
}

fn name_of(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "instance".into(), |s| s.to_string_lossy().into_owned())
}

/// Reads a file by its extension (`.fjs`: flexible, else classic).
pub fn load(path: &Path) -> Result<Instance, ScheduleError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Io {
        path: PathBuf::from(path),
        source,
    })?;
    if path.extension().is_some_and(|e| e == "fjs") {
        parse_fjsp(path, &text)
    } else {
        parse_jsp(path, &text)
    }
}
