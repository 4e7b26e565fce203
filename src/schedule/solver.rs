//! The solver: an [`Instance`] and a time budget in; the best schedule
//! found, when it was found and how it got there out. Pure Rust, no Bevy.
//!
//! A constructive start (list scheduling: among the jobs' next operations,
//! the one that can finish first on its best machine, ties to the most
//! work remaining), then tabu search on the disjunctive graph: the moves
//! are the N5 neighbourhood (swap the first two or the last two operations
//! of each block of the critical path, Nowicki & Smutnicki 1996) and, for
//! a flexible job shop, moving a critical operation to another machine
//! that can run it. The reverse of each move is tabu for a few iterations
//! (unless it beats the best); after a long stretch without improvement
//! the search restarts from the best with a few random critical swaps.
//! Deterministic for a seed and an iteration limit; with a time limit it
//! stops at the budget, and reports the time to its best.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::instance::Instance;

/// A schedule: which machine runs each operation, and each machine's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    pub machine: Vec<usize>,
    pub sequence: Vec<Vec<usize>>,
    pub start: Vec<u32>,
    pub makespan: u32,
}

/// How long to search.
#[derive(Debug, Clone, Copy)]
pub struct SolveOptions {
    pub time_limit: Duration,
    pub max_iterations: Option<u64>,
    pub seed: u64,
}

/// What the search did.
#[derive(Debug, Clone)]
pub struct SolveReport {
    pub best: Solution,
    pub initial_makespan: u32,
    pub iterations: u64,
    pub time_to_best: Duration,
    pub elapsed: Duration,
    /// Why the search stopped.
    pub stopped: &'static str,
}

/// SplitMix64: small, fast, seedable (both searches draw from it).
pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Evaluates schedules: buffers kept between calls.
pub struct Evaluator<'a> {
    inst: &'a Instance,
    job_prev: Vec<usize>,
    job_next: Vec<usize>,
    mach_prev: Vec<usize>,
    mach_next: Vec<usize>,
    indeg: Vec<u8>,
    order: Vec<usize>,
    pub head: Vec<u32>,
    pub dur: Vec<u32>,
}

pub(super) const NONE: usize = usize::MAX;

/// Links consecutive entries of each list: `next[a] = b`, `prev[b] = a`
/// (every other entry `NONE`); returns how many entries the lists hold.
pub(super) fn link<'a>(
    lists: impl Iterator<Item = &'a [usize]>,
    prev: &mut [usize],
    next: &mut [usize],
) -> usize {
    prev.fill(NONE);
    next.fill(NONE);
    let mut placed = 0;
    for l in lists {
        placed += l.len();
        for w in l.windows(2) {
            next[w[0]] = w[1];
            prev[w[1]] = w[0];
        }
    }
    placed
}

impl<'a> Evaluator<'a> {
    pub fn new(inst: &'a Instance) -> Self {
        let n = inst.ops.len();
        let (mut job_prev, mut job_next) = (vec![NONE; n], vec![NONE; n]);
        link(
            inst.jobs.iter().map(Vec::as_slice),
            &mut job_prev,
            &mut job_next,
        );
        Self {
            inst,
            job_prev,
            job_next,
            mach_prev: vec![NONE; n],
            mach_next: vec![NONE; n],
            indeg: vec![0; n],
            order: Vec::with_capacity(n),
            head: vec![0; n],
            dur: vec![0; n],
        }
    }

    /// The makespan of (machine, sequence), or None when the sequences
    /// contradict the jobs' order (a cycle) or leave an operation out.
    pub fn eval(&mut self, machine: &[usize], seq: &[Vec<usize>]) -> Option<u32> {
        let n = self.inst.ops.len();
        let placed = link(
            seq.iter().map(Vec::as_slice),
            &mut self.mach_prev,
            &mut self.mach_next,
        );
        if placed != n {
            return None;
        }
        for (o, &m) in machine.iter().enumerate().take(n) {
            self.dur[o] = self.inst.ops[o]
                .alternatives
                .iter()
                .find(|a| a.0 == m)
                .map(|a| a.1)?;
            self.indeg[o] =
                u8::from(self.job_prev[o] != NONE) + u8::from(self.mach_prev[o] != NONE);
            self.head[o] = 0;
        }
        self.order.clear();
        for o in 0..n {
            if self.indeg[o] == 0 {
                self.order.push(o);
            }
        }
        let mut i = 0;
        let mut cmax = 0;
        while i < self.order.len() {
            let o = self.order[i];
            i += 1;
            let end = self.head[o] + self.dur[o];
            cmax = cmax.max(end);
            for s in [self.job_next[o], self.mach_next[o]] {
                if s != NONE {
                    self.head[s] = self.head[s].max(end);
                    self.indeg[s] -= 1;
                    if self.indeg[s] == 0 {
                        self.order.push(s);
                    }
                }
            }
        }
        (self.order.len() == n).then_some(cmax)
    }

    /// A critical path (after `eval`), first operation first.
    fn critical_path(&self, cmax: u32) -> Vec<usize> {
        let n = self.inst.ops.len();
        let Some(mut o) = (0..n).find(|&o| self.head[o] + self.dur[o] == cmax) else {
            return Vec::new();
        };
        let mut path = vec![o];
        loop {
            let h = self.head[o];
            if h == 0 {
                break;
            }
            let jp = self.job_prev[o];
            let mp = self.mach_prev[o];
            o = if mp != NONE && self.head[mp] + self.dur[mp] == h {
                mp
            } else if jp != NONE && self.head[jp] + self.dur[jp] == h {
                jp
            } else {
                break;
            };
            path.push(o);
        }
        path.reverse();
        path
    }
}

/// The constructive start: list scheduling, earliest finish first.
pub fn construct(inst: &Instance) -> (Vec<usize>, Vec<Vec<usize>>) {
    let n = inst.ops.len();
    let mut machine = vec![0; n];
    let mut seq = vec![Vec::new(); inst.machines];
    let mut next = vec![0usize; inst.jobs.len()];
    let mut job_free = vec![0u32; inst.jobs.len()];
    let mut mach_free = vec![0u32; inst.machines];
    let remaining: Vec<u32> = inst
        .jobs
        .iter()
        .map(|j| {
            j.iter()
                .map(|&o| {
                    inst.ops[o]
                        .alternatives
                        .iter()
                        .map(|a| a.1)
                        .min()
                        .unwrap_or(0)
                })
                .sum()
        })
        .collect();
    let mut work_left = remaining;
    for _ in 0..n {
        // (finish, -work left, job, machine)
        let mut best: Option<(u32, i64, usize, usize)> = None;
        for (j, ops) in inst.jobs.iter().enumerate() {
            let Some(&o) = ops.get(next[j]) else { continue };
            for &(m, d) in &inst.ops[o].alternatives {
                let fin = job_free[j].max(mach_free[m]) + d;
                let key = (fin, -i64::from(work_left[j]), j, m);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        let Some((fin, _, j, m)) = best else { break };
        let o = inst.jobs[j][next[j]];
        machine[o] = m;
        seq[m].push(o);
        next[j] += 1;
        job_free[j] = fin;
        mach_free[m] = fin;
        work_left[j] = work_left[j].saturating_sub(
            inst.ops[o]
                .alternatives
                .iter()
                .map(|a| a.1)
                .min()
                .unwrap_or(0),
        );
    }
    (machine, seq)
}

/// A move of the local searches (here and in `plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Move {
    /// Swap positions i and i+1 on machine m.
    Swap { m: usize, i: usize },
    /// Move operation o to machine m at position p.
    Reassign { o: usize, m: usize, p: usize },
    /// On machine m, take the operation at `from` out and put it at `to`.
    Insert { m: usize, from: usize, to: usize },
}

/// Reassignments are keyed apart from operation pairs.
const MACHINE_KEY: usize = 1 << 40;

/// The key a move is tabu under, and the key its reverse gets once made.
fn keys(machine: &[usize], seq: &[Vec<usize>], mv: Move) -> ((usize, usize), (usize, usize)) {
    match mv {
        Move::Swap { m, i } => {
            let (x, y) = (seq[m][i], seq[m][i + 1]);
            ((x, y), (y, x))
        }
        Move::Reassign { o, m, .. } => ((o, MACHINE_KEY + m), (o, MACHINE_KEY + machine[o])),
        Move::Insert { m, from, .. } => {
            let o = seq[m][from];
            ((o, o), (o, o))
        }
    }
}

pub(super) fn apply(machine: &mut [usize], seq: &mut [Vec<usize>], mv: Move) {
    match mv {
        Move::Swap { m, i } => seq[m].swap(i, i + 1),
        Move::Insert { m, from, to } => {
            let o = seq[m].remove(from);
            seq[m].insert(to.min(seq[m].len()), o);
        }
        Move::Reassign { o, m, p } => {
            let from = machine[o];
            if let Some(pos) = seq[from].iter().position(|&x| x == o) {
                seq[from].remove(pos);
            }
            let p = p.min(seq[m].len());
            seq[m].insert(p, o);
            machine[o] = m;
        }
    }
}

/// Runs the search.
pub fn solve(inst: &Instance, opts: SolveOptions, cancel: Option<&AtomicBool>) -> SolveReport {
    let t0 = Instant::now();
    let mut rng = Rng(opts.seed ^ 0x5EED_0F5C_4ED0_1E00);
    let mut ev = Evaluator::new(inst);
    let (mut machine, mut seq) = construct(inst);
    let mut cur = ev.eval(&machine, &seq).unwrap_or(u32::MAX);
    let initial = cur;
    let mut best = (machine.clone(), seq.clone(), cur);
    let mut time_to_best = t0.elapsed();
    let mut tabu: HashMap<(usize, usize), u64> = HashMap::new();
    let mut iter: u64 = 0;
    let mut since_improve: u64 = 0;
    let mut restarts: u64 = 0;
    let n = inst.ops.len().max(1);
    let stall = (n as u64 * 20).clamp(2_000, 20_000);
    let flexible = !inst.is_classic();
    let lb = inst.trivial_lower_bound();
    let mut stopped = "the lower bound is reached";
    while best.2 > lb {
        if opts.max_iterations.is_some_and(|m| iter >= m) {
            stopped = "iteration limit";
            break;
        }
        if iter.is_multiple_of(64) {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                stopped = "cancelled";
                break;
            }
            if t0.elapsed() >= opts.time_limit {
                stopped = "time limit";
                break;
            }
        }
        iter += 1;
        since_improve += 1;
        // Moves around the critical path of the current schedule.
        if ev.eval(&machine, &seq).is_none() {
            stopped = "internal: the current schedule is not acyclic";
            break;
        }
        let path = ev.critical_path(cur);
        let mut moves: Vec<Move> = Vec::new();
        let mut blocks: Vec<(usize, usize)> = Vec::new(); // (start, end) in path
        let mut s = 0;
        for k in 1..=path.len() {
            if k == path.len()
                || machine[path[k]] != machine[path[s]]
                || ev.mach_prev[path[k]] != path[k - 1]
            {
                blocks.push((s, k - 1));
                s = k;
            }
        }
        let nb = blocks.len();
        // Insertions widen the neighbourhood when the swaps alone stall
        // (e.g. one long block on the bottleneck machine) and cost time
        // otherwise.
        let insertions =
            since_improve > stall / 2 || blocks.iter().filter(|(a, b)| b > a).count() <= 1;
        let pos_of = |seq: &[Vec<usize>], o: usize, m: usize| {
            seq[m].iter().position(|&x| x == o).unwrap_or(0)
        };
        for (bi, &(a, b)) in blocks.iter().enumerate() {
            if b > a {
                let m = machine[path[a]];
                let (first, last) = (bi == 0, bi + 1 == nb);
                // N5: the first two of every block but the first, the last
                // two of every block but the last (both for a lone block).
                if !first || nb == 1 {
                    moves.push(Move::Swap {
                        m,
                        i: pos_of(&seq, path[a], m),
                    });
                }
                if !last || nb == 1 {
                    moves.push(Move::Swap {
                        m,
                        i: pos_of(&seq, path[b - 1], m),
                    });
                }
                // Insertions (the N7 family): an inner operation of the
                // block moved to its end or its front.
                if b > a + 1 && insertions {
                    let (pa, pb) = (pos_of(&seq, path[a], m), pos_of(&seq, path[b], m));
                    for &inner in &path[a + 1..b] {
                        let pk = pos_of(&seq, inner, m);
                        if !last || nb == 1 {
                            moves.push(Move::Insert {
                                m,
                                from: pk,
                                to: pb,
                            });
                        }
                        if !first || nb == 1 {
                            moves.push(Move::Insert {
                                m,
                                from: pk,
                                to: pa,
                            });
                        }
                    }
                }
            }
        }
        if flexible {
            for &o in &path {
                for &(m, _) in &inst.ops[o].alternatives {
                    if m == machine[o] {
                        continue;
                    }
                    // Where its start time puts it on the other machine.
                    let h = ev.head[o];
                    let p = seq[m]
                        .iter()
                        .position(|&x| ev.head[x] > h)
                        .unwrap_or(seq[m].len());
                    moves.push(Move::Reassign { o, m, p });
                }
            }
        }
        moves.sort_unstable_by_key(|m| match *m {
            Move::Swap { m, i } => (0, m, i, 0),
            Move::Insert { m, from, to } => (1, m, from, to),
            Move::Reassign { o, m, p } => (2, o, m, p),
        });
        moves.dedup();
        let mut chosen: Option<(u32, Move)> = None;
        let mut fallback: Option<(u64, Move)> = None;
        for &mv in &moves {
            let (mut mm, mut ss) = (machine.clone(), seq.clone());
            let (key, _) = keys(&machine, &seq, mv);
            apply(&mut mm, &mut ss, mv);
            let Some(c) = ev.eval(&mm, &ss) else { continue };
            let tabu_until = tabu.get(&key).copied().unwrap_or(0);
            if tabu_until > iter && c >= best.2 {
                if fallback.is_none_or(|f| tabu_until < f.0) {
                    fallback = Some((tabu_until, mv));
                }
                continue;
            }
            if chosen.is_none_or(|ch| c < ch.0) {
                chosen = Some((c, mv));
            }
        }
        let mv = match (chosen, fallback) {
            (Some((_, mv)), _) => mv,
            (None, Some((_, mv))) => mv,
            (None, None) => {
                since_improve = stall;
                Move::Swap {
                    m: 0,
                    i: usize::MAX,
                }
            }
        };
        if since_improve >= stall {
            // Restart from the best with a few random critical swaps.
            machine = best.0.clone();
            seq = best.1.clone();
            tabu.clear();
            since_improve = 0;
            // Each restart that found nothing better kicks harder.
            restarts += 1;
            let kicks = 2 + (restarts % 12) as usize;
            for _ in 0..kicks {
                let Some(c) = ev.eval(&machine, &seq) else {
                    break;
                };
                let path = ev.critical_path(c);
                let cand: Vec<usize> = (1..path.len())
                    .filter(|&k| {
                        machine[path[k]] == machine[path[k - 1]]
                            && ev.mach_prev[path[k]] == path[k - 1]
                    })
                    .collect();
                if cand.is_empty() {
                    break;
                }
                let k = cand[rng.below(cand.len())];
                let m = machine[path[k]];
                let i = pos_of(&seq, path[k - 1], m);
                apply(&mut machine, &mut seq, Move::Swap { m, i });
                // Two operations of one job in a row on one machine (a
                // flexible shop) cannot trade places: undo.
                if ev.eval(&machine, &seq).is_none() {
                    apply(&mut machine, &mut seq, Move::Swap { m, i });
                }
            }
            cur = ev.eval(&machine, &seq).unwrap_or(u32::MAX);
            continue;
        }
        let (_, back) = keys(&machine, &seq, mv);
        apply(&mut machine, &mut seq, mv);
        // The move back is tabu: swapping the pair again, moving the
        // inserted operation again, or returning it to its machine.
        let tenure = 8 + rng.below(8) as u64 + (n as u64 / 50);
        tabu.insert(back, iter + tenure);
        cur = ev.eval(&machine, &seq).unwrap_or(u32::MAX);
        if cur < best.2 {
            best = (machine.clone(), seq.clone(), cur);
            time_to_best = t0.elapsed();
            since_improve = 0;
            restarts = 0;
        }
    }
    let mut ev = Evaluator::new(inst);
    let makespan = ev.eval(&best.0, &best.1).unwrap_or(u32::MAX);
    SolveReport {
        best: Solution {
            machine: best.0,
            sequence: best.1,
            start: ev.head.clone(),
            makespan,
        },
        initial_makespan: initial,
        iterations: iter,
        time_to_best,
        elapsed: t0.elapsed(),
        stopped,
    }
}

/// Why a schedule is not feasible for the instance, if it is not: an
/// operation on a machine that cannot run it, two operations overlapping on
/// a machine, or an operation starting before its job's previous one ended.
pub fn check(inst: &Instance, s: &Solution) -> Option<String> {
    let dur = |o: usize| {
        inst.ops[o]
            .alternatives
            .iter()
            .find(|a| a.0 == s.machine[o])
            .map(|a| a.1)
    };
    for o in 0..inst.ops.len() {
        if dur(o).is_none() {
            return Some(format!(
                "operation {o} on machine {}, which cannot run it",
                s.machine[o]
            ));
        }
    }
    for (m, q) in s.sequence.iter().enumerate() {
        for w in q.windows(2) {
            let (a, b) = (w[0], w[1]);
            if s.machine[a] != m || s.machine[b] != m {
                return Some(format!(
                    "machine {m}'s sequence holds an operation assigned elsewhere"
                ));
            }
            if s.start[a] + dur(a).unwrap_or(0) > s.start[b] {
                return Some(format!("operations {a} and {b} overlap on machine {m}"));
            }
        }
    }
    for j in &inst.jobs {
        for w in j.windows(2) {
            if s.start[w[0]] + dur(w[0]).unwrap_or(0) > s.start[w[1]] {
                return Some(format!("operation {} starts before {} ends", w[1], w[0]));
            }
        }
    }
    let cmax = (0..inst.ops.len())
        .map(|o| s.start[o] + dur(o).unwrap_or(0))
        .max()
        .unwrap_or(0);
    (cmax != s.makespan).then(|| format!("makespan {} but the schedule ends at {cmax}", s.makespan))
}
