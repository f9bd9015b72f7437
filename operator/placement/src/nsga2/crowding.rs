//! Crowding distance: how much room a point has around it within its front.

/// Crowding distance of each member of `front` (same order as `front`).
///
/// Boundary points of each objective get `+inf`; an objective whose values
/// are all equal (or not finite) adds nothing, as its normalised spread is
/// undefined. Ties are broken by index, so the result is deterministic.
pub fn crowding_distance(objectives: &[&[f64]], front: &[usize]) -> Vec<f64> {
    let n = front.len();
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    let m = objectives[front[0]].len();
    let mut distance = vec![0.0; n];
    let mut order: Vec<usize> = (0..n).collect();
    let columns = (0..m).map(|k| {
        front
            .iter()
            .map(|&i| objectives[i][k])
            .collect::<Vec<f64>>()
    });
    for column in columns {
        order.sort_by(|&a, &b| {
            column[a]
                .total_cmp(&column[b])
                .then(front[a].cmp(&front[b]))
        });
        let (first, last) = (order[0], order[n - 1]);
        distance[first] = f64::INFINITY;
        distance[last] = f64::INFINITY;
        let range = column[last] - column[first];
        if !(range.is_finite() && range > 0.0) {
            continue;
        }
        for w in order.windows(3) {
            distance[w[1]] += (column[w[2]] - column[w[0]]) / range;
        }
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let objs = [
            vec![0.0, 4.0],
            vec![1.0, 2.0],
            vec![3.0, 1.0],
            vec![4.0, 0.0],
        ];
        let rows: Vec<&[f64]> = objs.iter().map(Vec::as_slice).collect();
        let d = crowding_distance(&rows, &[0, 1, 2, 3]);
        assert_eq!(d[0], f64::INFINITY);
        assert_eq!(d[3], f64::INFINITY);
        // Point 1: (3 - 0)/4 + (4 - 1)/4 = 1.5; point 2: (4 - 1)/4 + (2 - 0)/4 = 1.25.
        assert!((d[1] - 1.5).abs() < 1e-12);
        assert!((d[2] - 1.25).abs() < 1e-12);
    }

    #[test]
    fn small_and_flat_fronts() {
        let objs = [vec![1.0, 1.0], vec![1.0, 1.0], vec![1.0, 1.0]];
        let rows: Vec<&[f64]> = objs.iter().map(Vec::as_slice).collect();
        assert_eq!(crowding_distance(&rows, &[0, 1]), vec![f64::INFINITY; 2]);
        let d = crowding_distance(&rows, &[0, 1, 2]);
        assert_eq!(d, vec![f64::INFINITY, 0.0, f64::INFINITY]);
        assert!(crowding_distance(&rows, &[]).is_empty());
    }
}
