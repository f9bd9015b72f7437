//! The exact solver against brute force, solver choice, and bad input.

use fedsky_placement::{
    Nsga2Settings, PlacementError, Problem, Solution, SolverChoice, SolverKind, Variable,
    dominates, exact, nsga2, solve,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A categorical problem whose objectives and constraints are looked up in
/// a random table, values on a coarse grid so ties and duplicates happen.
struct Table {
    variables: Vec<Variable>,
    m: usize,
    k: usize,
    rows: Vec<(Vec<f64>, Vec<f64>)>,
}

impl Table {
    fn random(rng: &mut ChaCha8Rng, feasible_share: f64) -> Self {
        let n_vars = rng.random_range(1..4);
        let variables: Vec<Variable> = (0..n_vars)
            .map(|_| Variable::categorical(rng.random_range(1..7)))
            .collect();
        let size: usize = variables
            .iter()
            .map(|v| match v {
                Variable::Categorical { choices } => *choices,
                Variable::Real { .. } => 1,
            })
            .product();
        let m = rng.random_range(1..4);
        let k = rng.random_range(0..3);
        let rows = (0..size)
            .map(|_| {
                let f = (0..m).map(|_| rng.random_range(0..6) as f64).collect();
                let g = (0..k)
                    .map(|_| {
                        if rng.random::<f64>() < feasible_share {
                            -1.0
                        } else {
                            rng.random_range(1..4) as f64
                        }
                    })
                    .collect();
                (f, g)
            })
            .collect();
        Self {
            variables,
            m,
            k,
            rows,
        }
    }

    fn index(&self, x: &[f64]) -> usize {
        let mut index = 0;
        for (v, gene) in self.variables.iter().zip(x) {
            if let Variable::Categorical { choices } = v {
                index = index * choices + fedsky_placement::choice(*gene);
            }
        }
        index
    }

    /// Every candidate, in enumeration order.
    fn all(&self) -> Vec<Solution> {
        let mut out = Vec::new();
        let mut digits = vec![0usize; self.variables.len()];
        loop {
            let x: Vec<f64> = digits.iter().map(|&d| d as f64).collect();
            let (f, g) = &self.rows[self.index(&x)];
            let violation = g.iter().map(|v| v.max(0.0)).sum();
            out.push(Solution {
                variables: x,
                objectives: f.clone(),
                constraints: g.clone(),
                violation,
            });
            // Odometer, last variable fastest.
            let mut i = digits.len();
            loop {
                if i == 0 {
                    return out;
                }
                i -= 1;
                let Variable::Categorical { choices } = self.variables[i] else {
                    unreachable!("categorical only")
                };
                digits[i] += 1;
                if digits[i] < choices {
                    break;
                }
                digits[i] = 0;
            }
        }
    }
}

impl Problem for Table {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        self.m
    }
    fn n_constraints(&self) -> usize {
        self.k
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], g: &mut [f64]) {
        let (fr, gr) = &self.rows[self.index(x)];
        f.copy_from_slice(fr);
        g.copy_from_slice(gr);
    }
}

/// The front by definition, O(N²): feasible points no feasible point
/// dominates; if none is feasible, least-violation points no other
/// least-violation point dominates.
fn brute_force_front(all: Vec<Solution>) -> Vec<Solution> {
    let feasible: Vec<Solution> = all.iter().filter(|s| s.is_feasible()).cloned().collect();
    let pool = if feasible.is_empty() {
        let least = all
            .iter()
            .map(|s| s.violation)
            .fold(f64::INFINITY, f64::min);
        all.into_iter().filter(|s| s.violation == least).collect()
    } else {
        feasible
    };
    let mut front: Vec<Solution> = pool
        .iter()
        .filter(|s| !pool.iter().any(|o| dominates(&o.objectives, &s.objectives)))
        .cloned()
        .collect();
    front.sort_by(|a, b| {
        a.objectives
            .partial_cmp(&b.objectives)
            .expect("finite")
            .then_with(|| a.variables.partial_cmp(&b.variables).expect("finite"))
    });
    front
}

#[test]
fn exact_equals_brute_force_on_random_problems() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    for trial in 0..300 {
        let share = [1.0, 0.7, 0.2, 0.0][trial % 4];
        let table = Table::random(&mut rng, share);
        let result = exact(&table, 1_000).expect("small categorical problem");
        assert_eq!(result.evaluations, table.rows.len() as u64);
        assert_eq!(
            result.front,
            brute_force_front(table.all()),
            "trial {trial}"
        );
    }
}

#[test]
fn exact_equals_brute_force_across_chunks() {
    // 18 x 17 x 16 = 4,896 candidates: more than one parallel chunk.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let variables = vec![
        Variable::categorical(18),
        Variable::categorical(17),
        Variable::categorical(16),
    ];
    for share in [0.5, 0.0] {
        let rows = (0..18 * 17 * 16)
            .map(|_| {
                let f = (0..3).map(|_| rng.random_range(0..40) as f64).collect();
                let g = vec![if rng.random::<f64>() < share {
                    -1.0
                } else {
                    rng.random_range(1..50) as f64
                }];
                (f, g)
            })
            .collect();
        let table = Table {
            variables: variables.clone(),
            m: 3,
            k: 1,
            rows,
        };
        let result = exact(&table, 1_000_000).expect("fits");
        let expected = brute_force_front(table.all());
        assert!(!expected.is_empty());
        assert_eq!(result.front, expected, "feasible share {share}");
    }
}

#[test]
fn infeasible_space_reports_least_violation() {
    let table = Table {
        variables: vec![Variable::categorical(4)],
        m: 2,
        k: 1,
        rows: vec![
            (vec![1.0, 1.0], vec![3.0]),
            (vec![0.0, 5.0], vec![2.0]),
            (vec![5.0, 0.0], vec![2.0]),
            (vec![6.0, 6.0], vec![2.0]),
        ],
    };
    let result = exact(&table, 10).expect("fits");
    let picked: Vec<f64> = result.front.iter().map(|s| s.variables[0]).collect();
    assert_eq!(picked, vec![1.0, 2.0]);
    assert!(
        result
            .front
            .iter()
            .all(|s| !s.is_feasible() && s.violation == 2.0)
    );
}

#[test]
fn nsga2_finds_the_exact_front_of_a_small_categorical_space() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let variables = vec![Variable::categorical(12); 2];
    let rows = (0..144)
        .map(|_| {
            let a = rng.random::<f64>();
            (vec![a, 1.0 - a.sqrt() + 0.3 * rng.random::<f64>()], vec![])
        })
        .collect();
    let table = Table {
        variables,
        m: 2,
        k: 0,
        rows,
    };
    let truth = exact(&table, 1_000).expect("fits").front;
    let found = nsga2(
        &table,
        &Nsga2Settings {
            population: 40,
            generations: 60,
            ..Nsga2Settings::default()
        },
    )
    .expect("runs")
    .front;
    assert_eq!(found, truth);
}

struct Named {
    variables: Vec<Variable>,
    m: usize,
}

impl Problem for Named {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        self.m
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], _g: &mut [f64]) {
        for (i, fi) in f.iter_mut().enumerate() {
            *fi = x
                .iter()
                .enumerate()
                .map(|(j, v)| ((i + j) % 3) as f64 * v)
                .sum();
        }
        if let Some(last) = f.last_mut() {
            *last = -*last;
        }
    }
}

fn categorical(choices: &[usize]) -> Named {
    Named {
        variables: choices.iter().map(|&c| Variable::categorical(c)).collect(),
        m: 2,
    }
}

fn quick() -> Nsga2Settings {
    Nsga2Settings {
        population: 8,
        generations: 3,
        ..Nsga2Settings::default()
    }
}

#[test]
fn auto_picks_exact_for_small_categorical_spaces() {
    let solved = solve(&categorical(&[12, 24, 24]), &SolverChoice::default()).expect("runs");
    assert_eq!(solved.solver, SolverKind::Exact);
    assert_eq!(
        solved.reason,
        "exact: 6,912 candidates <= threshold 1,000,000"
    );
    assert_eq!(solved.evaluations, 6_912);
    assert_eq!(solved.generations, 0);
    assert!(solved.feasible());
}

#[test]
fn auto_falls_back_to_nsga2() {
    let big = SolverChoice::Auto {
        threshold: 1_000,
        nsga2: quick(),
    };
    let solved = solve(&categorical(&[12, 24, 24]), &big).expect("runs");
    assert_eq!(solved.solver, SolverKind::Nsga2);
    assert_eq!(solved.reason, "nsga2: 6,912 candidates > threshold 1,000");
    assert_eq!(solved.generations, 3);

    let mut mixed = categorical(&[3]);
    mixed.variables.push(Variable::real(0.0, 1.0));
    let solved = solve(&mixed, &big).expect("runs");
    assert_eq!(solved.solver, SolverKind::Nsga2);
    assert_eq!(
        solved.reason,
        "nsga2: variable 1 is real, so the space cannot be enumerated"
    );

    let huge = categorical(&[usize::MAX, usize::MAX, usize::MAX]);
    let solved = solve(&huge, &big).expect("runs");
    assert!(
        solved.reason.starts_with("nsga2: more than 340,282,366,"),
        "{}",
        solved.reason
    );
}

#[test]
fn explicit_choices() {
    let p = categorical(&[4, 5]);
    let solved = solve(&p, &SolverChoice::Exact { max_candidates: 20 }).expect("runs");
    assert_eq!(solved.reason, "exact: requested, 20 candidates <= limit 20");
    let solved = solve(&p, &SolverChoice::Nsga2(quick())).expect("runs");
    assert_eq!(solved.solver, SolverKind::Nsga2);
    assert_eq!(solved.reason, "nsga2: requested");
    // Odd population and zero generations are fine.
    let odd = Nsga2Settings {
        population: 5,
        generations: 0,
        ..quick()
    };
    let solved = solve(&p, &SolverChoice::Nsga2(odd)).expect("runs");
    assert_eq!(solved.evaluations, 5);
    let odd = Nsga2Settings {
        population: 7,
        generations: 4,
        eliminate_duplicates: false,
        ..quick()
    };
    let solved = solve(&p, &SolverChoice::Nsga2(odd)).expect("runs");
    assert_eq!(solved.evaluations, 7 * 5);
}

#[test]
fn exact_errors() {
    let p = categorical(&[4, 5]);
    let err = solve(&p, &SolverChoice::Exact { max_candidates: 19 }).expect_err("must be refused");
    assert_eq!(
        err,
        PlacementError::SpaceTooLarge {
            candidates: Some(20),
            limit: 19
        }
    );
    assert_eq!(
        err.to_string(),
        "the search space has 20 candidates, more than the exact solver's limit of 19"
    );
    let mut mixed = categorical(&[3]);
    mixed.variables.push(Variable::real(0.0, 1.0));
    let err = exact(&mixed, 100).expect_err("must be refused");
    assert_eq!(err, PlacementError::NotCategorical { index: 1 });
    assert_eq!(
        err.to_string(),
        "the exact solver enumerates categorical variables only, but variable 1 is real"
    );
    let err = exact(&categorical(&[usize::MAX; 3]), u64::MAX).expect_err("must be refused");
    assert!(
        err.to_string()
            .starts_with("the search space has more than 340,282,366,")
    );
}

#[test]
fn problem_errors() {
    let auto = SolverChoice::default();
    let none = Named {
        variables: vec![],
        m: 2,
    };
    assert_eq!(solve(&none, &auto), Err(PlacementError::NoVariables));
    let no_objectives = Named {
        variables: vec![Variable::categorical(2)],
        m: 0,
    };
    let err = solve(&no_objectives, &auto).expect_err("must be refused");
    assert_eq!(err, PlacementError::NoObjectives);
    assert_eq!(
        err.to_string(),
        "the problem has zero objectives; at least one is needed"
    );
    let empty = categorical(&[3, 0]);
    let err = solve(&empty, &auto).expect_err("must be refused");
    assert_eq!(err, PlacementError::EmptySpace { index: 1 });
    assert_eq!(
        err.to_string(),
        "variable 1 has 0 choices, so the search space is empty"
    );
    for (lower, upper) in [(1.0, 0.0), (f64::NAN, 1.0), (0.0, f64::INFINITY)] {
        let bad = Named {
            variables: vec![Variable::real(lower, upper)],
            m: 1,
        };
        assert!(matches!(
            nsga2(&bad, &quick()),
            Err(PlacementError::InvalidBounds { index: 0, .. })
        ));
    }
    // Equal bounds are a fixed variable, not an error.
    let fixed = Named {
        variables: vec![Variable::real(2.0, 2.0), Variable::real(0.0, 1.0)],
        m: 2,
    };
    let front = nsga2(&fixed, &quick()).expect("runs").front;
    assert!(front.iter().all(|s| s.variables[0] == 2.0));
}

#[test]
fn settings_errors() {
    let p = categorical(&[4, 5]);
    let cases: [(Nsga2Settings, &str); 6] = [
        (
            Nsga2Settings {
                population: 3,
                ..quick()
            },
            "invalid NSGA-II setting `population` = 3: between 4 and 1,000,000",
        ),
        (
            Nsga2Settings {
                population: 2_000_000,
                ..quick()
            },
            "invalid NSGA-II setting `population` = 2000000: between 4 and 1,000,000",
        ),
        (
            Nsga2Settings {
                crossover_prob: 1.5,
                ..quick()
            },
            "invalid NSGA-II setting `crossover_prob` = 1.5: a probability in [0, 1]",
        ),
        (
            Nsga2Settings {
                mutation_prob: Some(f64::NAN),
                ..quick()
            },
            "invalid NSGA-II setting `mutation_prob` = NaN: a probability in [0, 1]",
        ),
        (
            Nsga2Settings {
                crossover_eta: -1.0,
                ..quick()
            },
            "invalid NSGA-II setting `crossover_eta` = -1: a finite distribution index >= 0",
        ),
        (
            Nsga2Settings {
                mutation_eta: f64::INFINITY,
                ..quick()
            },
            "invalid NSGA-II setting `mutation_eta` = inf: a finite distribution index >= 0",
        ),
    ];
    for (settings, message) in cases {
        let err = solve(&p, &SolverChoice::Nsga2(settings)).expect_err("must be refused");
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn nan_objectives_never_look_feasible() {
    struct Nan(Vec<Variable>);
    impl Problem for Nan {
        fn variables(&self) -> &[Variable] {
            &self.0
        }
        fn n_objectives(&self) -> usize {
            2
        }
        fn evaluate(&self, x: &[f64], f: &mut [f64], _g: &mut [f64]) {
            f[0] = if x[0] < 0.5 { f64::NAN } else { x[0] };
            f[1] = 1.0 - x[0];
        }
    }
    let front = nsga2(&Nan(vec![Variable::real(0.0, 1.0)]), &quick())
        .expect("runs")
        .front;
    assert!(!front.is_empty());
    assert!(
        front
            .iter()
            .all(|s| s.is_feasible() && s.variables[0] >= 0.5)
    );
}
