//! `kubectl fedsky placement explain AP`: the Pareto front an AggregatorPlacement's
//! status holds, which point was picked and why, or the binding constraint when nothing
//! is feasible. Pure: it reads only the object.
//!
//! The pick is recomputed from the front with the rule of `fedsky-placement`'s solver
//! (`model::solve::pick`, which is crate-private and works on its own points rather than
//! on status options): minimise `w · cost' + (1 − w) · time'`, both objectives
//! normalised to [0, 1] over the front, ties to the cheaper. Normalising over the
//! status's bounded front gives the same ranges as over the full one, because bounding
//! keeps both ends (the cheapest and the fastest point). A unit test solves real
//! placements and checks this copy against the operator's pick.

use std::fmt::Write as _;

use fedsky_crds::AggregatorPlacement;
use fedsky_crds::aggregator_placement::{
    AggregatorPlacementSpec, PlacementOption, PlacementRequirements,
};
use fedsky_placement::model::Requirements;
use fedsky_placement_spec::cloud_name;
use kube::ResourceExt;

use super::status::{option_summary, same_place};
use super::text::{indent, table};

/// `costWeight` when the spec leaves it out: the placement model's default.
pub fn default_cost_weight() -> f64 {
    Requirements::default().cost_weight
}

/// One front point's normalised objectives and weighted score (the solver's own rule).
pub use fedsky_placement::model::WeightedScore as Score;

/// Lowest and highest of `values`, `(0, 0)` for none (for the explanation's text).
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .fold(None, |acc: Option<(f64, f64)>, v| {
            Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
        })
        .unwrap_or_default()
}

fn objectives(front: &[PlacementOption]) -> Vec<(f64, f64)> {
    front
        .iter()
        .map(|p| (p.monthly_cost, p.round_time_seconds))
        .collect()
}

/// The score of every point of `front` at `cost_weight`.
pub fn scores(front: &[PlacementOption], cost_weight: f64) -> Vec<Score> {
    fedsky_placement::model::weighted_scores(&objectives(front), cost_weight)
}

/// Index of the point the solver picks from `front` (sorted cheapest first): the lowest
/// score, the first (cheaper) one on a tie.
pub fn pick(front: &[PlacementOption], cost_weight: f64) -> Option<usize> {
    fedsky_placement::model::pick_weighted(&objectives(front), cost_weight)
}

/// `front` sorted cheapest first (then fastest), as the pick's tie rule expects.
pub fn sorted_front(front: &[PlacementOption]) -> Vec<PlacementOption> {
    let mut sorted = front.to_vec();
    sorted.sort_by(|a, b| {
        a.monthly_cost
            .total_cmp(&b.monthly_cost)
            .then(a.round_time_seconds.total_cmp(&b.round_time_seconds))
    });
    sorted
}

fn pct(delta: f64, base: f64) -> String {
    if base.abs() > f64::EPSILON {
        format!(" ({:+.1} %)", delta / base * 100.0)
    } else {
        String::new()
    }
}

/// `+8.42 USD/month (+36.6 %) for rounds 4.60 s faster (−8.7 %)`: `to` against `from`.
fn trade(to: &PlacementOption, from: &PlacementOption) -> String {
    let dc = to.monthly_cost - from.monthly_cost;
    let dt = to.round_time_seconds - from.round_time_seconds;
    let cost = if dc >= 0.0 {
        format!("{dc:.2} USD/month more{}", pct(dc, from.monthly_cost))
    } else {
        format!("{:.2} USD/month less{}", -dc, pct(dc, from.monthly_cost))
    };
    let time = if dt <= 0.0 {
        format!(
            "rounds {:.2} s faster{}",
            -dt,
            pct(dt, from.round_time_seconds)
        )
    } else {
        format!(
            "rounds {dt:.2} s slower{}",
            pct(dt, from.round_time_seconds)
        )
    };
    format!("{cost}, {time}")
}

fn requirements_section(r: &PlacementRequirements, cost_weight: f64) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    rows.push((
        "maxMonthlyCost".into(),
        r.max_monthly_cost
            .map_or("none".into(), |v| format!("{v:.2} USD")),
    ));
    rows.push((
        "maxRoundTimeSeconds".into(),
        r.max_round_time_seconds
            .map_or("none".into(), |v| format!("{v:.2} s")),
    ));
    rows.push((
        "costWeight".into(),
        match r.cost_weight {
            Some(w) => format!("{w} (1 = cheapest, 0 = fastest)"),
            None => format!("{cost_weight} (default; 1 = cheapest, 0 = fastest)"),
        },
    ));
    let residency = match &r.data_residency {
        Some(d) if !d.allowed_clouds.is_empty() || !d.allowed_regions.is_empty() => {
            let clouds: Vec<&str> = d.allowed_clouds.iter().map(|c| cloud_name(*c)).collect();
            format!(
                "clouds {}; regions {}",
                if clouds.is_empty() {
                    "any".into()
                } else {
                    clouds.join(", ")
                },
                if d.allowed_regions.is_empty() {
                    "any".into()
                } else {
                    d.allowed_regions.join(", ")
                }
            )
        }
        _ => "any cloud, any region".into(),
    };
    rows.push(("dataResidency".into(), residency));
    let standby = match &r.standby {
        Some(s) if s.enabled != Some(false) => format!(
            "{:?}{}{}",
            s.mode.unwrap_or_default(),
            if s.distinct_cloud == Some(true) {
                ", another cloud"
            } else if s.distinct_region != Some(false) {
                ", another region"
            } else {
                ""
            },
            s.failover_hours_per_month
                .map_or(String::new(), |h| format!(", {h} failover hours/month"))
        ),
        _ => "none".into(),
    };
    rows.push(("standby".into(), standby));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::from("Requirements:\n");
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:width$}  {v}");
    }
    out
}

fn inputs_section(spec: &AggregatorPlacementSpec) -> String {
    let mut out = String::new();
    let any = |v: &[String], what: &str| {
        if v.is_empty() {
            format!("any {what} in the catalog")
        } else {
            v.join(", ")
        }
    };
    let clouds: Vec<String> = spec
        .candidates
        .clouds
        .iter()
        .map(|c| cloud_name(*c).to_string())
        .collect();
    let _ = writeln!(
        out,
        "Candidates:   clouds {}; regions {}; instance types {}",
        any(&clouds, "public cloud"),
        any(&spec.candidates.regions, "region"),
        any(&spec.candidates.instance_types, "type"),
    );
    let participants = match (&spec.participants.pool_ref, &spec.participants.sites) {
        (Some(pool), _) => format!("the sites of ParticipantPool {}", pool.name),
        (None, Some(sites)) => sites
            .iter()
            .map(|s| format!("{} ({} {})", s.name, cloud_name(s.cloud), s.region))
            .collect::<Vec<_>>()
            .join(", "),
        (None, None) => "none given".into(),
    };
    let _ = writeln!(out, "Participants: {participants}");
    let w = &spec.workload;
    let mut workload = Vec::new();
    if let Some(v) = w.model_size_mb {
        workload.push(format!("model {v} MB"));
    }
    if let Some(v) = w.rounds_per_month {
        workload.push(format!("{v} rounds/month"));
    }
    if let Some(v) = w.hours_per_month {
        workload.push(format!("{v} h/month"));
    }
    if let Some(v) = w.local_compute_seconds {
        workload.push(format!("{v} s local compute per round"));
    }
    if let Some(v) = w.round_trips_per_transfer {
        workload.push(format!("{v} round trips per transfer"));
    }
    let _ = writeln!(
        out,
        "Workload:     {}",
        if workload.is_empty() {
            "defaults".into()
        } else {
            workload.join(", ")
        }
    );
    out
}

/// The whole `placement explain` report.
pub fn render_explain(ap: &AggregatorPlacement) -> String {
    let spec = &ap.spec;
    let cost_weight = spec
        .requirements
        .cost_weight
        .unwrap_or_else(default_cost_weight);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "AggregatorPlacement {}/{}",
        ap.namespace().unwrap_or_default(),
        ap.name_any()
    );
    let Some(status) = &ap.status else {
        out.push_str(
            "Not solved yet: the operator has not written a status (is it running and \
             watching this namespace?)\n\n",
        );
        out.push_str(&requirements_section(&spec.requirements, cost_weight));
        out.push_str(&inputs_section(spec));
        return out;
    };
    if let Some(solver) = &status.solver {
        let _ = writeln!(out, "Solver:       {solver}");
    }
    let mut facts = Vec::new();
    if let Some(n) = status.evaluations {
        facts.push(format!("{n} evaluations"));
    }
    if let Some(ms) = status.solve_time_ms {
        facts.push(format!("{ms:.2} ms"));
    }
    if let Some(v) = &status.catalog_version {
        facts.push(format!("catalog {v}"));
    }
    if let Some(t) = &status.last_solved_time {
        facts.push(format!("solved {}", t.0));
    }
    if !facts.is_empty() {
        let _ = writeln!(out, "Solve:        {}", facts.join(", "));
    }
    if let Some(c) = status.conditions.iter().find(|c| c.type_ == "Feasible") {
        let _ = writeln!(
            out,
            "Feasible:     {} ({}){}",
            c.status,
            c.reason,
            if c.message.is_empty() {
                String::new()
            } else {
                format!(": {}", c.message)
            }
        );
    }
    if let (Some(seen), Some(generation)) = (status.observed_generation, ap.metadata.generation)
        && seen < generation
    {
        let _ = writeln!(
            out,
            "  (status describes generation {seen}; the spec is at {generation}: the \
             operator has not re-solved yet, so the front below may not match the spec)"
        );
    }
    out.push('\n');
    out.push_str(&requirements_section(&spec.requirements, cost_weight));
    out.push_str(&inputs_section(spec));
    out.push('\n');

    let front = sorted_front(&status.pareto_front);
    if front.is_empty() {
        let why = status
            .infeasible_reason
            .as_deref()
            .unwrap_or("no candidate meets the requirements");
        let _ = writeln!(out, "INFEASIBLE: nothing meets the requirements.");
        let _ = writeln!(out, "Binding constraint: {why}");
        out.push_str(
            "Relax that requirement (or widen the candidates or data residency) and the \
             operator re-solves.\n",
        );
        return out;
    }
    let scores = scores(&front, cost_weight);
    let recomputed = pick(&front, cost_weight);
    let selected = status.selected.as_ref().and_then(|s| {
        front
            .iter()
            .position(|p| p == s)
            .or_else(|| front.iter().position(|p| same_place(p, s)))
    });
    let marked = selected.or(recomputed);
    let with_standby = front.iter().any(|p| p.standby.is_some());
    let rows: Vec<Vec<String>> = front
        .iter()
        .zip(&scores)
        .enumerate()
        .map(|(i, (p, s))| {
            let mut row = vec![
                format!("{}{}", if Some(i) == marked { "*" } else { "" }, i + 1),
                p.cloud.clone(),
                p.region.clone(),
                p.instance_type.clone(),
                format!("{:.2}", p.monthly_cost),
                format!("{:.2}", p.round_time_seconds),
                format!("{:.3}", s.cost),
                format!("{:.3}", s.time),
                format!("{:.3}", s.score),
            ];
            if with_standby {
                row.push(p.standby.as_ref().map_or("-".into(), |sb| {
                    format!("{}/{}/{}", sb.cloud, sb.region, sb.instance_type)
                }));
            }
            row
        })
        .collect();
    let _ = writeln!(
        out,
        "Pareto front: {} points, cheapest first (* = selected)",
        front.len()
    );
    let mut header = vec![
        "#", "CLOUD", "REGION", "INSTANCE", "USD/MO", "ROUND_S", "COST'", "TIME'", "SCORE",
    ];
    if with_standby {
        header.push("STANDBY");
    }
    out.push_str(&indent(&table(&header, &rows), "  "));
    out.push('\n');

    let Some(i) = marked else {
        return out;
    };
    let chosen = &front[i];
    // Sorted cheapest first; on a true front the last point is the fastest, but a
    // hand-edited or stale status need not be one, so look for it.
    let cheapest = 0;
    let fastest = front
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.round_time_seconds.total_cmp(&b.1.round_time_seconds))
        .map_or(cheapest, |(j, _)| j);
    let _ = writeln!(out, "Why #{} ({}):", i + 1, option_summary(chosen));
    if front.len() == 1 {
        out.push_str("  It is the only point on the front: nothing else is both feasible and not dominated.\n");
    } else {
        let (cmin, cmax) = span(front.iter().map(|p| p.monthly_cost));
        let (tmin, tmax) = span(front.iter().map(|p| p.round_time_seconds));
        let _ = writeln!(
            out,
            "  costWeight {cost_weight} scores each point {cost_weight} × COST' + {} × TIME'; \
             the lowest score wins, a tie goes to the cheaper.",
            round_weight(1.0 - cost_weight),
        );
        let _ = writeln!(
            out,
            "  COST' and TIME' rescale monthly cost ({cmin:.2}–{cmax:.2} USD) and round time \
             ({tmin:.2}–{tmax:.2} s) over the front to [0, 1]."
        );
        let runner_up = scores
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .min_by(|a, b| a.1.score.total_cmp(&b.1.score));
        if let Some((j, s)) = runner_up {
            let _ = writeln!(
                out,
                "  #{} scores {:.3}; the next best, #{}, scores {:.3}.",
                i + 1,
                scores[i].score,
                j + 1,
                s.score
            );
        }
        if i != cheapest {
            let _ = writeln!(
                out,
                "  Against the cheapest (#{}): {}.",
                cheapest + 1,
                trade(chosen, &front[cheapest])
            );
        }
        if i != fastest {
            let _ = writeln!(
                out,
                "  Against the fastest (#{}): {}.",
                fastest + 1,
                trade(chosen, &front[fastest])
            );
        }
    }
    if let Some(sb) = &chosen.standby {
        let _ = writeln!(
            out,
            "  Its standby {}/{}/{} costs {:.2} USD/month of that; rounds take {:.2} s after a failover.",
            sb.cloud, sb.region, sb.instance_type, sb.monthly_cost, sb.failover_round_time_seconds
        );
    }
    if !chosen.site_flavours.is_empty() {
        let flavours: Vec<String> = chosen
            .site_flavours
            .iter()
            .map(|(site, f)| format!("{site}={f}"))
            .collect();
        let _ = writeln!(out, "  Site flavours: {}.", flavours.join(", "));
    }
    match (selected, recomputed) {
        (Some(s), Some(r)) if s != r => {
            let _ = writeln!(
                out,
                "  Note: costWeight {cost_weight} now picks #{} from this front; the status \
                 still shows the pick of the last solve (the spec changed since, or the \
                 scores tie after rounding).",
                r + 1
            );
        }
        (None, Some(_)) if status.selected.is_some() => {
            out.push_str("  Note: the status's selection is not on its front; the status is being rewritten.\n");
        }
        (None, Some(_)) => {
            out.push_str("  Note: the status names no selection; this is what costWeight picks from the front.\n");
        }
        _ => {}
    }
    out
}

/// `1 − w` printed without floating-point noise (`0.7`, not `0.7000000000000001`).
fn round_weight(w: f64) -> f64 {
    (w * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::status::tests::placement_value;
    use fedsky_crds::AggregatorPlacementStatus;

    fn option(cost: f64, time: f64) -> PlacementOption {
        PlacementOption {
            cloud: "aws".into(),
            region: format!("r{cost}"),
            instance_type: "m5.large".into(),
            monthly_cost: cost,
            round_time_seconds: time,
            ..PlacementOption::default()
        }
    }

    fn placement() -> AggregatorPlacement {
        serde_json::from_value(placement_value()).expect("placement")
    }

    #[test]
    fn pick_follows_the_cost_weight_and_breaks_ties_to_the_cheaper() {
        let front = [option(10.0, 90.0), option(20.0, 50.0), option(30.0, 40.0)];
        assert_eq!(pick(&front, 1.0), Some(0));
        assert_eq!(pick(&front, 0.0), Some(2));
        // cost' = 0, .5, 1; time' = 1, .2, 0: at 0.5 the middle scores 0.35.
        assert_eq!(pick(&front, 0.5), Some(1));
        let s = scores(&front, 0.5);
        assert!((s[1].score - 0.35).abs() < 1e-12, "{s:?}");
        // Symmetric ends tie at w = 0.5 with nothing better: the cheaper wins.
        let two = [option(10.0, 20.0), option(20.0, 10.0)];
        assert_eq!(pick(&two, 0.5), Some(0));
        assert_eq!(pick(&[], 0.5), None);
        assert_eq!(pick(&[option(5.0, 5.0)], 0.3), Some(0));
    }

    /// The copy of the rule agrees with the operator's: solve the example with several
    /// weights through the same code the controller runs, then re-pick from the status.
    #[test]
    fn pick_matches_the_solver_on_real_solves() {
        use crate::commands::{Output, SolveArgs, Strategy, solve};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest =
            std::fs::read_to_string(root.join("examples/covid-xray/aggregator-placement.yaml"))
                .expect("example");
        for weight in ["0", "0.2", "0.5", "0.8", "1"] {
            // All regions of both clouds, so the front has more than a couple of points.
            let yaml = manifest
                .replace("costWeight: 0.5", &format!("costWeight: {weight}"))
                .replace("    regions: [eu-central-1, asia-northeast3]\n", "");
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("ap.yaml");
            std::fs::write(&file, yaml).expect("write");
            let out = solve(&SolveArgs {
                file,
                pool: Some(root.join("examples/covid-xray/participant-pool.yaml")),
                clusters: None,
                name: None,
                catalog: None,
                overlay: None,
                strategy: Strategy::FedAvg,
                output: Output::Json,
                front_limit: 20,
            })
            .expect("solve");
            let report: serde_json::Value = serde_json::from_str(&out.output).expect("json");
            let status: AggregatorPlacementStatus =
                serde_json::from_value(report["status"].clone()).expect("status");
            let w: f64 = weight.parse().expect("weight");
            let front = sorted_front(&status.pareto_front);
            assert!(front.len() >= 2, "weight {weight}: front {front:?}");
            let mine = pick(&front, w).map(|i| &front[i]);
            assert_eq!(mine, status.selected.as_ref(), "weight {weight}");
        }
    }

    #[test]
    fn explain_shows_front_pick_and_trade_offs() {
        let text = render_explain(&placement());
        let expect = [
            "AggregatorPlacement covid-xray/covid-xray\n",
            "Solver:       Exact: decomposition over 24 candidates\n",
            "Solve:        24 evaluations, 1.25 ms, catalog 2026-11\n",
            "Feasible:     True (Solved): aws eu-central-1 m5.large",
            "  maxMonthlyCost       60.00 USD\n",
            "  costWeight           0.5 (1 = cheapest, 0 = fastest)\n",
            "  dataResidency        any cloud, any region\n",
            "  standby              none\n",
            "Candidates:   clouds aws, gcp; regions eu-central-1, asia-northeast3; instance types any type in the catalog\n",
            "Participants: the sites of ParticipantPool hospitals\n",
            "Workload:     model 45 MB, 3000 rounds/month, 40 s local compute per round\n",
            "Pareto front: 3 points, cheapest first (* = selected)\n",
            "  #   CLOUD  REGION        INSTANCE   USD/MO  ROUND_S  COST'  TIME'  SCORE\n",
            "  *2  aws    eu-central-1  m5.large    31.45    48.40  0.290  0.246  0.268\n",
            "Why #2 (aws/eu-central-1/m5.large):\n",
            "  costWeight 0.5 scores each point 0.5 × COST' + 0.5 × TIME'; the lowest score wins, a tie goes to the cheaper.\n",
            "  COST' and TIME' rescale monthly cost (23.03–52.10 USD) and round time (46.90–53.00 s) over the front to [0, 1].\n",
            "  #2 scores 0.268; the next best, #1, scores 0.500.\n",
            "  Against the cheapest (#1): 8.42 USD/month more (+36.6 %), rounds 4.60 s faster (-8.7 %).\n",
            "  Against the fastest (#3): 20.65 USD/month less (-39.6 %), rounds 1.50 s slower (+3.2 %).\n",
        ];
        for line in expect {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("Note:"), "{text}");
    }

    #[test]
    fn explain_names_the_binding_constraint_when_infeasible() {
        let mut ap = placement();
        ap.status = Some(AggregatorPlacementStatus {
            infeasible_reason: Some(
                "maxMonthlyCost 10.00 USD is binding: the cheapest candidate costs 23.03 USD"
                    .into(),
            ),
            ..AggregatorPlacementStatus::default()
        });
        let text = render_explain(&ap);
        assert!(
            text.contains("INFEASIBLE: nothing meets the requirements.\n"),
            "{text}"
        );
        assert!(
            text.contains("Binding constraint: maxMonthlyCost 10.00 USD is binding"),
            "{text}"
        );
        assert!(!text.contains("Pareto front"), "{text}");
    }

    #[test]
    fn explain_flags_a_stale_pick_and_an_unsolved_placement() {
        let mut ap = placement();
        ap.spec.requirements.cost_weight = Some(1.0);
        ap.metadata.generation = Some(2);
        let text = render_explain(&ap);
        assert!(
            text.contains("status describes generation 1; the spec is at 2"),
            "{text}"
        );
        assert!(text.contains("Note: costWeight 1 now picks #1"), "{text}");
        assert!(
            text.contains("*2  aws"),
            "the status's pick stays marked: {text}"
        );

        ap.status = None;
        ap.spec.requirements.cost_weight = None;
        let text = render_explain(&ap);
        assert!(text.contains("Not solved yet"), "{text}");
        assert!(
            text.contains("costWeight           0.5 (default;"),
            "{text}"
        );
    }
}
