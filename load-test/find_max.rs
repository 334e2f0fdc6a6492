//! `--find-max`: the maximum sustainable rate, and the latency at half of it.
//!
//! A ladder of short open-loop steps at rising target rates (the start rate,
//! then × `RATE_FACTOR` per step, at most `steps` of them), each `step` long.
//! A step passes when the throughput it achieved is at least
//! `ACHIEVED_SHARE_MIN` of its target and its p99 latency (from each batch's
//! due time, so corrected for coordinated omission) is under the bound, with
//! every answer as expected. The ladder stops at the first step that fails;
//! the maximum sustainable rate is the highest passing target. Then, after the
//! settle pause, one more step at half that maximum measures the p99 that
//! issue #4's target is about. That step is longer (`half_step`, 30 s in
//! `bench/run.sh`): in a 5 s step one second with a memtable flush is a fifth
//! of the samples and decides the p99 alone.
//!
//! Every step takes fresh persons from the setup's pool, so the most the plan
//! can need is computed and checked against the setup before anything is sent.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::peak::{
    self, Phase, Tally, Timeline, Workload, PERSON_OPERATIONS_MAX, PERSON_OPERATIONS_MIN,
};

/// Each step's target is this times the last one's.
pub const RATE_FACTOR: f64 = 1.25;
/// A step passes when it achieved at least this share of its target rate.
pub const ACHIEVED_SHARE_MIN: f64 = 0.95;
/// Caps on the flags: steps in the ladder and seconds per step (the half step too).
pub const STEPS_MAX: u32 = 40;
pub const STEP_S_MAX: u64 = 600;

pub struct Plan {
    pub start_ops_per_s: f64,
    pub steps: u32,
    pub step: Duration,
    /// Length of the step at half the maximum.
    pub half_step: Duration,
    pub p99_ms_max: f64,
}

impl Plan {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.start_ops_per_s >= 1.0,
            "--find-max-start must be at least 1 operation per second"
        );
        anyhow::ensure!(
            (1..=STEPS_MAX).contains(&self.steps),
            "--find-max-steps must be 1 to {STEPS_MAX}"
        );
        anyhow::ensure!(
            (1..=STEP_S_MAX).contains(&self.step.as_secs()),
            "--step-s must be 1 to {STEP_S_MAX}"
        );
        anyhow::ensure!(
            (1..=STEP_S_MAX).contains(&self.half_step.as_secs()),
            "--half-step-s must be 1 to {STEP_S_MAX}"
        );
        anyhow::ensure!(self.p99_ms_max > 0.0, "--p99-max-ms must be positive");
        Ok(())
    }

    /// The ladder's target rates, operations per second.
    pub fn rates(&self) -> Vec<f64> {
        (0..self.steps)
            .map(|i| self.start_ops_per_s * RATE_FACTOR.powi(i as i32))
            .collect()
    }

    /// The most persons the plan can take: every step of the ladder, then the
    /// step at half the highest rate. An open-loop step sends batches due
    /// before its end, so at most its target operations plus one frame per
    /// connection, and a person brings at least `PERSON_OPERATIONS_MIN`.
    pub fn persons_needed(&self, connections: usize, batch: usize) -> u64 {
        let frame_operations_max = batch.max(PERSON_OPERATIONS_MAX) as f64;
        let rates = self.rates();
        let highest = rates.last().copied().unwrap_or(0.0);
        rates
            .iter()
            .map(|&rate| (rate, self.step))
            .chain(std::iter::once((highest / 2.0, self.half_step)))
            .map(|(rate, step)| {
                let operations =
                    rate * step.as_secs_f64() + connections as f64 * frame_operations_max;
                (operations / PERSON_OPERATIONS_MIN as f64).ceil() as u64
            })
            .sum()
    }
}

/// One step as reported.
pub struct Step {
    pub target_ops_per_s: f64,
    pub operations: u64,
    pub wall_s: f64,
    pub achieved_ops_per_s: f64,
    pub redeems_per_s: f64,
    pub latency_ms: serde_json::Value,
    /// How long after their due time frames left (`Tally::departed_late_us`).
    pub departed_late_ms: serde_json::Value,
    pub p99_ms: f64,
    /// `None` when the step passed, else why not.
    pub failure: Option<String>,
}

impl Step {
    fn judge(target_ops_per_s: f64, outcome: &peak::Outcome, p99_ms_max: f64) -> Step {
        let tally = &outcome.tally;
        let operations = tally.operations();
        let achieved_ops_per_s = operations as f64 / outcome.wall_s;
        let p99_ms = tally.latency_ms(0.99);
        let failure = if outcome.ran_out {
            Some("the setup's persons ran out".to_owned())
        } else if tally.unexpected > 0 || tally.connection_errors > 0 {
            Some(format!(
                "{} unexpected answers, {} connection errors",
                tally.unexpected, tally.connection_errors
            ))
        } else if achieved_ops_per_s < ACHIEVED_SHARE_MIN * target_ops_per_s {
            Some(format!(
                "achieved {:.1}% of the target",
                100.0 * achieved_ops_per_s / target_ops_per_s
            ))
        } else if p99_ms >= p99_ms_max {
            Some(format!("p99 {p99_ms:.2} ms ≥ {p99_ms_max} ms"))
        } else {
            None
        };
        Step {
            target_ops_per_s,
            operations,
            wall_s: outcome.wall_s,
            achieved_ops_per_s,
            redeems_per_s: tally.accepted("redeem") as f64 / outcome.wall_s,
            latency_ms: tally.latency_json(),
            departed_late_ms: tally.departed_late_json(),
            p99_ms,
            failure,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "target_ops_per_s": self.target_ops_per_s,
            "operations": self.operations,
            "wall_s": self.wall_s,
            "achieved_ops_per_s": self.achieved_ops_per_s,
            "achieved_share": self.achieved_ops_per_s / self.target_ops_per_s,
            "redeems_per_s": self.redeems_per_s,
            "latency_ms": self.latency_ms,
            "departed_late_ms": self.departed_late_ms,
            "passed": self.failure.is_none(),
            "failure": self.failure,
        })
    }

    pub fn summary(&self) -> String {
        format!(
            "target {:.0} ops/s: achieved {:.0} ops/s ({:.1}%), p50 {:.2} ms, p99 {:.2} ms \
             (frames left p99 {:.2} ms after due): {}",
            self.target_ops_per_s,
            self.achieved_ops_per_s,
            100.0 * self.achieved_ops_per_s / self.target_ops_per_s,
            self.latency_ms["p50"].as_f64().unwrap_or(0.0),
            self.p99_ms,
            self.departed_late_ms["p99"].as_f64().unwrap_or(0.0),
            match &self.failure {
                None => "sustained".to_owned(),
                Some(why) => format!("not sustained ({why})"),
            }
        )
    }
}

pub struct FindMax {
    pub ladder: Vec<Step>,
    /// The highest target rate of a passing step.
    pub max_ops_per_s: Option<f64>,
    /// Every step of the ladder passed: the maximum may lie higher.
    pub ladder_exhausted: bool,
    /// The step at half the maximum.
    pub half: Option<Step>,
    /// Every answer of every step, for the consistency check.
    pub tally: Tally,
}

impl FindMax {
    /// The passing step at the maximum.
    pub fn best(&self) -> Option<&Step> {
        self.ladder.iter().rev().find(|step| step.failure.is_none())
    }

    pub fn to_json(&self, plan: &Plan) -> serde_json::Value {
        serde_json::json!({
            "start_ops_per_s": plan.start_ops_per_s,
            "rate_factor": RATE_FACTOR,
            "steps_max": plan.steps,
            "step_s": plan.step.as_secs_f64(),
            "half_step_s": plan.half_step.as_secs_f64(),
            "p99_ms_max": plan.p99_ms_max,
            "achieved_share_min": ACHIEVED_SHARE_MIN,
            "ladder": self.ladder.iter().map(Step::to_json).collect::<Vec<_>>(),
            "max_sustainable_ops_per_s": self.max_ops_per_s,
            "max_sustainable_redeems_per_s": self.best().map(|step| step.redeems_per_s),
            "ladder_exhausted": self.ladder_exhausted,
            "half_max_step": self.half.as_ref().map(Step::to_json),
            "p99_ms_at_half_max": self.half.as_ref().map(|step| step.p99_ms),
        })
    }
}

/// Runs the ladder, then (after `settle`, so that the overload of the step
/// that failed — its queues, RocksDB's flushes and compactions — does not
/// spill into it) the step at half the maximum. Phases are numbered by step,
/// the half step after the whole ladder (request ids stay unique).
pub async fn run(
    plan: &Plan,
    workload: &Arc<Workload>,
    timeline: &Arc<Mutex<Timeline>>,
    settle: Duration,
) -> anyhow::Result<FindMax> {
    let mut tally = Tally::new();
    let mut ladder = Vec::new();
    let rates = plan.rates();
    for (i, &rate) in rates.iter().enumerate() {
        let label = format!("step {}/{} at {rate:.0} ops/s", i + 1, rates.len());
        let (outcome, step) =
            run_step(plan, workload, timeline, i as u32, rate, plan.step, &label).await?;
        tally.add(&outcome.tally);
        eprintln!("{label}: {}", step.summary());
        let passed = step.failure.is_none();
        ladder.push(step);
        if !passed {
            break;
        }
    }
    let ladder_exhausted =
        ladder.len() == rates.len() && ladder.iter().all(|s| s.failure.is_none());
    let max_ops_per_s = ladder
        .iter()
        .rev()
        .find(|step| step.failure.is_none())
        .map(|step| step.target_ops_per_s);
    let half = match max_ops_per_s {
        Some(max) => {
            if !settle.is_zero() {
                eprintln!("settling for {} s before the half step", settle.as_secs());
                tokio::time::sleep(settle).await;
            }
            let rate = max / 2.0;
            let label = format!("half the maximum, {rate:.0} ops/s");
            let index = rates.len() as u32;
            let (outcome, step) = run_step(
                plan,
                workload,
                timeline,
                index,
                rate,
                plan.half_step,
                &label,
            )
            .await?;
            tally.add(&outcome.tally);
            eprintln!("{label}: {}", step.summary());
            Some(step)
        }
        None => None,
    };
    Ok(FindMax {
        ladder,
        max_ops_per_s,
        ladder_exhausted,
        half,
        tally,
    })
}

async fn run_step(
    plan: &Plan,
    workload: &Arc<Workload>,
    timeline: &Arc<Mutex<Timeline>>,
    index: u32,
    rate: f64,
    duration: Duration,
    label: &str,
) -> anyhow::Result<(peak::Outcome, Step)> {
    let progress = crate::progress_bar(
        (rate * duration.as_secs_f64()).ceil() as u64,
        label.to_owned(),
        "operations",
    );
    let phase = Phase {
        index,
        rate_ops_per_s: Some(rate),
        duration,
    };
    let outcome = peak::run(workload, phase, timeline, &progress).await?;
    progress.finish_and_clear();
    let step = Step::judge(rate, &outcome, plan.p99_ms_max);
    Ok((outcome, step))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: u32) -> Plan {
        Plan {
            start_ops_per_s: 1_000.0,
            steps,
            step: Duration::from_secs(5),
            half_step: Duration::from_secs(10),
            p99_ms_max: 100.0,
        }
    }

    #[test]
    fn the_ladder_rises_by_the_factor() {
        let rates = plan(4).rates();
        assert_eq!(rates, vec![1_000.0, 1_250.0, 1_562.5, 1_953.125]);
    }

    /// Each step: target operations plus one frame per connection, over 4
    /// operations per person; the half step at half the highest rate, for
    /// its own (longer) time.
    #[test]
    fn persons_needed_covers_every_step_and_the_half_step() {
        // 16 connections × 64 operations = 1,024 operations of slack per step.
        let needed = plan(2).persons_needed(16, 64);
        // ⌈(5,000 + 1,024) / 4⌉ at 1,000 ops/s for 5 s, ⌈(6,250 + 1,024) / 4⌉
        // at 1,250, ⌈(6,250 + 1,024) / 4⌉ at half of 1,250 for 10 s.
        assert_eq!(needed, 1_506 + 1_819 + 1_819);
    }

    #[test]
    fn plans_out_of_bounds_are_refused() {
        assert!(plan(0).validate().is_err());
        assert!(plan(STEPS_MAX + 1).validate().is_err());
        assert!(plan(12).validate().is_ok());
        let mut long = plan(3);
        long.step = Duration::from_secs(STEP_S_MAX + 1);
        assert!(long.validate().is_err());
        let mut long_half = plan(3);
        long_half.half_step = Duration::from_secs(STEP_S_MAX + 1);
        assert!(long_half.validate().is_err());
        long_half.half_step = Duration::ZERO;
        assert!(long_half.validate().is_err());
    }
}
