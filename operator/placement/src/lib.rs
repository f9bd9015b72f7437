//! Multi-objective optimisation for fedsky's aggregator placement, with no
//! Kubernetes types: a problem is a set of variables (real or categorical),
//! objectives to minimise and constraints `g(x) <= 0`.
//!
//! - [`nsga2()`]: NSGA-II with Deb's constraint handling, seeded and
//!   deterministic (same problem + settings → same front, bit for bit, on
//!   any machine and thread count).
//! - [`exact()`]: enumerates a fully categorical space and returns its true
//!   Pareto front.
//! - [`solve()`]: picks one of them ([`SolverChoice`]) and says why.
//! - [`indicators`]: hypervolume (exact, 1–3 objectives), IGD, IGD+.
//! - [`problems`]: ZDT1/2/3/6, DTLZ2, BNH, TNK, OSY with their true fronts.
//! - [`catalog`]: the cloud catalog (regions, prices, egress, the
//!   inter-region network matrix), the shipped one and user overlays;
//!   [`catalog::refresh`] makes an overlay from what the EC2 API reports
//!   (the SDK calls are `catalog::aws`, behind the cargo feature `aws`).
//! - [`model`]: the aggregator placement model over a catalog, its exact
//!   front by decomposition, and [`solve_placement`] with the pick by cost
//!   weight and the binding constraint when nothing is feasible.
//!
//! ```
//! use fedsky_placement::{Problem, SolverChoice, SolverKind, Variable, solve};
//!
//! /// Pick one of three regions: cost vs latency, latency at most 80 ms.
//! struct Regions(Vec<Variable>);
//! impl Problem for Regions {
//!     fn variables(&self) -> &[Variable] { &self.0 }
//!     fn n_objectives(&self) -> usize { 2 }
//!     fn n_constraints(&self) -> usize { 1 }
//!     fn evaluate(&self, x: &[f64], f: &mut [f64], g: &mut [f64]) {
//!         let (cost, latency) = [(10.0, 90.0), (20.0, 50.0), (30.0, 40.0)]
//!             [fedsky_placement::choice(x[0])];
//!         f[0] = cost;
//!         f[1] = latency;
//!         g[0] = latency - 80.0;
//!     }
//! }
//!
//! let solved = solve(&Regions(vec![Variable::categorical(3)]), &SolverChoice::default())?;
//! assert_eq!(solved.solver, SolverKind::Exact);
//! assert_eq!(solved.reason, "exact: 3 candidates <= threshold 1,000,000");
//! assert_eq!(solved.front.len(), 2);
//! # Ok::<(), fedsky_placement::PlacementError>(())
//! ```

pub mod catalog;
mod error;
mod exact;
mod format;
pub mod indicators;
pub mod model;
pub mod nsga2;
mod pareto;
mod problem;
pub mod problems;
mod solve;

pub use error::PlacementError;
pub use exact::{DEFAULT_EXACT_LIMIT, ExactResult, exact};
pub use nsga2::{MAX_POPULATION, Nsga2Result, Nsga2Settings, nsga2};
pub use pareto::{constrained_dominates, dominates, pareto_filter};
pub use problem::{Problem, Solution, Variable, candidate_count, choice};
pub use solve::{Solved, SolverChoice, SolverKind, solve};

pub use catalog::{Catalog, CatalogError, CatalogOverlay};
pub use model::{
    ModelError, PlacementInput, PlacementModel, PlacementOutcome, PlacementSolver, solve_placement,
};
