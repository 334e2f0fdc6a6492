//! `voucher-load`: the enrollment-peak load generator. Drives a running
//! voucherd over QUIC as `bureau` (setup) and `gateway` (peak), checks every
//! answer against what it must be, and reports throughput, latency
//! percentiles, refusals by reason and a consistency check against `stats`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use voucherd::client::Client;
use voucherd::domain::campaign::Campaign;
use voucherd::domain::enums::{Category, Channel, InstitutionType, Kind};
use voucherd::domain::ids::{InstitutionCode, VoucherId};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role, SiteSpec};
use voucherd::domain::time::{Clock, SystemClock};
use voucherd::error::Reason;

#[derive(Parser, Clone)]
#[command(
    name = "voucher-load",
    about = "Enrollment-peak load test for voucherd"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7443")]
    server: SocketAddr,
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
    /// Peak phase length, seconds (it also ends when every person is served).
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Open loop at this many operations per second (0: closed loop, as fast as answers come).
    #[arg(long, default_value_t = 0)]
    rate: u64,
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
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// The n-th synthetic resident ID number, with a valid GB 11643 check digit.
fn id_number(n: u64) -> String {
    let body = format!("5001011980{:07}", n % 10_000_000);
    let sum: u32 = body
        .bytes()
        .zip(ID_WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{body}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

struct Institution {
    code: InstitutionCode,
    site: (f64, f64),
}

/// What the generator expects an operation to answer.
#[derive(Clone, Copy)]
enum Expect {
    Ok,
    Refused(Reason),
}

struct Tally {
    latency_us: Histogram<u64>,
    accepted: BTreeMap<&'static str, u64>,
    refused: BTreeMap<&'static str, u64>,
    unexpected: u64,
    connection_errors: u64,
    per_second: BTreeMap<u64, u64>,
}

fn check(answer: &Answer, expect: Expect, op: &'static str, tally: &mut Tally) {
    match (&answer.outcome, expect) {
        (Ok(_), Expect::Ok) => *tally.accepted.entry(op).or_default() += 1,
        (Err(refusal), Expect::Refused(reason)) if refusal.reason == reason => {
            *tally.refused.entry(refusal.reason.as_str()).or_default() += 1
        }
        (outcome, _) => {
            if let Err(refusal) = outcome {
                *tally.refused.entry(refusal.reason.as_str()).or_default() += 1;
            }
            tally.unexpected += 1;
            if tally.unexpected <= 5 {
                eprintln!("unexpected answer to {op}: {:?}", answer.to_json());
            }
        }
    }
}

async fn send_all(client: &Client, requests: Vec<Request>) -> anyhow::Result<Vec<Answer>> {
    let mut answers = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(1_000) {
        answers.extend(client.execute(chunk).await?);
    }
    Ok(answers)
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
    let run_tag = format!("{}-{}", args.seed, SystemClock.now().0);
    let campaign = Campaign::default_for(SystemClock.now());
    let bureau = Client::connect(args.server, &args.certs, Role::Bureau).await?;
    let gateway = Client::connect(args.server, &args.certs, Role::Gateway).await?;
    let stats_before = stats(&bureau).await?;

    // Setup: institutions weighted by district targets, one operator each.
    eprintln!(
        "setup: {} institutions, {} persons × 4 vouchers",
        args.institutions, args.persons
    );
    let started = Instant::now();
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
    expect_all_ok(send_all(&bureau, requests).await?, "register_institution")?;
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
    expect_all_ok(send_all(&gateway, requests).await?, "authorise_operator")?;
    let person_base = (SystemClock.now().0 as u64 % 1_000) * 10_000;
    let mut vouchers: Vec<[VoucherId; 4]> = Vec::with_capacity(args.persons as usize);
    for chunk_start in (0..args.persons).step_by(250) {
        let chunk_end = (chunk_start + 250).min(args.persons);
        let mut issue = Vec::new();
        for p in chunk_start..chunk_end {
            for k in 0..4 {
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
        let answers = send_all(&bureau, issue).await?;
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
        expect_all_ok(send_all(&gateway, claim).await?, "claim")?;
    }
    drop(gateway);
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!("setup done in {setup_s:.1} s");

    // Peak: each person redeems 3 vouchers at one institution and checks in once;
    // a share also tries a 4th use, a double redemption and a check-in far away.
    let vouchers = Arc::new(vouchers);
    let institutions = Arc::new(institutions);
    let next_person = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally {
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
        accepted: BTreeMap::new(),
        refused: BTreeMap::new(),
        unexpected: 0,
        connection_errors: 0,
        per_second: BTreeMap::new(),
    }));
    let peak_started = Instant::now();
    let deadline = peak_started + Duration::from_secs(args.duration_s);
    let mut workers = Vec::new();
    for worker in 0..args.connections {
        let client = Client::connect(args.server, &args.certs, Role::Gateway).await?;
        let (vouchers, institutions, next_person, tally, args, run_tag) = (
            Arc::clone(&vouchers),
            Arc::clone(&institutions),
            Arc::clone(&next_person),
            Arc::clone(&tally),
            args.clone(),
            run_tag.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed ^ (worker as u64 + 1));
            let interval = (args.rate > 0).then(|| {
                Duration::from_secs_f64(
                    args.connections as f64 * args.batch as f64 / args.rate as f64,
                )
            });
            let mut intended = Instant::now();
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                let mut batch: Vec<(Request, Expect, &'static str)> = Vec::new();
                while batch.len() + 7 <= args.batch.max(7) {
                    let p = next_person.fetch_add(1, Ordering::Relaxed);
                    if p >= vouchers.len() as u64 {
                        break;
                    }
                    let four = vouchers[p as usize];
                    let hot = rng.gen_range(0..100) < args.hot_percent;
                    let at = if hot {
                        rng.gen_range(0..5.min(institutions.len()))
                    } else {
                        rng.gen_range(0..institutions.len())
                    };
                    let institution = &institutions[at];
                    let mut push = |op: Op, expect: Expect, name: &'static str| {
                        sequence += 1;
                        batch.push((
                            Request {
                                id: format!("load-{run_tag}-{worker}-{sequence}"),
                                op,
                            },
                            expect,
                            name,
                        ));
                    };
                    let redeem = |voucher: VoucherId| Op::Redeem {
                        voucher,
                        institution: institution.code,
                        operator: format!("op-{at}").parse().expect("operator"),
                        class: "高峰报名班".into(),
                    };
                    for voucher in &four[..3] {
                        push(redeem(*voucher), Expect::Ok, "redeem");
                    }
                    push(
                        Op::Checkin {
                            voucher: four[0],
                            lat: institution.site.0,
                            lon: institution.site.1,
                        },
                        Expect::Ok,
                        "checkin",
                    );
                    if rng.gen_range(0..100) < args.invalid_percent {
                        push(
                            redeem(four[3]),
                            Expect::Refused(Reason::UseLimitReached),
                            "redeem",
                        );
                        push(
                            redeem(four[0]),
                            Expect::Refused(Reason::AlreadyRedeemed),
                            "redeem",
                        );
                        push(
                            Op::Checkin {
                                voucher: four[1],
                                lat: institution.site.0 + 0.05,
                                lon: institution.site.1,
                            },
                            Expect::Refused(Reason::OutsideSite),
                            "checkin",
                        );
                    }
                }
                if batch.is_empty() {
                    break;
                }
                if let Some(interval) = interval {
                    intended += interval;
                    tokio::time::sleep_until(intended.into()).await;
                } else {
                    intended = Instant::now();
                }
                let requests: Vec<Request> = batch.iter().map(|(r, _, _)| r.clone()).collect();
                let result = client.execute(&requests).await;
                let latency_us = intended.elapsed().as_micros() as u64;
                let second = peak_started.elapsed().as_secs();
                let mut tally = tally.lock();
                match result {
                    Ok(answers) => {
                        for (answer, (_, expect, name)) in answers.iter().zip(&batch) {
                            check(answer, *expect, name, &mut tally);
                            tally
                                .latency_us
                                .record(latency_us.max(1))
                                .expect("in bounds");
                        }
                        *tally.per_second.entry(second).or_default() += answers.len() as u64;
                    }
                    Err(error) => {
                        tally.connection_errors += 1;
                        eprintln!("batch failed: {error}");
                    }
                }
            }
            client.close().await;
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let peak_s = peak_started.elapsed().as_secs_f64();
    let stats_after = stats(&bureau).await?;
    bureau.close().await;

    let tally = tally.lock();
    let operations: u64 =
        tally.accepted.values().sum::<u64>() + tally.refused.values().sum::<u64>();
    let redeems = tally.accepted.get("redeem").copied().unwrap_or(0);
    let checkins = tally.accepted.get("checkin").copied().unwrap_or(0);
    let used_delta = stats_after.0 - stats_before.0;
    let checkin_delta = stats_after.1 - stats_before.1;
    let consistent = used_delta == redeems && checkin_delta == checkins && tally.unexpected == 0;
    let h = &tally.latency_us;
    let percentile = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut report = serde_json::json!({
        "persons": args.persons,
        "institutions": args.institutions,
        "connections": args.connections,
        "batch": args.batch,
        "mode": if args.rate > 0 { format!("open loop at {} ops/s", args.rate) } else { "closed loop".into() },
        "setup_s": setup_s,
        "peak_s": peak_s,
        "operations": operations,
        "operations_per_s": operations as f64 / peak_s,
        "redeems_accepted": redeems,
        "redeems_per_s": redeems as f64 / peak_s,
        "checkins_accepted": checkins,
        "latency_ms": {"p50": percentile(0.5), "p90": percentile(0.9), "p99": percentile(0.99), "p99.9": percentile(0.999), "max": h.max() as f64 / 1000.0},
        "refused": tally.refused,
        "unexpected_answers": tally.unexpected,
        "connection_errors": tally.connection_errors,
        "per_second": tally.per_second,
        "consistency": {"stats_used_delta": used_delta, "stats_used_with_checkin_delta": checkin_delta, "ok": consistent},
    });
    println!(
        "peak: {operations} operations in {peak_s:.1} s = {:.0} ops/s; {redeems} redeems = {:.0} redeems/s",
        operations as f64 / peak_s,
        redeems as f64 / peak_s
    );
    println!(
        "latency per operation (batch round trip): p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        percentile(0.5), percentile(0.9), percentile(0.99), percentile(0.999), h.max() as f64 / 1000.0
    );
    println!(
        "refused by reason: {:?}; unexpected answers: {}; connection errors: {}",
        tally.refused, tally.unexpected, tally.connection_errors
    );
    println!(
        "consistency: stats used +{used_delta} vs {redeems} redeems accepted, with check-in +{checkin_delta} vs {checkins}: {}",
        if consistent { "OK" } else { "MISMATCH" }
    );
    if let Some(dir) = &args.engine_limit_dir {
        let mut best = None::<voucherd::engine_limit::LimitRun>;
        for group in [1, 16, 128, 1024] {
            let folder = dir.join(format!("group-{group}"));
            let _ = std::fs::remove_dir_all(&folder);
            let run = voucherd::engine_limit::measure(&folder, group, Duration::from_secs(3))?;
            println!(
                "engine limit, group {group}: {:.0} redeems/s",
                run.redeems_per_s()
            );
            report["engine_limit"][group.to_string()] = run.redeems_per_s().into();
            if best.is_none_or(|b| run.redeems_per_s() > b.redeems_per_s()) {
                best = Some(run);
            }
        }
        let best = best.expect("four runs");
        let ratio = redeems as f64 / peak_s / best.redeems_per_s();
        println!(
            "end-to-end redeems/s are {:.1}% of the engine limit ({:.0}/s at group {})",
            ratio * 100.0,
            best.redeems_per_s(),
            best.group
        );
        report["engine_limit_best"] = best.redeems_per_s().into();
        report["ratio_to_engine_limit"] = ratio.into();
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(consistent && tally.connection_errors == 0)
}

fn expect_all_ok(answers: Vec<Answer>, what: &str) -> anyhow::Result<()> {
    match answers.iter().find(|a| a.outcome.is_err()) {
        Some(answer) => anyhow::bail!("setup {what} refused: {}", answer.to_json()),
        None => Ok(()),
    }
}

/// City `used` and `used_with_checkin` for the current campaign.
async fn stats(bureau: &Client) -> anyhow::Result<(u64, u64)> {
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
