//! Same problem + settings → the same front, bit for bit, whatever the
//! thread count.

use fedsky_placement::problems::{Bnh, Dtlz2, Osy, Tnk, Zdt1, Zdt2, Zdt3, Zdt6};
use fedsky_placement::{
    Nsga2Result, Nsga2Settings, Problem, Solved, SolverChoice, Variable, exact, nsga2, solve,
};

/// Every bit of a result, in order.
fn bits(result: &Nsga2Result) -> Vec<u64> {
    let mut out = vec![result.evaluations, result.generations as u64];
    for s in &result.front {
        for v in s
            .variables
            .iter()
            .chain(&s.objectives)
            .chain(&s.constraints)
        {
            out.push(v.to_bits());
        }
        out.push(s.violation.to_bits());
    }
    out
}

/// FNV-1a over the bits, to pin a run's exact output in one number.
fn fingerprint(bits: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bits {
        for byte in b.to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

fn settings(seed: u64, generations: usize) -> Nsga2Settings {
    Nsga2Settings {
        seed,
        generations,
        ..Nsga2Settings::default()
    }
}

/// A categorical problem with enough structure to have a real front.
struct Grid {
    variables: Vec<Variable>,
}

impl Problem for Grid {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        2
    }
    fn n_constraints(&self) -> usize {
        1
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], g: &mut [f64]) {
        let s: f64 = x.iter().sum();
        let t: f64 = x
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 + 1.0) * v)
            .sum();
        f[0] = s + 0.1 * t;
        f[1] = (40.0 - s).abs() + 0.05 * (t % 7.0);
        g[0] = 5.0 - s;
    }
}

fn grid() -> Grid {
    Grid {
        variables: vec![Variable::categorical(8); 6],
    }
}

#[test]
fn same_seed_same_bits() {
    let a = nsga2(&Zdt1::default(), &settings(7, 40)).expect("runs");
    let b = nsga2(&Zdt1::default(), &settings(7, 40)).expect("runs");
    assert_eq!(bits(&a), bits(&b));
    let c = nsga2(&Zdt1::default(), &settings(8, 40)).expect("runs");
    assert_ne!(bits(&a), bits(&c), "another seed should give another front");
}

#[test]
fn thread_count_does_not_change_nsga2() {
    for (name, one, two, four) in [
        (
            "zdt1",
            in_pool(1, || nsga2(&Zdt1::default(), &settings(3, 30))),
            in_pool(2, || nsga2(&Zdt1::default(), &settings(3, 30))),
            in_pool(4, || nsga2(&Zdt1::default(), &settings(3, 30))),
        ),
        (
            "osy",
            in_pool(1, || nsga2(&Osy::default(), &settings(3, 30))),
            in_pool(2, || nsga2(&Osy::default(), &settings(3, 30))),
            in_pool(4, || nsga2(&Osy::default(), &settings(3, 30))),
        ),
        (
            "grid",
            in_pool(1, || nsga2(&grid(), &settings(3, 30))),
            in_pool(2, || nsga2(&grid(), &settings(3, 30))),
            in_pool(4, || nsga2(&grid(), &settings(3, 30))),
        ),
        (
            "placement with a standby",
            in_pool(1, || nsga2(&hospitals(true), &settings(3, 10))),
            in_pool(2, || nsga2(&hospitals(true), &settings(3, 10))),
            in_pool(4, || nsga2(&hospitals(true), &settings(3, 10))),
        ),
    ] {
        let one = bits(&one.expect("runs"));
        assert_eq!(one, bits(&two.expect("runs")), "{name}: 1 vs 2 threads");
        assert_eq!(one, bits(&four.expect("runs")), "{name}: 1 vs 4 threads");
    }
}

#[test]
fn thread_count_does_not_change_exact() {
    let one = in_pool(1, || exact(&grid(), 10_000_000)).expect("runs");
    let two = in_pool(2, || exact(&grid(), 10_000_000)).expect("runs");
    assert_eq!(one.evaluations, 262_144);
    assert!(!one.front.is_empty());
    assert_eq!(one, two);
}

#[test]
fn auto_solve_is_reproducible() {
    let run = || solve(&grid(), &SolverChoice::default()).expect("runs");
    let a: Solved = run();
    let b: Solved = run();
    assert_eq!(a, b);
}

/// Pins the exact output of one short run. It holds on every platform
/// (pure-Rust `libm`, `ChaCha8Rng`, no parallel reductions); it changes only
/// when the algorithm does, and then must be updated on purpose.
#[test]
fn pinned_fingerprint() {
    let result = nsga2(&Zdt1::new(5).expect("valid"), &settings(42, 10)).expect("runs");
    let print = fingerprint(&bits(&result));
    eprintln!("fingerprint {print:#018x}");
    assert_eq!(print, PINNED);
}

const PINNED: u64 = 0xa5e1_2672_1b15_db25;

/// Pins every test problem's output (and a categorical one's), so a change
/// meant to be only faster is checked to change no bit on any of them.
#[test]
fn pinned_fingerprints_of_every_problem() {
    type Run<'a> = &'a dyn Fn(&Nsga2Settings) -> Nsga2Result;
    let problems: [(&str, Run); 9] = [
        ("zdt1", &|s| nsga2(&Zdt1::default(), s).expect("runs")),
        ("zdt2", &|s| nsga2(&Zdt2::default(), s).expect("runs")),
        ("zdt3", &|s| nsga2(&Zdt3::default(), s).expect("runs")),
        ("zdt6", &|s| nsga2(&Zdt6::default(), s).expect("runs")),
        ("dtlz2", &|s| nsga2(&Dtlz2::default(), s).expect("runs")),
        ("bnh", &|s| nsga2(&Bnh::default(), s).expect("runs")),
        ("tnk", &|s| nsga2(&Tnk::default(), s).expect("runs")),
        ("osy", &|s| nsga2(&Osy::default(), s).expect("runs")),
        ("grid", &|s| nsga2(&grid(), s).expect("runs")),
    ];
    // Seed 2 also takes the other paths: an odd population, no duplicate
    // elimination.
    let variant = |seed: u64| Nsga2Settings {
        population: if seed == 1 { 100 } else { 37 },
        eliminate_duplicates: seed == 1,
        ..settings(seed, 60)
    };
    let mut got = Vec::new();
    for (name, run) in problems {
        for seed in [1, 2] {
            got.push((name, seed, fingerprint(&bits(&run(&variant(seed))))));
        }
    }
    for (name, seed, print) in &got {
        eprintln!("(\"{name}\", {seed}, {print:#018x}),");
    }
    assert_eq!(got.as_slice(), PINNED_ALL);
}

/// Computed before the allocation-free rewrite of the generation loop, which
/// reproduces them bit for bit.
const PINNED_ALL: &[(&str, u64, u64)] = &[
    ("zdt1", 1, 0x26c1e853fa926d74),
    ("zdt1", 2, 0x20860423d409b7a7),
    ("zdt2", 1, 0xf698804e9117f5c1),
    ("zdt2", 2, 0x1b741f6dcf304de0),
    ("zdt3", 1, 0x670dcccef40506ea),
    ("zdt3", 2, 0xf7d22985af97d462),
    ("zdt6", 1, 0x39aae07a8a7a8f78),
    ("zdt6", 2, 0x8f56d472f40914a9),
    ("dtlz2", 1, 0x0f239d0eb8f1f475),
    ("dtlz2", 2, 0x06152a082ab0c77d),
    ("bnh", 1, 0xa197ca934ad6b6da),
    ("bnh", 2, 0x7521590b49480265),
    ("tnk", 1, 0x1a7039ff74444617),
    ("tnk", 2, 0x89c160cf880ed80d),
    ("osy", 1, 0x8147007a63586dd4),
    ("osy", 2, 0x498557c8ae0ded95),
    ("grid", 1, 0x860558f39077ca1f),
    ("grid", 2, 0x09b3e51e5e70424b),
];

/// A placement model on the shipped catalog: three hospitals, two of them
/// with a choice of flavours, the full candidate set.
fn hospitals(standby: bool) -> fedsky_placement::PlacementModel {
    use fedsky_placement::model::{
        FlavourInput, PlacementInput, RegionRef, SiteInput, StandbyRequirement,
    };
    let flavour = |name: &str, hourly_usd: f64, relative_speed: f64| FlavourInput {
        name: name.into(),
        hourly_usd,
        relative_speed,
    };
    let site = |name: &str, region: &str, flavours: Vec<FlavourInput>| SiteInput {
        name: name.into(),
        region: RegionRef::parse(region),
        flavours,
    };
    let mut input = PlacementInput {
        sites: vec![
            site(
                "eu",
                "aws:eu-central-1",
                vec![flavour("small", 0.05, 1.0), flavour("large", 0.2, 2.5)],
            ),
            site("asia", "aws:ap-northeast-2", vec![]),
            site(
                "us",
                "aws:us-east-1",
                vec![
                    flavour("a", 0.04, 0.8),
                    flavour("b", 0.09, 1.6),
                    flavour("c", 0.3, 3.0),
                ],
            ),
        ],
        candidates: Default::default(),
        requirements: Default::default(),
        workload: Default::default(),
        timing: Default::default(),
    };
    input.requirements.max_round_time_seconds = Some(40.0);
    if standby {
        input.requirements.standby = Some(StandbyRequirement::default());
    }
    fedsky_placement::PlacementModel::build(
        fedsky_placement::Catalog::builtin().expect("catalog"),
        &input,
    )
    .expect("builds")
}

/// Pins NSGA-II on the placement model without and with a standby. The
/// first was pinned before the standby genes existed, so it checks they
/// change no bit of a problem without one.
#[test]
fn pinned_placement_fingerprints() {
    let mut got = Vec::new();
    for standby in [false, true] {
        let model = hospitals(standby);
        let print = fingerprint(&bits(&nsga2(&model, &settings(5, 40)).expect("runs")));
        eprintln!("(\"standby {standby}\", {print:#018x}),");
        got.push(print);
    }
    assert_eq!(got, [0xb17e_2463_a98d_52ff, 0x200a_1583_0e53_0e78]);
}
