//! `kubectl fedsky status JOB`: a FederatedJob (and its AggregatorPlacement) as text.
//! Pure: the command reads the objects, these functions only format them, so every
//! line is tested without a cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::conditions::Condition;
use fedsky_crds::federated_job::{ParticipantPhase, ParticipantState, RoundMetrics};
use fedsky_crds::{AggregatorPlacement, FederatedJob};
use kube::ResourceExt;

use super::text::{columns, indent, num, table};

/// The eight bar heights of a sparkline, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Drawn for a round without a (finite) value, so rounds keep their position.
const GAP: char = '·';

/// A sparkline of `values`, one bar per value, scaled from the smallest to the largest
/// finite value so that small gains stay visible; missing or non-finite values are
/// drawn as `·`. All values equal draw a flat middle line.
pub fn sparkline(values: &[Option<f64>]) -> String {
    let finite = || values.iter().flatten().copied().filter(|v| v.is_finite());
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|v| match v {
            Some(v) if v.is_finite() => {
                if hi > lo {
                    let level = ((v - lo) / (hi - lo) * (BARS.len() - 1) as f64).round();
                    // `level` is in 0..=7 by construction; the clamp only guards rounding.
                    BARS[(level.max(0.0) as usize).min(BARS.len() - 1)]
                } else {
                    BARS[BARS.len() / 2 - 1]
                }
            }
            _ => GAP,
        })
        .collect()
}

/// `Type=Status (Reason)` for each condition, sorted by type.
pub fn conditions_summary(conditions: &[Condition]) -> String {
    let mut sorted: Vec<&Condition> = conditions.iter().collect();
    sorted.sort_by(|a, b| a.type_.cmp(&b.type_));
    let parts: Vec<String> = sorted
        .iter()
        .map(|c| {
            if c.reason.is_empty() {
                format!("{}={}", c.type_, c.status)
            } else {
                format!("{}={} ({})", c.type_, c.status, c.reason)
            }
        })
        .collect();
    if parts.is_empty() {
        "none reported yet".into()
    } else {
        parts.join(", ")
    }
}

/// The conditions that need a reader's attention: a `False` `Ready`, and any `True`
/// `Failed`, `Degraded` or `Stalled`, with their messages.
fn attention(conditions: &[Condition]) -> Vec<String> {
    conditions
        .iter()
        .filter(|c| {
            (c.type_ == "Ready" && c.status == "False")
                || (matches!(c.type_.as_str(), "Failed" | "Degraded" | "Stalled")
                    && c.status == "True")
        })
        .filter(|c| !c.message.is_empty())
        .map(|c| format!("{}: {}", c.type_, c.message))
        .collect()
}

fn rounds_section(history: &[RoundMetrics], done: i32, total: i32) -> String {
    let mut rounds: Vec<&RoundMetrics> = history.iter().collect();
    rounds.sort_by_key(|r| r.round);
    let mut out = String::new();
    let _ = writeln!(out, "Rounds:      {done}/{total}");
    if rounds.is_empty() {
        out.push_str("  no round finished yet\n");
        return out;
    }
    let rows: Vec<Vec<String>> = rounds
        .iter()
        .map(|r| {
            vec![
                r.round.to_string(),
                num(r.loss, 4),
                num(r.accuracy, 4),
                num(r.duration_seconds, 2),
                r.participants.to_string(),
            ]
        })
        .collect();
    out.push_str(&indent(
        &table(
            &["ROUND", "LOSS", "ACCURACY", "ROUND_S", "PARTICIPANTS"],
            &rows,
        ),
        "  ",
    ));
    let accuracy: Vec<Option<f64>> = rounds.iter().map(|r| r.accuracy).collect();
    let known: Vec<(i32, f64)> = rounds
        .iter()
        .filter_map(|r| r.accuracy.filter(|a| a.is_finite()).map(|a| (r.round, a)))
        .collect();
    let (first, last) = (rounds[0].round, rounds[rounds.len() - 1].round);
    let span = if first == last {
        format!("round {first}")
    } else {
        format!("rounds {first}–{last}")
    };
    match (known.first(), known.last()) {
        (Some(&(_, a)), Some(&(_, z))) => {
            let (best_round, best) = known
                .iter()
                .copied()
                .fold((0, f64::NEG_INFINITY), |b, k| if k.1 > b.1 { k } else { b });
            let lo = known.iter().map(|k| k.1).fold(f64::INFINITY, f64::min);
            let _ = writeln!(
                out,
                "  accuracy {}  {a:.4} → {z:.4} over {span} (best {best:.4} in round \
                 {best_round}; bars span {lo:.4}–{best:.4})",
                sparkline(&accuracy)
            );
        }
        _ => {
            let _ = writeln!(out, "  accuracy: not reported for {span}");
        }
    }
    if first > 1 {
        let _ = writeln!(
            out,
            "  (status keeps the latest {} rounds; earlier ones are dropped)",
            rounds.len()
        );
    }
    out
}

fn phase_name(p: ParticipantPhase) -> &'static str {
    match p {
        ParticipantPhase::Pending => "Pending",
        ParticipantPhase::Running => "Running",
        ParticipantPhase::Completed => "Completed",
        ParticipantPhase::Failed => "Failed",
        ParticipantPhase::Replaced => "Replaced",
    }
}

/// `2 Running, 1 Replaced`, in lifecycle order.
fn phase_counts(participants: &[&ParticipantState]) -> String {
    let order = [
        ParticipantPhase::Running,
        ParticipantPhase::Completed,
        ParticipantPhase::Pending,
        ParticipantPhase::Failed,
        ParticipantPhase::Replaced,
    ];
    order
        .iter()
        .filter_map(|&phase| {
            let n = participants.iter().filter(|p| p.state == phase).count();
            (n > 0).then(|| format!("{n} {}", phase_name(phase)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn participants_section(job: &FederatedJob) -> String {
    let status = job.status.as_ref();
    let participants = status.map_or(&[][..], |s| s.participants.as_slice());
    let live = participants.iter().filter(|p| p.state.is_live()).count();
    let mut out = String::new();
    let _ = write!(
        out,
        "Participants: pool {}, {live} live of {} (min {}, max {} per round)",
        job.spec.participants.pool_ref.name,
        participants.len(),
        job.spec.participants.min_per_round,
        job.spec.participants.max_per_round,
    );
    if let Some(n) = status.and_then(|s| s.replacements).filter(|&n| n > 0) {
        let budget = job
            .spec
            .participants
            .max_replacements
            .map_or(String::new(), |m| format!(" of {m}"));
        let _ = write!(out, "; {n}{budget} replacements used");
    }
    out.push('\n');
    if participants.is_empty() {
        out.push_str("  none started yet\n");
        return out;
    }
    let mut by_site: BTreeMap<&str, Vec<&ParticipantState>> = BTreeMap::new();
    for p in participants {
        by_site.entry(p.site.as_str()).or_default().push(p);
    }
    // One alignment for every site's rows, so the columns line up down the section.
    let mut rows = Vec::new();
    let mut heads = Vec::new();
    for (site, members) in &mut by_site {
        members.sort_by(|a, b| a.name.cmp(&b.name));
        heads.push((rows.len(), format!("  {site}: {}", phase_counts(members))));
        for p in members.iter() {
            rows.push(vec![
                p.name.clone(),
                phase_name(p.state).to_string(),
                p.node.clone().unwrap_or_else(|| "-".into()),
                p.message.clone().unwrap_or_default(),
            ]);
        }
    }
    let lines = columns(&rows);
    let mut heads = heads.into_iter().peekable();
    for (i, line) in lines.iter().enumerate() {
        while let Some((_, head)) = heads.next_if(|(at, _)| *at == i) {
            out.push_str(&head);
            out.push('\n');
        }
        let _ = writeln!(out, "    {line}");
    }
    out
}

/// `cloud/region/instance`, with the standby when there is one.
pub fn option_summary(o: &PlacementOption) -> String {
    let mut s = format!("{}/{}/{}", o.cloud, o.region, o.instance_type);
    if let Some(sb) = &o.standby {
        let _ = write!(
            s,
            " (standby {}/{}/{})",
            sb.cloud, sb.region, sb.instance_type
        );
    }
    s
}

/// The same aggregator location (and standby location): prices may move between
/// solves, where it runs does not.
pub fn same_place(a: &PlacementOption, b: &PlacementOption) -> bool {
    let standby = |o: &PlacementOption| {
        o.standby
            .as_ref()
            .map(|s| (s.cloud.clone(), s.region.clone(), s.instance_type.clone()))
    };
    a.cloud == b.cloud
        && a.region == b.region
        && a.instance_type == b.instance_type
        && standby(a) == standby(b)
}

fn placement_section(
    job: &FederatedJob,
    placement: Option<&AggregatorPlacement>,
    placement_note: Option<&str>,
) -> String {
    let mut out = String::new();
    let chosen = job.status.as_ref().and_then(|s| s.placement.as_ref());
    let name = placement_name(job);
    let ap_status = placement.and_then(|p| p.status.as_ref());
    let job_option = chosen.and_then(|c| c.option.as_ref());
    match job_option {
        Some(o) => {
            let _ = writeln!(
                out,
                "Placement:   {} (AggregatorPlacement {name})",
                option_summary(o)
            );
            let _ = writeln!(
                out,
                "  {:.2} USD/month, {:.2} s per round (predicted)",
                o.monthly_cost, o.round_time_seconds
            );
        }
        None => {
            let summary = chosen.map_or("", |c| c.summary.as_str());
            let _ = writeln!(
                out,
                "Placement:   {} (AggregatorPlacement {name})",
                if summary.is_empty() {
                    "not chosen yet"
                } else {
                    summary
                }
            );
        }
    }
    if let Some(host) = chosen.and_then(|c| c.member_cluster.as_deref()) {
        let _ = writeln!(out, "  runs on {host}");
    }
    if let Some(agg) = job.status.as_ref().and_then(|s| s.aggregator.as_ref()) {
        let _ = writeln!(out, "  aggregator endpoint {}", agg.endpoint);
    }
    if let Some(note) = placement_note {
        let _ = writeln!(out, "  ({note})");
    }
    let Some(ap) = ap_status else {
        return out;
    };
    if ap.pareto_front.is_empty() {
        if let Some(why) = &ap.infeasible_reason {
            let _ = writeln!(out, "  infeasible: {why}");
        }
        return out;
    }
    // `*` marks where this job runs; the placement's current pick, when it moved since
    // (a re-solve after a catalog or spec change), is marked `>`.
    let mine = job_option.or(ap.selected.as_ref());
    let current = ap
        .selected
        .as_ref()
        .filter(|s| mine.is_none_or(|m| !same_place(m, s)));
    let rows: Vec<Vec<String>> = ap
        .pareto_front
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mark = if mine.is_some_and(|m| same_place(m, p)) {
                "*"
            } else if current.is_some_and(|c| same_place(c, p)) {
                ">"
            } else {
                ""
            };
            vec![
                format!("{mark}{}", i + 1),
                p.cloud.clone(),
                p.region.clone(),
                p.instance_type.clone(),
                format!("{:.2}", p.monthly_cost),
                format!("{:.2}", p.round_time_seconds),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "  Pareto front: {} points, cheapest first{} (* = this job's placement{})",
        ap.pareto_front.len(),
        ap.catalog_version
            .as_deref()
            .map_or(String::new(), |v| format!(", catalog {v}")),
        if current.is_some() {
            ", > = the placement's current pick"
        } else {
            ""
        }
    );
    out.push_str(&indent(
        &table(
            &["#", "CLOUD", "REGION", "INSTANCE", "USD/MO", "ROUND_S"],
            &rows,
        ),
        "    ",
    ));
    if mine.is_some_and(|m| !ap.pareto_front.iter().any(|p| same_place(m, p))) {
        out.push_str("  (this job's placement is no longer on the front: it was re-solved)\n");
    }
    out
}

fn model_section(job: &FederatedJob) -> String {
    let Some(m) = job.status.as_ref().and_then(|s| s.latest_model.as_ref()) else {
        return "Model:       no version yet\n".into();
    };
    let mut out = String::new();
    let mut metrics = Vec::new();
    if let Some(a) = m.accuracy {
        metrics.push(format!("accuracy {}", num(Some(a), 4)));
    }
    if let Some(l) = m.loss {
        metrics.push(format!("loss {}", num(Some(l), 4)));
    }
    for (k, v) in &m.metrics {
        metrics.push(format!("{k} {}", num(Some(*v), 4)));
    }
    let _ = writeln!(
        out,
        "Model:       version {}{}",
        m.version,
        if metrics.is_empty() {
            String::new()
        } else {
            format!(", {}", metrics.join(", "))
        }
    );
    let _ = writeln!(out, "  sha256 {}", m.sha256);
    if !m.uri.is_empty() {
        let _ = writeln!(out, "  uri    {}", m.uri);
    }
    let _ = writeln!(
        out,
        "  kubectl fedsky model download {} -n {} -o {}-v{}.safetensors",
        job.name_any(),
        job.namespace().unwrap_or_default(),
        job.name_any(),
        m.version
    );
    out
}

/// The whole `status` report. `placement` is the job's AggregatorPlacement when it could
/// be read; `placement_note` says why not, when it could not.
pub fn render_status(
    job: &FederatedJob,
    placement: Option<&AggregatorPlacement>,
    placement_note: Option<&str>,
) -> String {
    let status = job.status.as_ref();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "FederatedJob {}/{}",
        job.namespace().unwrap_or_default(),
        job.name_any()
    );
    let phase = status.and_then(|s| s.phase).map_or_else(
        || "Unknown (not reconciled yet)".to_string(),
        |p| format!("{p:?}"),
    );
    let mut times = Vec::new();
    if let Some(t) = status.and_then(|s| s.start_time.as_ref()) {
        times.push(format!("started {}", t.0));
    }
    if let Some(t) = status.and_then(|s| s.completion_time.as_ref()) {
        times.push(format!("finished {}", t.0));
    }
    let _ = writeln!(
        out,
        "Phase:       {phase}{}",
        if times.is_empty() {
            String::new()
        } else {
            format!(" ({})", times.join(", "))
        }
    );
    let conditions = status.map_or(&[][..], |s| s.conditions.as_slice());
    let _ = writeln!(out, "Conditions:  {}", conditions_summary(conditions));
    for line in attention(conditions) {
        let _ = writeln!(out, "  {line}");
    }
    if let (Some(seen), Some(generation)) = (
        status.and_then(|s| s.observed_generation),
        job.metadata.generation,
    ) && seen < generation
    {
        let _ = writeln!(
            out,
            "  (status describes generation {seen}; the spec is at {generation}: the \
             operator has not caught up yet)"
        );
    }
    out.push('\n');
    out.push_str(&rounds_section(
        status.map_or(&[][..], |s| s.history.as_slice()),
        status.and_then(|s| s.current_round).unwrap_or(0),
        job.spec.training.rounds,
    ));
    out.push('\n');
    out.push_str(&participants_section(job));
    out.push('\n');
    out.push_str(&placement_section(job, placement, placement_note));
    out.push('\n');
    out.push_str(&model_section(job));
    out
}

/// The AggregatorPlacement a job uses: the one its status names, else its
/// `placementRef`, else the one the operator creates for inline requirements (named
/// after the job).
pub fn placement_name(job: &FederatedJob) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .map(|p| p.name.clone())
        .or_else(|| {
            job.spec
                .placement
                .placement_ref
                .as_ref()
                .map(|r| r.name.clone())
        })
        .unwrap_or_else(|| job.name_any())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fedsky_crds::AggregatorPlacementStatus;

    #[test]
    fn sparkline_spans_min_to_max_and_marks_gaps() {
        assert_eq!(
            sparkline(&[
                Some(0.1),
                Some(0.2),
                Some(0.3),
                Some(0.4),
                Some(0.5),
                Some(0.6),
                Some(0.7),
                Some(0.8)
            ]),
            "▁▂▃▄▅▆▇█"
        );
        assert_eq!(sparkline(&[Some(0.5), None, Some(0.9)]), "▁·█");
        assert_eq!(sparkline(&[Some(f64::NAN), Some(0.2), Some(0.4)]), "·▁█");
        assert_eq!(sparkline(&[Some(0.7), Some(0.7)]), "▄▄");
        assert_eq!(sparkline(&[None, None]), "··");
        assert_eq!(sparkline(&[]), "");
        // Scaled to the data, not to [0, 1]: a small gain is still visible.
        assert_eq!(sparkline(&[Some(0.90), Some(0.91), Some(0.92)]), "▁▅█");
    }

    /// A job mid-run, as the operator writes it: seven rounds (one without accuracy),
    /// participants at three sites (one replaced), a placement and a model version. The
    /// cluster test (`tests/plugin.rs`) creates the same objects.
    const JOB: &str = include_str!("../../tests/data/plugin/federated-job.json");
    /// Its AggregatorPlacement: a three-point front, the middle one picked.
    const PLACEMENT: &str = include_str!("../../tests/data/plugin/aggregator-placement.json");

    fn parse(text: &str, ns: &str) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(text).expect("test data");
        v["metadata"]["namespace"] = ns.into();
        v
    }

    /// The job in namespace `ns`, without its status.
    pub(crate) fn job_json(ns: &str) -> serde_json::Value {
        let mut v = parse(JOB, ns);
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        v
    }

    pub(crate) fn placement_value() -> serde_json::Value {
        parse(PLACEMENT, "covid-xray")
    }

    fn job() -> FederatedJob {
        serde_json::from_value(parse(JOB, "covid-xray")).expect("job")
    }

    fn placement() -> AggregatorPlacement {
        serde_json::from_value(placement_value()).expect("placement")
    }

    #[test]
    fn status_shows_phase_rounds_sparkline_sites_front_and_model() {
        let text = render_status(&job(), Some(&placement()), None);
        let expect = [
            "FederatedJob covid-xray/covid-xray\n",
            "Phase:       Running (started 2026-05-01T09:55:00Z)\n",
            "Conditions:  Degraded=True (ParticipantReplaced), Progressing=True (RoundCompleted), Ready=False (RoundsRunning)\n",
            "  Ready: round 7 of 20\n",
            "  Degraded: hospital-eu lost a participant; replaced\n",
            "Rounds:      7/20\n",
            "  ROUND    LOSS  ACCURACY  ROUND_S  PARTICIPANTS\n",
            "      3  0.8000         -    61.00             2\n",
            "  accuracy ▁▃·▆▇██  0.3400 → 0.8700 over rounds 1–7 (best 0.8800 in round 6; bars span 0.3400–0.8800)\n",
            "Participants: pool hospitals, 2 live of 4 (min 2, max 3 per round); 1 of 5 replacements used\n",
            "  hospital-asia: 1 Running\n",
            "    covid-xray-hospital-asia-0  Running   asia-1\n",
            "  hospital-eu: 1 Running, 1 Replaced\n",
            "    covid-xray-hospital-eu-0    Replaced  eu-1    OOMKilled\n",
            "  hospital-us: 1 Pending\n",
            "    covid-xray-hospital-us-0    Pending   -       waiting for a node\n",
            "Placement:   aws/eu-central-1/m5.large (AggregatorPlacement covid-xray)\n",
            "  31.45 USD/month, 48.40 s per round (predicted)\n",
            "  runs on public-eu\n",
            "  aggregator endpoint 10.0.0.5:50051\n",
            "  Pareto front: 3 points, cheapest first, catalog 2026-11 (* = this job's placement)\n",
            "    1   aws    eu-central-1  t3.medium   23.03    53.00\n",
            "    *2  aws    eu-central-1  m5.large    31.45    48.40\n",
            "Model:       version 7, accuracy 0.8700, loss 0.4500\n",
            "  sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n",
            "  kubectl fedsky model download covid-xray -n covid-xray -o covid-xray-v7.safetensors\n",
        ];
        for line in expect {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("earlier ones are dropped"), "{text}");
    }

    #[test]
    fn a_moved_pick_is_marked_and_a_missing_placement_is_explained() {
        let mut ap = placement();
        if let Some(s) = ap.status.as_mut() {
            s.selected = Some(s.pareto_front[0].clone());
        }
        let text = render_status(&job(), Some(&ap), None);
        assert!(text.contains(">1  aws"), "{text}");
        assert!(text.contains("*2  aws"), "{text}");
        assert!(text.contains("> = the placement's current pick"), "{text}");

        let text = render_status(
            &job(),
            None,
            Some("cannot read AggregatorPlacement covid-xray: forbidden"),
        );
        assert!(
            text.contains("  (cannot read AggregatorPlacement covid-xray: forbidden)\n"),
            "{text}"
        );
        assert!(!text.contains("Pareto front"), "{text}");
    }

    #[test]
    fn a_fresh_job_renders_without_status() {
        let job: FederatedJob = serde_json::from_value(job_json("ns")).expect("job");
        let text = render_status(&job, None, None);
        assert!(
            text.contains("Phase:       Unknown (not reconciled yet)\n"),
            "{text}"
        );
        assert!(text.contains("Conditions:  none reported yet\n"), "{text}");
        assert!(
            text.contains("Rounds:      0/20\n  no round finished yet\n"),
            "{text}"
        );
        assert!(text.contains("0 live of 0"), "{text}");
        assert!(text.contains("  none started yet\n"), "{text}");
        assert!(
            text.contains("Placement:   not chosen yet (AggregatorPlacement"),
            "{text}"
        );
        assert!(text.contains("Model:       no version yet\n"), "{text}");
        assert_eq!(placement_name(&job), "covid-xray");
    }

    #[test]
    fn a_bounded_history_and_a_stale_status_are_called_out() {
        let mut job = job();
        if let Some(s) = job.status.as_mut() {
            s.history.retain(|r| r.round >= 5);
        }
        job.metadata.generation = Some(3);
        let text = render_status(&job, None, None);
        assert!(
            text.contains("(status describes generation 1; the spec is at 3: the operator"),
            "{text}"
        );
        assert!(text.contains("over rounds 5–7"), "{text}");
        assert!(
            text.contains("(status keeps the latest 3 rounds; earlier ones are dropped)"),
            "{text}"
        );
    }

    #[test]
    fn an_infeasible_placement_shows_its_binding_constraint() {
        let mut job = job();
        if let Some(s) = job.status.as_mut() {
            s.placement = None;
        }
        let mut ap = placement();
        ap.status = Some(AggregatorPlacementStatus {
            infeasible_reason: Some(
                "maxMonthlyCost 10 USD: the cheapest candidate costs 23.03".into(),
            ),
            ..AggregatorPlacementStatus::default()
        });
        let text = render_status(&job, Some(&ap), None);
        assert!(
            text.contains("Placement:   not chosen yet (AggregatorPlacement covid-xray)"),
            "{text}"
        );
        assert!(
            text.contains("  infeasible: maxMonthlyCost 10 USD"),
            "{text}"
        );
    }
}
