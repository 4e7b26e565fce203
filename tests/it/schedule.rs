//! The job-shop solver against the classic instances: parsing and its
//! errors, feasibility of every schedule it returns, the evaluator never
//! below the lower bound, determinism, known optima, and the command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mezzanine::schedule::instance::{Instance, load, parse_fjsp, parse_jsp};
use mezzanine::schedule::solver::{Evaluator, SolveOptions, check, construct, solve};

fn bench(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/jobshop")
        .join(name)
}

fn iterations(n: u64, seed: u64) -> SolveOptions {
    SolveOptions {
        time_limit: Duration::from_secs(600),
        max_iterations: Some(n),
        seed,
    }
}

#[test]
fn both_formats_parse_and_broken_files_name_the_line() {
    let ft06 = load(&bench("ft06.txt")).unwrap();
    assert_eq!((ft06.jobs.len(), ft06.machines, ft06.ops.len()), (6, 6, 36));
    assert!(ft06.is_classic());
    assert_eq!(ft06.ops[0].alternatives, vec![(2, 1)]);
    let mk01 = load(&bench("mk01.fjs")).unwrap();
    assert_eq!(
        (mk01.jobs.len(), mk01.machines, mk01.ops.len()),
        (10, 6, 55)
    );
    assert!(!mk01.is_classic());
    // Machines from 1 in the file, from 0 here.
    assert_eq!(mk01.ops[0].alternatives, vec![(0, 5), (2, 4)]);
    let e = parse_jsp(Path::new("x.txt"), "2 2\n0 3 1 4\n0 2 7 1\n")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "x.txt:3: machine 7 is not below 2");
    let e = parse_jsp(Path::new("x.txt"), "2 2\n0 3 1\n0 1 1 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("x.txt:2: expected `machine time` pairs"),
        "{e}"
    );
    let e = parse_jsp(Path::new("x.txt"), "3 2\n0 3 1 4\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("3 jobs announced, only 1 job line follows"),
        "{e}"
    );
    let e = parse_fjsp(Path::new("y.fjs"), "1 2\n1 2 1 3 9 4\n")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "y.fjs:2: machine 9 is not in 1..=2");
    let e = parse_fjsp(Path::new("y.fjs"), "1 2\n1 1 x 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("y.fjs:2: \"x\" is not a whole number"), "{e}");
}

/// A random feasible schedule: jobs dispatched in a random order.
fn random_schedule(inst: &Instance, seed: u64) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = vec![0; inst.jobs.len()];
    let mut machine = vec![0; inst.ops.len()];
    let mut seq = vec![Vec::new(); inst.machines];
    loop {
        let open: Vec<usize> = (0..inst.jobs.len())
            .filter(|&j| next[j] < inst.jobs[j].len())
            .collect();
        if open.is_empty() {
            break;
        }
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let j = open[(s % open.len() as u64) as usize];
        let o = inst.jobs[j][next[j]];
        let alts = &inst.ops[o].alternatives;
        let m = alts[((s >> 8) % alts.len() as u64) as usize].0;
        machine[o] = m;
        seq[m].push(o);
        next[j] += 1;
    }
    (machine, seq)
}

#[test]
fn the_evaluator_never_goes_below_the_optimum_and_solutions_are_feasible() {
    for (file, optimum) in [("ft06.txt", 55), ("la01.txt", 666), ("mk01.fjs", 40)] {
        let inst = load(&bench(file)).unwrap();
        let mut ev = Evaluator::new(&inst);
        for seed in 0..300 {
            let (m, s) = random_schedule(&inst, seed);
            let c = ev.eval(&m, &s).expect("a dispatch order is acyclic");
            assert!(c >= optimum, "{file}: {c} below the optimum {optimum}");
        }
        let (m, s) = construct(&inst);
        assert!(ev.eval(&m, &s).unwrap() >= optimum);
        let r = solve(&inst, iterations(200_000, 1), None);
        assert_eq!(check(&inst, &r.best), None, "{file}");
        assert!(r.best.makespan >= optimum);
        assert!(r.best.makespan <= r.initial_makespan);
    }
    // A sequence against the jobs' order is refused, not evaluated.
    let inst = load(&bench("ft06.txt")).unwrap();
    let (m, mut s) = construct(&inst);
    let a = inst.jobs[0][0];
    let b = inst.jobs[0][1];
    let (ma, mb) = (m[a], m[b]);
    s[ma].retain(|&x| x != a);
    s[mb].retain(|&x| x != b);
    s[ma].push(a);
    s[mb].insert(0, b);
    assert_eq!(Evaluator::new(&inst).eval(&m, &s), None);
}

#[test]
fn known_optima_are_reached_and_a_seed_gives_the_same_schedule() {
    for (file, optimum) in [
        ("ft06.txt", 55),
        ("la01.txt", 666),
        ("la05.txt", 593),
        ("mk01.fjs", 40),
    ] {
        let inst = load(&bench(file)).unwrap();
        let r = solve(&inst, iterations(300_000, 1), None);
        assert_eq!(
            r.best.makespan, optimum,
            "{file} after {} iterations",
            r.iterations
        );
        assert_eq!(check(&inst, &r.best), None);
    }
    let inst = load(&bench("ft10.txt")).unwrap();
    let a = solve(&inst, iterations(3_000, 7), None);
    let b = solve(&inst, iterations(3_000, 7), None);
    assert_eq!(a.best, b.best);
    assert_eq!(a.iterations, b.iterations);
    assert!(a.best.makespan < a.initial_makespan);
}

#[test]
fn schedule_command_prints_the_makespan_and_refuses_a_broken_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args([
            "schedule",
            "--time-limit-s",
            "2",
            "--lower-bound",
            "55",
            "--jsp",
        ])
        .arg(bench("ft06.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("makespan 55"), "{text}");
    assert!(text.contains("gap 0.00 %"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "2 2\n0 3 1 4\n0 x 1 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .args(["schedule", "--jsp"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.txt:3: \"x\" is not a whole number"),
        "{err}"
    );
}
