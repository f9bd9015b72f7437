//! Human-readable and machine-readable renderings of a placement solve.

use fedsky_crds::aggregator_placement::AggregatorPlacementStatus;
use fedsky_placement::PlacementOutcome;
use fedsky_placement::model::{CandidateCounts, PlacementPoint};
use fedsky_placement_spec::solver_name;
use serde::Serialize;

/// What `--output json|yaml` prints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SolveReport<'a> {
    /// `namespace/name` of the AggregatorPlacement.
    pub placement: String,
    /// How many candidates each filter kept.
    pub candidate_counts: &'a CandidateCounts,
    /// The full solve result.
    pub outcome: &'a PlacementOutcome,
    /// The status the controller would write for it.
    pub status: &'a AggregatorPlacementStatus,
}

/// A plain text table: a header row, then rows; numeric-looking columns
/// are right-aligned.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..n)
        .map(|c| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(c).is_some_and(|v| {
                        v.trim_start_matches(['-', '+'])
                            .trim_end_matches(['%', 'x'])
                            .replace(',', "")
                            .parse::<f64>()
                            .is_ok()
                    })
                })
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c > 0 {
                out.push_str("  ");
            }
            let pad = width[c].saturating_sub(cell.chars().count());
            if numeric[c] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if c + 1 < n {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn flavours(p: &PlacementPoint) -> String {
    let chosen: Vec<String> = p
        .site_flavours
        .iter()
        .filter(|f| f.chosen)
        .map(|f| format!("{}={}", f.site, f.flavour))
        .collect();
    if chosen.is_empty() {
        "-".into()
    } else {
        chosen.join(",")
    }
}

/// The standby columns of a front row: where, its cost, its failover round.
fn standby_cells(p: &PlacementPoint) -> [String; 3] {
    match &p.standby {
        Some(s) => [
            format!("{} {} {}", s.cloud, s.region, s.instance_type),
            format!("{:.2}", s.monthly_cost),
            format!("{:.2}", s.failover_round_time_seconds),
        ],
        None => ["-".into(), "-".into(), "-".into()],
    }
}

/// The text report of a solve: the pick, the front, the solver and why,
/// or why nothing is feasible.
pub fn text(
    name: &str,
    outcome: &PlacementOutcome,
    counts: &CandidateCounts,
    cost_weight: f64,
    front_limit: usize,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "AggregatorPlacement {name} (catalog {})\n",
        outcome.catalog_version
    ));
    out.push_str(&format!(
        "solver:      {}: {}\n",
        solver_name(outcome.solver),
        outcome.reason
    ));
    out.push_str(&format!(
        "evaluations: {} in {:.2} ms{}\n",
        outcome.evaluations,
        outcome.solve_time_ms,
        if outcome.generations > 0 {
            format!(" ({} generations)", outcome.generations)
        } else {
            String::new()
        }
    ));
    out.push_str(&format!(
        "candidates:  {} priced in the catalog, {} after candidates, {} after data residency, \
         {} with >= {:.2} GiB memory{}\n",
        counts.catalog,
        counts.after_candidates,
        counts.after_residency,
        counts.after_memory,
        outcome.memory_needed_gib,
        counts.standby_pairs.map_or(String::new(), |pairs| format!(
            "; {pairs} (primary, standby) pairs meet the standby's rules"
        ))
    ));
    match outcome.selected_point() {
        Some(p) => {
            out.push_str(&format!(
                "\nselected (costWeight {cost_weight}): {} {} {}\n",
                p.cloud, p.region, p.instance_type
            ));
            out.push_str(&format!(
                "  monthly cost: {:.2} USD (instance {:.2}, egress {:.2}, participants {:.2}{})\n",
                p.monthly_cost,
                p.cost.instance,
                p.cost.egress,
                p.cost.participants,
                p.standby.as_ref().map_or(String::new(), |_| format!(
                    ", standby {:.2}",
                    p.cost.standby
                ))
            ));
            out.push_str(&format!(
                "  round time:   {:.2} s (slowest site {}, aggregation {:.3} s)\n",
                p.round_time_seconds, p.slowest_site, p.aggregation_seconds
            ));
            if let Some(s) = &p.standby {
                out.push_str(&format!(
                    "  standby:      {} {} {} ({:?}): {:.2} USD/month (instance {:.2}, \
                     replication {:.2}); failover round {:.2} s (slowest site {})\n",
                    s.cloud,
                    s.region,
                    s.instance_type,
                    s.mode,
                    s.monthly_cost,
                    s.instance,
                    s.replication,
                    s.failover_round_time_seconds,
                    s.failover_slowest_site
                ));
            }
            out.push_str(&format!("  flavours:     {}\n", flavours(p)));
        }
        None => {
            let why = outcome
                .infeasibility
                .as_ref()
                .map_or("no feasible candidate", |i| i.message.as_str());
            out.push_str(&format!("\nINFEASIBLE: {why}\n"));
        }
    }
    if !outcome.front.is_empty() {
        let keep = fedsky_placement_spec::bounded_indices(
            outcome.front.len(),
            front_limit,
            outcome.selected,
        );
        let with_standby = outcome.front.iter().any(|p| p.standby.is_some());
        let rows: Vec<Vec<String>> = keep
            .iter()
            .map(|&i| {
                let p = &outcome.front[i];
                let mut row = vec![
                    if Some(i) == outcome.selected {
                        format!("*{}", i + 1)
                    } else {
                        format!("{}", i + 1)
                    },
                    p.cloud.clone(),
                    p.region.clone(),
                    p.instance_type.clone(),
                    format!("{:.2}", p.monthly_cost),
                    format!("{:.2}", p.round_time_seconds),
                    format!("{:.2}", p.cost.instance),
                    format!("{:.2}", p.cost.egress),
                    format!("{:.2}", p.cost.participants),
                    p.slowest_site.clone(),
                    flavours(p),
                ];
                if with_standby {
                    row.extend(standby_cells(p));
                }
                row
            })
            .collect();
        out.push_str(&format!(
            "\nPareto front: {} points{}, cheapest first (* = selected)\n",
            outcome.front.len(),
            if keep.len() < outcome.front.len() {
                format!(", {} shown", keep.len())
            } else {
                String::new()
            }
        ));
        let mut header = vec![
            "#",
            "CLOUD",
            "REGION",
            "INSTANCE",
            "USD/MO",
            "ROUND_S",
            "INSTANCE$",
            "EGRESS$",
            "SITES$",
            "SLOWEST",
            "FLAVOURS",
        ];
        if with_standby {
            header.extend(["STANDBY", "STANDBY$", "FAILOVER_S"]);
        }
        out.push_str(&table(&header, &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_numbers_right_and_text_left() {
        let t = table(
            &["NAME", "COST"],
            &[
                vec!["a".into(), "1.50".into()],
                vec!["long-name".into(), "12.25".into()],
            ],
        );
        assert_eq!(t, "NAME        COST\na           1.50\nlong-name  12.25\n");
    }
}
