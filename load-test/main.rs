//! `voucher-load`: the enrollment-peak load generator. Drives a running
//! voucherd over QUIC as `bureau` (setup) and `gateway` (peak), checks every
//! answer against what it must be, and reports throughput, latency
//! percentiles, refusals by reason and a consistency check against `stats`.
//!
//! Layout: `main.rs` owns the flags, the setup phase and the report (human
//! summary, JSON, engine-limit ratio); `peak.rs` one peak phase (workers,
//! checks, tally, per-second timeline); `find_max.rs` the ladder of open-loop
//! steps that finds the maximum sustainable rate (`--find-max`); `plot.rs` the
//! SVG plot of throughput and latency per second (`--plot`).

mod find_max;
mod pace;
mod peak;
mod plot;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use voucherd::domain::campaign::Campaign;
use voucherd::domain::enums::{Category, Channel, ClassMode, InstitutionType, Kind};
use voucherd::domain::ids::{InstitutionCode, VoucherId};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role, SiteSpec};
use voucherd::domain::time::{Clock, SystemClock};
use voucherd::net::client::Encoding;
use voucherd_load::kit::workload::{id_number, open_class};

use peak::{Connection, Institution, Phase, Timeline, Workload};

#[derive(Parser, Clone)]
#[command(
    name = "voucher-load",
    about = "Enrollment-peak load test for voucherd"
)]
struct Args {
    /// The daemon's address; in replicated mode several, comma-separated:
    /// every connection follows the leader among them through a fail-over
    /// (a frame lost or refused `not_leader` is sent again with the same
    /// request ids to the new leader; binary frames only).
    #[arg(
        long = "server",
        default_value = "127.0.0.1:7443",
        value_delimiter = ','
    )]
    servers: Vec<String>,
    #[arg(long, default_value = "certs")]
    certs: PathBuf,
    /// Persons to set up; each gets 4 claimed vouchers of different kinds.
    #[arg(long, default_value_t = 2_500)]
    persons: u64,
    /// Institutions, spread over the campaign's districts by target.
    #[arg(long, default_value_t = 200)]
    institutions: u32,
    /// Concurrent connections in the peak phase.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Operations per request frame.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Pause between setup and peak, seconds: lets RocksDB flush and compact
    /// what the setup wrote, as it would between issuing and enrollment day.
    /// --find-max also pauses this long before the step at half the maximum.
    #[arg(long, default_value_t = 0)]
    settle_s: u64,
    /// Peak traffic in the JSON encoding (ALPN `voucherd-json/1`, as gateways
    /// in other languages speak it) instead of the binary one; setup stays binary.
    #[arg(long)]
    json: bool,
    /// Peak phase length, seconds (it also ends when every person is served).
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Open loop at this many operations per second (0: closed loop, as fast as answers come).
    #[arg(long, default_value_t = 0, conflicts_with = "find_max")]
    rate: u64,
    /// Instead of one peak: find the maximum sustainable rate with a ladder of
    /// open-loop steps (×1.25 each), then measure a step at half of it.
    #[arg(long)]
    find_max: bool,
    /// --find-max: the first step's target, operations per second.
    #[arg(long, default_value_t = 1_000)]
    find_max_start: u64,
    /// --find-max: steps in the ladder at most (it stops at the first failing step).
    #[arg(long, default_value_t = 16)]
    find_max_steps: u32,
    /// --find-max: length of each step, seconds.
    #[arg(long, default_value_t = 5)]
    step_s: u64,
    /// --find-max: length of the step at half the maximum, seconds (its p99
    /// is issue #4's latency target; a short step lets one second decide it).
    #[arg(long, default_value_t = 30)]
    half_step_s: u64,
    /// --find-max: a step is sustained only if its p99 latency is under this, ms.
    #[arg(long, default_value_t = 100.0)]
    p99_max_ms: f64,
    /// Share of persons (percent) who also get invalid operations (double
    /// redemption, 4th use, check-in outside the site).
    #[arg(long, default_value_t = 5)]
    invalid_percent: u32,
    /// Share of traffic (percent) sent to the 5 hottest institutions.
    #[arg(long, default_value_t = 30)]
    hot_percent: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also measure the bare RocksDB limit in this folder (same run) and report the ratio.
    #[arg(long)]
    engine_limit_dir: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write an SVG plot of throughput and latency (p50, p99) per second of the peak here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Sends `requests` in frames of at most 1,000, advancing `progress` per frame.
async fn send_all(
    client: &Connection,
    requests: Vec<Request>,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<Answer>> {
    let mut answers = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(1_000) {
        answers.extend(client.execute(chunk).await?);
        progress.inc(chunk.len() as u64);
    }
    Ok(answers)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar(length: u64, prefix: String, unit: &str) -> ProgressBar {
    let progress = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{per_sec}} ({{elapsed}})"
        ))
        .expect("template"),
    );
    progress.set_prefix(prefix);
    progress
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(error) => {
            eprintln!("voucher-load: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.connections >= 1 && args.institutions >= 1 && args.batch >= 1,
        "--connections, --institutions and --batch must be at least 1"
    );
    let plan = args.find_max.then(|| find_max::Plan {
        start_ops_per_s: args.find_max_start as f64,
        steps: args.find_max_steps,
        step: Duration::from_secs(args.step_s),
        half_step: Duration::from_secs(args.half_step_s),
        p99_ms_max: args.p99_max_ms,
    });
    if let Some(plan) = &plan {
        plan.validate()?;
        let needed = plan.persons_needed(args.connections, args.batch);
        anyhow::ensure!(
            args.persons >= needed,
            "--find-max may need {needed} persons ({} vouchers) for its {} steps of {} s from {} ops/s \
             (×{} each, up to {:.0} ops/s) and the step of {} s at half the highest, but --persons is {}: \
             raise --persons, or lower --find-max-start, --find-max-steps, --step-s or --half-step-s",
            needed * 4,
            plan.steps,
            args.step_s,
            args.find_max_start,
            find_max::RATE_FACTOR,
            plan.rates().last().copied().unwrap_or(0.0),
            args.half_step_s,
            args.persons
        );
    }
    let run_tag = format!("{}-{}", args.seed, SystemClock.now().0);
    // The daemon's campaign: its clock may be moved (D42), so this one is too.
    let campaign = Campaign::default_for(voucherd::admin::daemon::clock()?.now());
    let bureau =
        Connection::open(&args.servers, &args.certs, Role::Bureau, Encoding::Binary).await?;
    let stats_before = stats(&bureau).await?;

    let started = Instant::now();
    let (institutions, vouchers) = setup(&args, &campaign, &bureau, &run_tag).await?;
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!("setup done in {setup_s:.1} s");
    if args.settle_s > 0 {
        eprintln!("settling for {} s", args.settle_s);
        tokio::time::sleep(Duration::from_secs(args.settle_s)).await;
    }

    let workload = Arc::new(Workload {
        servers: args.servers.clone(),
        certs: args.certs.clone(),
        connections: args.connections,
        batch: args.batch,
        encoding: if args.json {
            Encoding::Json
        } else {
            Encoding::Binary
        },
        invalid_percent: args.invalid_percent,
        hot_percent: args.hot_percent,
        seed: args.seed,
        run_tag,
        vouchers,
        institutions,
        next_person: AtomicU64::new(0),
    });
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let (tally, found) = match &plan {
        Some(plan) => {
            let mut found = find_max::run(
                plan,
                &workload,
                &timeline,
                Duration::from_secs(args.settle_s),
            )
            .await?;
            (std::mem::take(&mut found.tally), Some(found))
        }
        None => {
            // Each person brings 4 operations, and 3 more if picked for invalid ones.
            let per_person = 4.0 + 3.0 * f64::from(args.invalid_percent.min(100)) / 100.0;
            let mut expected = (workload.persons_left() as f64 * per_person) as u64;
            if args.rate > 0 {
                expected = expected.min(args.rate * args.duration_s);
            }
            let progress = progress_bar(
                expected,
                format!("peak (at most {} s)", args.duration_s),
                "operations",
            );
            let phase = Phase {
                index: 0,
                rate_ops_per_s: (args.rate > 0).then_some(args.rate as f64),
                duration: Duration::from_secs(args.duration_s),
            };
            let outcome = peak::run(&workload, phase, &timeline, &progress).await?;
            progress.finish_and_clear();
            (outcome.tally, None)
        }
    };
    let peak_end = Instant::now();
    let (peak_s, per_second) = {
        let timeline = timeline.lock();
        (timeline.span_s(peak_end), timeline.figures(peak_end))
    };
    let stats_after = stats(&bureau).await?;
    bureau.close().await;

    let operations = tally.operations();
    let redeems = tally.accepted("redeem");
    let checkins = tally.accepted("checkin");
    let used_delta = stats_after.0 - stats_before.0;
    let checkin_delta = stats_after.1 - stats_before.1;
    let consistent = used_delta == redeems && checkin_delta == checkins && tally.unexpected == 0;
    let mode = match (&plan, args.rate) {
        (Some(_), _) => "find-max: open-loop ladder".to_owned(),
        (None, 0) => "closed loop".to_owned(),
        (None, rate) => format!("open loop at {rate} ops/s"),
    };
    let mut report = serde_json::json!({
        "persons": args.persons,
        "institutions": args.institutions,
        "connections": args.connections,
        "batch": args.batch,
        "encoding": if args.json { "json" } else { "binary" },
        "mode": mode,
        "setup_s": setup_s,
        "settle_s": args.settle_s,
        "peak_s": peak_s,
        "operations": operations,
        "operations_per_s": operations as f64 / peak_s,
        "redeems_accepted": redeems,
        "redeems_per_s": redeems as f64 / peak_s,
        "checkins_accepted": checkins,
        "latency_ms": tally.latency_json(),
        "departed_late_ms": tally.departed_late_json(),
        "refused": tally.refused,
        "unexpected_answers": tally.unexpected,
        "connection_errors": tally.connection_errors,
        "frames_resent_after_failover": tally.resent,
        "per_second": per_second.iter().map(|f| serde_json::json!({
            "second": f.second,
            "operations": f.operations,
            "operations_per_s": f.operations_per_s,
            "latency_ms": f.latency_ms.map(|(p50, p99)| serde_json::json!({"p50": p50, "p99": p99})),
        })).collect::<Vec<_>>(),
        "consistency": {"stats_used_delta": used_delta, "stats_used_with_checkin_delta": checkin_delta, "ok": consistent},
    });
    println!(
        "peak ({mode}): {operations} operations in {peak_s:.1} s = {:.0} ops/s; {redeems} redeems = {:.0} redeems/s",
        operations as f64 / peak_s,
        redeems as f64 / peak_s
    );
    println!(
        "latency per operation (batch round trip{}): p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        if args.rate > 0 || plan.is_some() { " from its due time" } else { "" },
        tally.latency_ms(0.5),
        tally.latency_ms(0.9),
        tally.latency_ms(0.99),
        tally.latency_ms(0.999),
        peak::ms(tally.latency_us.max())
    );
    if args.rate > 0 || plan.is_some() {
        println!(
            "frames left after their due time by p50 {:.2} ms, p99 {:.2}, max {:.2} \
             (the generator's pacing, or the connection's previous frame still \
             unanswered; counted in the latency above)",
            tally.departed_late_ms(0.5),
            tally.departed_late_ms(0.99),
            peak::ms(tally.departed_late_us.max())
        );
    }
    println!(
        "refused by reason: {:?}; unexpected answers: {}; connection errors: {}; frames sent again after a fail-over: {}",
        tally.refused, tally.unexpected, tally.connection_errors, tally.resent
    );
    println!(
        "consistency: stats used +{used_delta} vs {redeems} redeems accepted, with check-in +{checkin_delta} vs {checkins}: {}",
        if consistent { "OK" } else { "MISMATCH" }
    );
    // The end-to-end redeem rate compared with the engine limit: the whole
    // peak's, or with --find-max the rate of the step at the maximum.
    let mut redeems_per_s = redeems as f64 / peak_s;
    if let (Some(plan), Some(found)) = (&plan, &found) {
        for (i, step) in found.ladder.iter().enumerate() {
            println!("find-max step {}: {}", i + 1, step.summary());
        }
        match (found.max_ops_per_s, found.best()) {
            (Some(max), Some(best)) => {
                println!(
                    "maximum sustainable rate: {max:.0} ops/s target (achieved {:.0} ops/s, {:.0} redeems/s; \
                     ≥ {:.0}% of target, p99 < {} ms){}",
                    best.achieved_ops_per_s,
                    best.redeems_per_s,
                    find_max::ACHIEVED_SHARE_MIN * 100.0,
                    plan.p99_ms_max,
                    if found.ladder_exhausted {
                        "; every step passed, so the maximum may lie higher (raise --find-max-start or --find-max-steps)"
                    } else {
                        ""
                    }
                );
                redeems_per_s = best.redeems_per_s;
            }
            _ => println!(
                "maximum sustainable rate: none at or above {} ops/s (the first step failed)",
                args.find_max_start
            ),
        }
        if let Some(half) = &found.half {
            println!("at half the maximum: {}", half.summary());
            println!(
                "p99 latency at half the maximum sustainable rate: {:.2} ms (issue #4 target ≤ 5 ms: {})",
                half.p99_ms,
                if half.p99_ms <= 5.0 { "met" } else { "missed" }
            );
        }
        report["find_max"] = found.to_json(plan);
    }
    if let Some(dir) = &args.engine_limit_dir {
        use voucherd_load::engine_limit::{measure_shape, LimitRun, WriteShape};
        // Each shape's best group size; the shapes alternate per group size.
        let mut best: Vec<Option<LimitRun>> = vec![None; WriteShape::ALL.len()];
        for group in [1, 16, 128, 1024] {
            for (n, shape) in WriteShape::ALL.into_iter().enumerate() {
                let folder = dir.join(format!("{}-group-{group}", shape.name()));
                let _ = std::fs::remove_dir_all(&folder);
                let run = measure_shape(&folder, group, Duration::from_secs(3), shape)?;
                let _ = std::fs::remove_dir_all(&folder);
                println!(
                    "engine limit, {} shape, group {group}: {:.0} redeems/s",
                    shape.name(),
                    run.redeems_per_s()
                );
                let key = match shape {
                    WriteShape::Split => "engine_limit".to_string(),
                    other => format!("engine_limit_{}", other.name()),
                };
                report[key][group.to_string()] = run.redeems_per_s().into();
                if best[n].is_none_or(|b| run.redeems_per_s() > b.redeems_per_s()) {
                    best[n] = Some(run);
                }
            }
        }
        for (n, shape) in WriteShape::ALL.into_iter().enumerate() {
            let best = best[n].expect("four runs");
            let ratio = redeems_per_s / best.redeems_per_s();
            println!(
                "end-to-end redeems/s{} are {:.1}% of the engine limit in the {} shape ({:.0}/s at group {})",
                if plan.is_some() {
                    " at the maximum sustainable rate"
                } else {
                    ""
                },
                ratio * 100.0,
                shape.name(),
                best.redeems_per_s(),
                best.group
            );
            let suffix = match shape {
                WriteShape::Split => String::new(),
                other => format!("_{}", other.name()),
            };
            report[format!("engine_limit_best{suffix}")] = best.redeems_per_s().into();
            report[format!("ratio_to_engine_limit{suffix}")] = ratio.into();
        }
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "voucher-load, {mode}: {} connections, batch {}",
            args.connections, args.batch
        );
        plot::write_svg(path, &title, &per_second)?;
        println!("plot: {} ({} seconds)", path.display(), per_second.len());
        report["plot"] = path.display().to_string().into();
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(consistent && tally.connection_errors == 0)
}

/// The kinds of voucher each person holds in the load: `Kind::ALL[..4]`.
const SETUP_KINDS: usize = 4;

/// Setup: institutions weighted by district targets, one operator each, a
/// class for each of the `SETUP_KINDS` kinds, then
/// persons with 4 claimed vouchers each (kinds, categories, channels mixed).
async fn setup(
    args: &Args,
    campaign: &Campaign,
    bureau: &Connection,
    run_tag: &str,
) -> anyhow::Result<(Vec<Institution>, Vec<[VoucherId; 4]>)> {
    eprintln!(
        "setup: {} institutions, {} persons × 4 vouchers",
        args.institutions, args.persons
    );
    let gateway =
        Connection::open(&args.servers, &args.certs, Role::Gateway, Encoding::Binary).await?;
    let progress = progress_bar(
        (2 + SETUP_KINDS as u64) * u64::from(args.institutions) + 8 * args.persons,
        "setup".to_owned(),
        "requests",
    );
    let total_target: u64 = campaign.districts.iter().map(|d| d.target).sum();
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let code_base = 1_000_000 + (SystemClock.now().0 as u32 % 8_000) * 1_000;
    let mut institutions = Vec::new();
    let mut requests = Vec::new();
    for i in 0..args.institutions {
        let pick = rng.gen_range(0..total_target);
        let mut acc = 0;
        let district = campaign.districts.iter().find(|d| {
            acc += d.target;
            pick < acc
        });
        let district = district.expect("pick below total").code;
        let code = InstitutionCode(code_base + i);
        let site = (
            29.0 + rng.gen::<f64>() * 2.5,
            106.0 + rng.gen::<f64>() * 3.5,
        );
        requests.push(Request {
            id: format!("load-{run_tag}-inst-{i}"),
            op: Op::RegisterInstitution {
                code,
                name: format!("负载测试培训机构 {i}"),
                district,
                address: "重庆市".into(),
                phone: "023-00000000".into(),
                kind: InstitutionType::PrivateSchool,
                admin_name: "专员".into(),
                admin_id_number: id_number(9_000_000 + u64::from(i)),
                sites: vec![SiteSpec {
                    lat: site.0,
                    lon: site.1,
                    radius_m: None,
                }],
            },
        });
        institutions.push(Institution { code, site });
    }
    expect_all_ok(
        send_all(bureau, requests, &progress).await?,
        "register_institution",
    )?;
    let requests = (0..args.institutions)
        .map(|i| Request {
            id: format!("load-{run_tag}-op-{i}"),
            op: Op::AuthoriseOperator {
                institution: institutions[i as usize].code,
                admin_id_number: id_number(9_000_000 + u64::from(i)),
                operator: format!("op-{i}").parse().expect("operator"),
            },
        })
        .collect();
    expect_all_ok(
        send_all(&gateway, requests, &progress).await?,
        "authorise_operator",
    )?;
    // Each institution opens a class for each of the 4 kinds persons hold
    // (voucher k is of `Kind::ALL[k]`), for the whole campaign: redeems name them.
    let requests = (0..args.institutions)
        .flat_map(|i| {
            let code = institutions[i as usize].code.to_string();
            (0..SETUP_KINDS).map(move |k| (i, k, code.clone()))
        })
        .map(|(i, k, code)| Request {
            id: format!("load-{run_tag}-class-{i}-{k}"),
            op: open_class(
                &code,
                &format!("op-{i}"),
                Kind::ALL[k],
                campaign.year,
                ClassMode::Onsite,
            ),
        })
        .collect();
    expect_all_ok(send_all(&gateway, requests, &progress).await?, "open_class")?;
    let person_base = (SystemClock.now().0 as u64 % 1_000) * 10_000;
    let mut vouchers: Vec<[VoucherId; 4]> = Vec::with_capacity(args.persons as usize);
    for chunk_start in (0..args.persons).step_by(250) {
        let chunk_end = (chunk_start + 250).min(args.persons);
        let mut issue = Vec::new();
        for p in chunk_start..chunk_end {
            for k in 0..SETUP_KINDS {
                issue.push(Request {
                    id: format!("load-{run_tag}-issue-{p}-{k}"),
                    op: Op::Issue {
                        id_number: id_number(person_base + p),
                        category: Category::ALL[(p % 5) as usize],
                        kind: Kind::ALL[k],
                        face_value_fen: 50_000 + 10_000 * k as u64,
                        channel: Channel::ALL[(p % 3) as usize],
                        district: campaign.districts[(p as usize) % campaign.districts.len()].code,
                        year: None,
                    },
                });
            }
        }
        let answers = send_all(bureau, issue, &progress).await?;
        let mut ids = Vec::new();
        for answer in &answers {
            match &answer.outcome {
                Ok(Reply::Issued { voucher }) => ids.push(*voucher),
                other => anyhow::bail!("setup issue failed: {other:?}"),
            }
        }
        let mut claim = Vec::new();
        for (offset, p) in (chunk_start..chunk_end).enumerate() {
            let four: [VoucherId; 4] = ids[offset * 4..offset * 4 + 4].try_into().expect("4");
            for (k, voucher) in four.iter().enumerate() {
                claim.push(Request {
                    id: format!("load-{run_tag}-claim-{p}-{k}"),
                    op: Op::Claim {
                        voucher: *voucher,
                        id_number: id_number(person_base + p),
                    },
                });
            }
            vouchers.push(four);
        }
        expect_all_ok(send_all(&gateway, claim, &progress).await?, "claim")?;
    }
    progress.finish_and_clear();
    gateway.close().await;
    Ok((institutions, vouchers))
}

fn expect_all_ok(answers: Vec<Answer>, what: &str) -> anyhow::Result<()> {
    match answers.iter().find(|a| a.outcome.is_err()) {
        Some(answer) => anyhow::bail!("setup {what} refused: {}", answer.to_json()),
        None => Ok(()),
    }
}

/// City `used` and `used_with_checkin` for the current campaign.
async fn stats(bureau: &Connection) -> anyhow::Result<(u64, u64)> {
    let request = Request {
        id: format!("load-stats-{}", SystemClock.now().0),
        op: Op::Stats {
            district: None,
            year: None,
        },
    };
    match &bureau.execute(&[request]).await?[0].outcome {
        Ok(Reply::Stats(stats)) => Ok((stats.city.used, stats.coverage.used_with_checkin)),
        other => anyhow::bail!("stats: {other:?}"),
    }
}
