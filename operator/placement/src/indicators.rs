//! Quality indicators of an approximation front: hypervolume, IGD, IGD+.

use crate::error::PlacementError;
use crate::pareto::lex_cmp;

/// Exact hypervolume (Lebesgue measure) of the region dominated by `points`
/// and bounded by `reference`, for 1, 2 or 3 objectives (minimised).
///
/// Points not strictly better than the reference in every objective add
/// nothing; a `-inf` coordinate that does gives an infinite volume. Two
/// objectives take one sweep (`O(N log N)`); three slice along the third
/// objective over an incrementally kept 2-D staircase (`O(N²)` worst case).
pub fn hypervolume<P: AsRef<[f64]>>(
    points: &[P],
    reference: &[f64],
) -> Result<f64, PlacementError> {
    let m = reference.len();
    if !(1..=3).contains(&m) {
        return Err(PlacementError::UnsupportedDimension { objectives: m });
    }
    if reference.iter().any(|r| !r.is_finite()) {
        return Err(PlacementError::NonFinite {
            what: "the reference point",
        });
    }
    let rows = check_rows(points, m, "a point")?;
    let inside: Vec<&[f64]> = rows
        .into_iter()
        .filter(|p| p.iter().zip(reference).all(|(x, r)| x < r))
        .collect();
    if inside.iter().any(|p| p.iter().any(|x| x.is_infinite())) {
        return Ok(f64::INFINITY);
    }
    Ok(match m {
        1 => inside
            .iter()
            .map(|p| reference[0] - p[0])
            .fold(0.0, f64::max),
        2 => hv2(inside, reference),
        _ => hv3(inside, reference),
    })
}

/// Sweep in increasing first objective: each point that lowers the best
/// second objective so far adds a strip reaching to the reference.
fn hv2(mut points: Vec<&[f64]>, reference: &[f64]) -> f64 {
    points.sort_by(|a, b| lex_cmp(a, b));
    let mut volume = 0.0;
    let mut best_y = reference[1];
    for p in points {
        if p[1] < best_y {
            volume += (reference[0] - p[0]) * (best_y - p[1]);
            best_y = p[1];
        }
    }
    volume
}

/// Slices along the third objective: between consecutive third-objective
/// values the cross-section is the 2-D hypervolume of the points seen so far.
fn hv3(mut points: Vec<&[f64]>, reference: &[f64]) -> f64 {
    points.sort_by(|a, b| a[2].total_cmp(&b[2]).then_with(|| lex_cmp(a, b)));
    let mut stairs = Staircase::default();
    let mut volume = 0.0;
    for (i, p) in points.iter().enumerate() {
        stairs.insert(p[0], p[1]);
        let top = points.get(i + 1).map_or(reference[2], |next| next[2]);
        let height = top - p[2];
        if height > 0.0 {
            volume += stairs.area(reference[0], reference[1]) * height;
        }
    }
    volume
}

/// Mutually non-dominated 2-D points, `x` increasing and `y` decreasing.
#[derive(Debug, Default)]
struct Staircase {
    steps: Vec<(f64, f64)>,
}

impl Staircase {
    fn insert(&mut self, x: f64, y: f64) {
        let pos = self.steps.partition_point(|&(sx, _)| sx <= x);
        if pos > 0 {
            let (px, py) = self.steps[pos - 1];
            if py <= y {
                return; // weakly dominated
            }
            if px == x {
                // Same x, larger y: the new point dominates it.
                self.steps.remove(pos - 1);
                return self.insert(x, y);
            }
        }
        let end = pos
            + self.steps[pos..]
                .iter()
                .take_while(|&&(_, sy)| sy >= y)
                .count();
        self.steps.splice(pos..end, [(x, y)]);
    }

    fn area(&self, rx: f64, ry: f64) -> f64 {
        let mut area = 0.0;
        for (i, &(x, y)) in self.steps.iter().enumerate() {
            let next_x = self.steps.get(i + 1).map_or(rx, |s| s.0);
            area += (next_x - x) * (ry - y);
        }
        area
    }
}

/// Inverted generational distance: the mean, over the reference front, of
/// the Euclidean distance to the nearest point of `approximation`.
pub fn igd<A: AsRef<[f64]>, R: AsRef<[f64]>>(
    approximation: &[A],
    reference_front: &[R],
) -> Result<f64, PlacementError> {
    mean_min_distance(approximation, reference_front, |a, z| {
        a.iter()
            .zip(z)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    })
}

/// IGD+ (Ishibuchi et al. 2015): like IGD, but only the amounts by which a
/// point is worse than the reference point count, so it is weakly Pareto
/// compliant.
pub fn igd_plus<A: AsRef<[f64]>, R: AsRef<[f64]>>(
    approximation: &[A],
    reference_front: &[R],
) -> Result<f64, PlacementError> {
    mean_min_distance(approximation, reference_front, |a, z| {
        a.iter()
            .zip(z)
            .map(|(x, y)| {
                let d = (x - y).max(0.0);
                d * d
            })
            .sum::<f64>()
            .sqrt()
    })
}

fn mean_min_distance<A: AsRef<[f64]>, R: AsRef<[f64]>>(
    approximation: &[A],
    reference_front: &[R],
    distance: impl Fn(&[f64], &[f64]) -> f64,
) -> Result<f64, PlacementError> {
    let Some(first) = reference_front.first() else {
        return Err(PlacementError::EmptySet {
            what: "the reference front",
        });
    };
    if approximation.is_empty() {
        return Err(PlacementError::EmptySet {
            what: "the approximation set",
        });
    }
    let m = first.as_ref().len();
    let zs = check_rows(reference_front, m, "a reference-front point")?;
    let approx = check_rows(approximation, m, "an approximation point")?;
    if zs
        .iter()
        .chain(&approx)
        .any(|p| p.iter().any(|v| v.is_nan()))
    {
        return Err(PlacementError::NonFinite {
            what: "a point (NaN)",
        });
    }
    let total: f64 = zs
        .iter()
        .map(|z| {
            approx
                .iter()
                .map(|a| distance(a, z))
                .fold(f64::INFINITY, f64::min)
        })
        .sum();
    Ok(total / zs.len() as f64)
}

fn check_rows<'a, P: AsRef<[f64]>>(
    points: &'a [P],
    m: usize,
    what: &'static str,
) -> Result<Vec<&'a [f64]>, PlacementError> {
    points
        .iter()
        .map(|p| {
            let p = p.as_ref();
            if p.len() == m {
                Ok(p)
            } else {
                Err(PlacementError::DimensionMismatch {
                    what,
                    got: p.len(),
                    expected: m,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn hv_2d_hand_computed() {
        // Staircase (1,3), (2,2), (3,1) under reference (4,4):
        // 3·1 + 2·1 + 1·1 = 6 (strips from the top).
        let pts = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]];
        assert!(close(
            hypervolume(&pts, &[4.0, 4.0]).expect("valid input"),
            6.0
        ));
        // A dominated point, a duplicate and a point outside change nothing.
        let more = [
            [1.0, 3.0],
            [2.5, 2.5],
            [2.0, 2.0],
            [3.0, 1.0],
            [2.0, 2.0],
            [5.0, 0.0],
            [4.0, 0.5],
        ];
        assert!(close(
            hypervolume(&more, &[4.0, 4.0]).expect("valid input"),
            6.0
        ));
        assert_eq!(hypervolume(&[[0.0, 0.0]], &[1.0, 2.0]), Ok(2.0));
        let none: [[f64; 2]; 0] = [];
        assert_eq!(hypervolume(&none, &[1.0, 1.0]), Ok(0.0));
    }

    #[test]
    fn hv_3d_hand_computed() {
        // One point: a box.
        assert!(close(
            hypervolume(&[[1.0, 2.0, 3.0]], &[2.0, 4.0, 6.0]).expect("valid input"),
            6.0
        ));
        // Three boxes of volume 2 under reference (2,2,2) whose pairwise and
        // triple intersections are all [1,2]³: 3·2 - 3·1 + 1 = 4.
        let pts = [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]];
        assert!(close(
            hypervolume(&pts, &[2.0, 2.0, 2.0]).expect("valid input"),
            4.0
        ));
        // The staircase must drop a point dominated in (x, y) with equal x.
        let pts = [[1.0, 2.0, 0.0], [1.0, 1.0, 1.0]];
        // z in [0,1): area (3-1)·(3-2) = 2; z in [1,3): (3-1)·(3-1) = 4 → 2 + 8.
        assert!(close(
            hypervolume(&pts, &[3.0, 3.0, 3.0]).expect("valid input"),
            10.0
        ));
    }

    /// Volume on a grid of cell centres; exact for integer coordinates.
    fn grid_volume(points: &[[f64; 3]], side: usize) -> f64 {
        let mut count = 0usize;
        for i in 0..side {
            for j in 0..side {
                for k in 0..side {
                    let c = [i as f64 + 0.5, j as f64 + 0.5, k as f64 + 0.5];
                    if points.iter().any(|p| (0..3).all(|d| p[d] <= c[d])) {
                        count += 1;
                    }
                }
            }
        }
        count as f64
    }

    #[test]
    fn hv_3d_matches_grid_count_on_random_integer_points() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        for _ in 0..60 {
            let n = rng.random_range(1..12);
            let pts: Vec<[f64; 3]> = (0..n)
                .map(|_| {
                    [
                        rng.random_range(0..6) as f64,
                        rng.random_range(0..6) as f64,
                        rng.random_range(0..6) as f64,
                    ]
                })
                .collect();
            let hv = hypervolume(&pts, &[6.0, 6.0, 6.0]).expect("valid input");
            assert!(close(hv, grid_volume(&pts, 6)), "{pts:?}");
        }
    }

    #[test]
    fn hv_3d_reduces_to_2d_on_a_flat_layer() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let pts2: Vec<[f64; 2]> = (0..50)
            .map(|_| [rng.random::<f64>(), rng.random::<f64>()])
            .collect();
        let pts3: Vec<[f64; 3]> = pts2.iter().map(|p| [p[0], p[1], 0.0]).collect();
        let a = hypervolume(&pts2, &[1.0, 1.0]).expect("valid input");
        let b = hypervolume(&pts3, &[1.0, 1.0, 1.0]).expect("valid input");
        assert!(close(a, b));
    }

    #[test]
    fn hv_rejects_bad_input() {
        assert_eq!(
            hypervolume(&[[0.0; 4]], &[1.0; 4]),
            Err(PlacementError::UnsupportedDimension { objectives: 4 })
        );
        assert!(matches!(
            hypervolume(&[vec![0.0]], &[1.0, 1.0]),
            Err(PlacementError::DimensionMismatch { got: 1, .. })
        ));
        assert!(matches!(
            hypervolume(&[[0.0, 0.0]], &[f64::NAN, 1.0]),
            Err(PlacementError::NonFinite { .. })
        ));
        assert_eq!(
            hypervolume(&[[f64::NEG_INFINITY, 0.0]], &[1.0, 1.0]),
            Ok(f64::INFINITY)
        );
        assert_eq!(hypervolume(&[[f64::NAN, 0.0]], &[1.0, 1.0]), Ok(0.0));
    }

    #[test]
    fn igd_hand_computed() {
        let reference = [[0.0, 1.0], [1.0, 0.0]];
        let approx = [[0.0, 2.0]];
        // Distances: 1 and sqrt(1 + 4).
        let expected = (1.0 + 5f64.sqrt()) / 2.0;
        assert!(close(
            igd(&approx, &reference).expect("valid input"),
            expected
        ));
        // IGD+: (0,2) vs (0,1) → 1; vs (1,0) → only the worse part (0, 2) → 2.
        assert!(close(
            igd_plus(&approx, &reference).expect("valid input"),
            1.5
        ));
        // A point better than the reference front has IGD+ zero there.
        assert_eq!(igd_plus(&[[-1.0, -1.0]], &reference), Ok(0.0));
        assert_eq!(igd(&reference, &reference), Ok(0.0));
    }

    #[test]
    fn igd_rejects_bad_input() {
        let empty: [[f64; 2]; 0] = [];
        assert!(matches!(
            igd(&empty, &[[0.0, 0.0]]),
            Err(PlacementError::EmptySet { .. })
        ));
        assert!(matches!(
            igd(&[[0.0, 0.0]], &empty),
            Err(PlacementError::EmptySet { .. })
        ));
        assert!(matches!(
            igd(&[vec![0.0]], &[vec![0.0, 0.0]]),
            Err(PlacementError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            igd(&[[f64::NAN, 0.0]], &[[0.0, 0.0]]),
            Err(PlacementError::NonFinite { .. })
        ));
    }
}
