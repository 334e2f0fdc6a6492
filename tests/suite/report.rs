//! The bureau's progress report: known operations on a ledger (memory
//! journal), then the text, CSV and HTML reports must show exactly their
//! figures; the HTML page is rendered by headless Chromium (its DOM and a
//! screenshot are checked). Chromium missing is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{id_number, redeem_for, register, Harness, SITE};
use voucherd::bureau::report::{self, Format};
use voucherd::domain::enums::{Category, Channel, Kind};
use voucherd::domain::ids::VoucherId;
use voucherd::domain::op::{Op, Reply, Request, Role, StatsView};

fn stats_as(harness: &Harness, role: Role, district: Option<&str>) -> StatsView {
    match harness.ok(
        role,
        Op::Stats {
            district: district.map(|d| d.parse().unwrap()),
            year: None,
        },
    ) {
        Reply::Stats(stats) => *stats,
        other => panic!("stats answered {other:?}"),
    }
}

fn issue_in(person: &str, kind: Kind, district: &str) -> Op {
    Op::Issue {
        id_number: person.into(),
        category: Category::Unemployed,
        kind,
        face_value_fen: 80_000,
        channel: Channel::CqHrssApp,
        district: district.parse().unwrap(),
        year: None,
    }
}

/// Issues in `district`, claims and redeems at `institution` (operator `op-<institution>`).
fn used(
    harness: &Harness,
    person: &str,
    kind: Kind,
    district: &str,
    institution: &str,
) -> VoucherId {
    let voucher = match harness.ok(Role::Bureau, issue_in(person, kind, district)) {
        Reply::Issued { voucher } => voucher,
        other => panic!("issue answered {other:?}"),
    };
    harness.ok(
        Role::Gateway,
        Op::Claim {
            voucher,
            id_number: person.into(),
        },
    );
    harness.ok(
        Role::Gateway,
        redeem_for(
            &harness.ledger,
            voucher,
            institution,
            &format!("op-{institution}"),
        ),
    );
    voucher
}

fn institution_in(harness: &Harness, code: &str, district: &str) {
    let admin = id_number(900);
    harness.ok(Role::Bureau, register(code, district, &admin));
    harness.ok(
        Role::Gateway,
        crate::common::authorise(code, &admin, &format!("op-{code}")),
    );
    for op in crate::common::kit_classes(code, &format!("op-{code}")) {
        harness.ok(Role::Gateway, op);
    }
}

fn complete_and_rate(
    harness: &Harness,
    voucher: VoucherId,
    institution: &str,
    person: &str,
    score: u8,
) {
    harness.ok(
        Role::Gateway,
        Op::Complete {
            voucher,
            institution: institution.parse().unwrap(),
            operator: format!("op-{institution}").parse().unwrap(),
        },
    );
    harness.ok(
        Role::Gateway,
        Op::Evaluate {
            voucher,
            id_number: person.into(),
            score,
            comment: None,
        },
    );
}

/// Three institutions (two in 万州 500101, one in 渝中 500103); four vouchers
/// issued, three claimed and used, one checked in, three evaluated, one
/// settled for 750.50 yuan.
fn known_operations() -> Harness {
    let harness = Harness::new();
    institution_in(&harness, "5000001", "500101");
    institution_in(&harness, "5000002", "500103");
    institution_in(&harness, "5000003", "500101");
    let (anna, bo) = (id_number(1), id_number(2));
    let first = used(&harness, &anna, Kind::EmploymentSkills, "500101", "5000001");
    let second = used(&harness, &anna, Kind::Entrepreneurship, "500101", "5000001");
    harness.ok(Role::Bureau, issue_in(&anna, Kind::HrServices, "500101"));
    let third = used(&harness, &bo, Kind::EmploymentSkills, "500103", "5000002");
    harness.ok(
        Role::Gateway,
        Op::Checkin {
            voucher: first,
            lat: SITE.0,
            lon: SITE.1,
        },
    );
    complete_and_rate(&harness, first, "5000001", &anna, 5);
    complete_and_rate(&harness, second, "5000001", &anna, 4);
    complete_and_rate(&harness, third, "5000002", &bo, 3);
    harness.ok(
        voucherd::domain::op::Role::District("500101".parse().unwrap()),
        Op::Settle {
            voucher: first,
            amount_fen: 75_050,
        },
    );
    harness
}

#[test]
fn the_stats_answer_carries_each_institutions_use_and_average_score() {
    let harness = known_operations();
    let stats = stats_as(&harness, Role::Bureau, None);
    let rows: Vec<(String, String, u64, u64, Option<f64>)> = stats
        .institutions
        .iter()
        .map(|i| {
            (
                i.code.to_string(),
                i.district.to_string(),
                i.used,
                i.evaluations,
                i.average_score,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("5000001".into(), "500101".into(), 2, 2, Some(4.5)),
            ("5000002".into(), "500103".into(), 1, 1, Some(3.0)),
            ("5000003".into(), "500101".into(), 0, 0, None),
        ]
    );
    assert_eq!(stats.institutions[0].name, "培训机构 5000001");
    // A district agency sees only its own district's institutions.
    let wanzhou = stats_as(&harness, crate::common::district("500101"), None);
    let codes: Vec<String> = wanzhou
        .institutions
        .iter()
        .map(|i| i.code.to_string())
        .collect();
    assert_eq!(codes, ["5000001", "5000003"]);
    assert!(wanzhou
        .institutions
        .iter()
        .all(|i| i.district.as_str() == "500101"));
    // So does the bureau asking for one district.
    let yuzhong = stats_as(&harness, Role::Bureau, Some("500103"));
    assert_eq!(yuzhong.institutions.len(), 1);
    assert_eq!(yuzhong.institutions[0].code.to_string(), "5000002");
    // The JSON answer names the fields of the README's addition.
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["institutions"][0]["average_score"], 4.5);
    assert_eq!(
        json["institutions"][2]["average_score"],
        serde_json::Value::Null
    );
    assert_eq!(json["institutions"][2]["evaluations"], 0);
}

#[test]
fn text_and_csv_reports_show_the_figures_of_known_operations() {
    let harness = known_operations();
    let stats = stats_as(&harness, Role::Bureau, None);
    let text = report::render(&stats, Format::Text);
    let line_of = |needle: &str| {
        text.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
    };
    let numbers = |line: &str| -> Vec<String> {
        line.split_whitespace()
            .filter(|w| {
                w.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
            })
            .map(str::to_owned)
            .collect()
    };
    // #, target, issued, claimed, used, % of target (1 of 7000 rounds to 0.01, 2 to 0.03).
    assert_eq!(
        numbers(line_of("万州区")),
        ["1", "500101", "7,000", "3", "2", "2", "0.03", "750.50"]
    );
    assert_eq!(
        numbers(line_of("渝中区")),
        ["4", "500103", "3,000", "1", "1", "1", "0.03", "0.00"]
    );
    assert_eq!(
        numbers(line_of("万盛经开区")),
        ["41", "500", "0", "0", "0", "0.00", "0.00"]
    );
    assert_eq!(
        numbers(line_of("合计")),
        ["120,000", "4", "3", "3", "0.00", "750.50"]
    );
    assert!(
        line_of("figures as of")
            .ends_with(&format!("as of {}, audit record {}", stats.at, stats.seq)),
        "{text}"
    );
    assert!(stats.at.ends_with("+08:00") && stats.seq > 0);
    assert!(text.contains("\nsettled ¥750.50 of subsidies"), "{text}");
    assert!(
        text.contains("\nissued  4 of the 300,000 goal (0.00%)\n"),
        "{text}"
    );
    assert!(
        text.contains("\nused    3 of the 120,000 goal (0.00%)\n"),
        "{text}"
    );
    assert!(line_of("districts using vouchers").ends_with("2/41 (4.88%)"));
    assert!(line_of("institutions using vouchers").ends_with("2/3 (66.67%)"));
    assert!(line_of("used vouchers with check-ins").ends_with("1/3 (33.33%)"));
    assert_eq!(
        numbers(line_of("5000001")),
        ["5000001", "500101", "5000001", "2", "2", "4.50", "750.50"]
    );
    assert!(
        line_of("5000001").contains("500101 万州区"),
        "district names beside codes"
    );
    assert_eq!(
        numbers(line_of("5000002")),
        ["5000002", "500103", "5000002", "1", "1", "3.00", "0.00"]
    );
    assert!(line_of("5000002").contains("500103 渝中区"));
    assert_eq!(
        numbers(line_of("5000003")),
        ["5000003", "500101", "5000003", "0", "0", "0.00"]
    );
    assert!(
        line_of("5000003").contains(" - "),
        "no evaluations: no average"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(" 500") || l.contains("LJXQ") || l.contains("GXQ"))
            .count(),
        41 + 3,
        "41 district lines and 3 institution lines"
    );

    let csv_text = report::render(&stats, Format::Csv);
    assert!(csv_text.starts_with('\u{feff}'), "Excel needs the BOM");
    let mut reader = csv::Reader::from_reader(csv_text.trim_start_matches('\u{feff}').as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        report::CSV_HEADER
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let of = |section: &str, code: &str| -> Vec<String> {
        records
            .iter()
            .find(|r| &r[0] == section && &r[1] == code)
            .unwrap_or_else(|| panic!("no {section} {code} row"))
            .iter()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(records.iter().filter(|r| &r[0] == "district").count(), 41);
    assert_eq!(
        of("district", "500101"),
        [
            "district",
            "500101",
            "万州区",
            "",
            "7000",
            "3",
            "2",
            "2",
            "0.03",
            "",
            "",
            "75050",
            ""
        ]
    );
    assert_eq!(
        of("city", ""),
        ["city", "", "合计", "", "120000", "4", "3", "3", "0.00", "", "", "75050", ""]
    );
    let as_of = of("as_of", &stats.seq.to_string());
    assert_eq!(
        as_of[2], stats.at,
        "the time and audit sequence of the figures"
    );
    assert_eq!(
        of("goal_issued", ""),
        [
            "goal_issued",
            "",
            "发券目标",
            "",
            "300000",
            "4",
            "",
            "",
            "0.00",
            "",
            "",
            "",
            ""
        ]
    );
    assert_eq!(of("goal_used", "")[7], "3");
    assert_eq!(
        of("districts_using_vouchers", "")[4..9],
        ["41", "", "", "2", "4.88"]
    );
    assert_eq!(
        of("institutions_using_vouchers", "")[4..9],
        ["3", "", "", "2", "66.67"]
    );
    assert_eq!(
        of("used_with_checkin", "")[4..9],
        ["3", "", "", "1", "33.33"]
    );
    assert_eq!(
        of("institution", "5000001"),
        [
            "institution",
            "5000001",
            "培训机构 5000001",
            "500101",
            "",
            "",
            "",
            "2",
            "",
            "2",
            "4.50",
            "75050",
            "万州区"
        ]
    );
    assert_eq!(of("institution", "5000003")[9..], ["0", "", "0", "万州区"]);
}

/// The figures of a district row in the HTML: target, issued, claimed, used, percent.
fn html_row(html: &str, code: &str) -> Vec<String> {
    let start = html
        .find(&format!("<tr class=\"district\" data-code=\"{code}\">"))
        .unwrap_or_else(|| panic!("no row for {code}"));
    let row = &html[start..start + html[start..].find("</tr>").unwrap()];
    ["target", "issued", "claimed", "used", "percent"]
        .iter()
        .map(|class| {
            let open = format!("<td class=\"{class}\">");
            let at = row.find(&open).unwrap() + open.len();
            row[at..at + row[at..].find('<').unwrap()].to_owned()
        })
        .collect()
}

fn element_text(html: &str, id: &str) -> String {
    let open = format!("id=\"{id}\">");
    let at = html.find(&open).unwrap_or_else(|| panic!("no #{id}")) + open.len();
    html[at..at + html[at..].find('<').unwrap()].to_owned()
}

#[test]
fn the_html_report_shows_the_figures_of_known_operations() {
    let harness = known_operations();
    let html = report::render(&stats_as(&harness, Role::Bureau, None), Format::Html);
    assert!(html.contains("<meta charset=\"utf-8\">"));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains(" src="),
        "the page loads nothing from elsewhere"
    );
    assert_eq!(html.matches("<tr class=\"district\"").count(), 41);
    assert_eq!(html_row(&html, "500101"), ["7,000", "3", "2", "2", "0.03"]);
    assert_eq!(html_row(&html, "500103"), ["3,000", "1", "1", "1", "0.03"]);
    assert_eq!(html_row(&html, "WSJK"), ["500", "0", "0", "0", "0.00"]);
    assert_eq!(element_text(&html, "city-issued"), "4");
    assert_eq!(element_text(&html, "city-used"), "3");
    assert_eq!(element_text(&html, "city-target"), "120,000");
    assert_eq!(element_text(&html, "city-settled"), "750.50");
    assert_eq!(element_text(&html, "city-settled-total"), "750.50");
    assert!(html.contains("<td class=\"settled\">750.50</td>"));
    assert!(
        html.contains("<td class=\"name\">500101 万州区</td>"),
        "district names beside codes"
    );
    let stats = stats_as(&harness, Role::Bureau, None);
    assert_eq!(element_text(&html, "at"), stats.at);
    assert_eq!(element_text(&html, "seq"), stats.seq.to_string());
    assert!(html.contains("<span class=\"part\">4</span> / <span class=\"whole\">300,000</span>"));
    assert!(html.contains("<span class=\"part\">3</span> / <span class=\"whole\">120,000</span>"));
    assert!(html.contains("id=\"coverage-institutions-using-vouchers\""));
    assert!(html.contains("<span class=\"part\">2</span> / <span class=\"whole\">3</span><")); // institutions
    assert!(html.contains("<td class=\"average\">4.50</td>"));
    assert!(html.contains("<td class=\"average\">3.00</td>"));
    assert!(html.contains("<td class=\"average\">-</td>"));
}

#[test]
fn institution_names_are_escaped_in_html() {
    let harness = Harness::new();
    let mut op = register("5000009", "500101", &id_number(5));
    if let Op::RegisterInstitution { name, .. } = &mut op {
        *name = "<script>alert(1)</script> & 学校".into();
    }
    harness.ok(Role::Bureau, op);
    let html = report::render(&stats_as(&harness, Role::Bureau, None), Format::Html);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; 学校"));
}

// ---------------------------------------------------------------------------
// Headless Chromium.

/// Chromium from `CHROMIUM` or the PATH (`chromium`, as Debian names it).
/// Missing is a test failure: CI installs it with ops/install-deps.sh.
fn chromium() -> PathBuf {
    let name = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(&name))
            .find(|path| path.is_file())
    });
    let path = found.or_else(|| Some(PathBuf::from(&name)).filter(|p| p.is_file()));
    path.unwrap_or_else(|| {
        panic!("chromium is missing: install it with ops/install-deps.sh (Debian package chromium) or set CHROMIUM")
    })
}

/// How long one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs headless Chromium on `page` with `extra` arguments; returns stdout.
fn run_chromium(page: &Path, extra: &[String]) -> String {
    run_chromium_on(&format!("file://{}", page.display()), extra)
}

/// Runs headless Chromium on `url` with `extra` arguments; returns stdout.
fn run_chromium_on(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            panic!("chromium did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

/// A campaign-sized picture: four small districts at 20 %, 50 %, 90 % and
/// 120 % of their 500-voucher targets (three uses per person), so the bars
/// show, plus evaluations at one institution.
fn busy_ledger() -> Harness {
    let harness = Harness::new();
    let plan = [
        ("500119", 450),
        ("500110", 250),
        ("500230", 600),
        ("WSJK", 100),
    ];
    let kinds = [
        Kind::EmploymentSkills,
        Kind::Entrepreneurship,
        Kind::HrServices,
    ];
    let mut person = 1_000;
    for (index, (district, uses)) in plan.iter().enumerate() {
        let code = format!("500{:04}", 100 + index);
        institution_in(&harness, &code, district);
        let mut issues = Vec::new();
        for n in 0..*uses {
            if n % 3 == 0 {
                person += 1;
            }
            issues.push((id_number(person), kinds[n % 3]));
        }
        let batch = |role: Role, ops: Vec<Op>| -> Vec<Reply> {
            let requests: Vec<Request> = ops
                .into_iter()
                .map(|op| Request {
                    id: harness.request_id(),
                    op,
                })
                .collect();
            harness
                .ledger
                .execute(role, &requests)
                .into_iter()
                .map(|a| {
                    a.outcome
                        .unwrap_or_else(|r| panic!("{} ({})", r.reason, r.message))
                })
                .collect()
        };
        let vouchers: Vec<VoucherId> = batch(
            Role::Bureau,
            issues
                .iter()
                .map(|(p, k)| issue_in(p, *k, district))
                .collect(),
        )
        .into_iter()
        .map(|reply| match reply {
            Reply::Issued { voucher } => voucher,
            other => panic!("{other:?}"),
        })
        .collect();
        batch(
            Role::Gateway,
            vouchers
                .iter()
                .zip(&issues)
                .map(|(&voucher, (p, _))| Op::Claim {
                    voucher,
                    id_number: p.clone(),
                })
                .collect(),
        );
        batch(
            Role::Gateway,
            vouchers
                .iter()
                .map(|&v| redeem_for(&harness.ledger, v, &code, &format!("op-{code}")))
                .collect(),
        );
        if index == 0 {
            complete_and_rate(&harness, vouchers[0], &code, &issues[0].0, 5);
            complete_and_rate(&harness, vouchers[1], &code, &issues[1].0, 4);
        }
    }
    harness
}

#[test]
#[ignore = "soak: headless Chromium (ops/install-deps.sh --soak installs it)"]
fn the_html_report_renders_in_headless_chromium() {
    let harness = busy_ledger();
    let stats = stats_as(&harness, Role::Bureau, None);
    assert_eq!(stats.city.used, 1_400);
    let folder = tempfile::tempdir().unwrap();
    let page = folder.path().join("report.html");
    std::fs::write(&page, report::render(&stats, Format::Html)).unwrap();

    // The DOM as Chromium parsed it: 41 district rows with a bar each, the totals.
    let dom = run_chromium(&page, &["--dump-dom".into()]);
    assert_eq!(dom.matches("<tr class=\"district\"").count(), 41, "{dom}");
    assert_eq!(
        dom.matches("<div class=\"track\"><div class=\"bar").count(),
        41 + 1 + 2 + 3
    );
    assert!(
        dom.contains("<title>职业培训券推广使用进度"),
        "UTF-8 survives"
    );
    assert!(dom.contains("<td class=\"name\">南川区</td>"));
    assert_eq!(
        html_row(&dom, "500119"),
        ["500", "450", "450", "450", "90.00"]
    );
    assert_eq!(
        html_row(&dom, "500230"),
        ["500", "600", "600", "600", "120.00"]
    );
    assert!(dom.contains("class=\"bar done\" style=\"width:100.00%\" data-percent=\"120.00\""));
    assert!(dom.contains("class=\"bar\" style=\"width:50.00%\" data-percent=\"50.00\""));
    assert_eq!(element_text(&dom, "city-issued"), "1,400");
    assert_eq!(element_text(&dom, "city-used"), "1,400");
    assert_eq!(element_text(&dom, "city-percent"), "1.17");
    assert!(dom.contains("<td class=\"average\">4.50</td>"));

    // The screenshot: the PNG exists, has the window's size, and shows the bars.
    let shot = std::env::var_os("VOUCHERD_REPORT_PNG")
        .map(PathBuf::from)
        .unwrap_or_else(|| folder.path().join("report.png"));
    run_chromium(
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".into(),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1280, 2400));
    let channels = frame.line_size / frame.width as usize;
    let count = |rgb: [u8; 3]| {
        pixels[..frame.buffer_size()]
            .chunks(channels)
            .filter(|p| p[..3].iter().zip(rgb).all(|(&a, b)| a.abs_diff(b) <= 8))
            .count()
    };
    // Bars are 14 px high: 20 % + 50 % + 90 % of 320 px, plus the city and card bars.
    let blue = count([0x2f, 0x80, 0xed]);
    let green = count([0x27, 0xae, 0x60]);
    assert!(blue > 14 * 400, "blue bar pixels: {blue}");
    assert!(green > 14 * 300, "green (done) bar pixels: {green}");
    let dark_text = count([0x1f, 0x29, 0x33]);
    assert!(dark_text > 2_000, "text pixels: {dark_text}");
}

/// A daemon serving the live report on its metrics port, with one voucher
/// issued; the page's address, the audit sequence the page must show, and
/// the ID number that must not appear on it.
struct LivePage {
    _daemon: crate::common::daemon::Daemon,
    _dir: tempfile::TempDir,
    port: u16,
    seq: u64,
    person: &'static str,
}

fn live_page() -> LivePage {
    use crate::common::daemon::{free_port, scrape, serve, Voucherctl};
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = serve(
        &data,
        &certs,
        &dir.path().join("log"),
        &["--metrics", &listen],
        &[],
    );
    let person = "50010219920229456X";
    let issued = daemon.batch(
        &certs,
        "bureau",
        &[
            serde_json::json!({"id": "live-1", "op": "issue", "id_number": person,
            "category": "rural_migrant", "kind": "hr_services", "face_value_fen": 80000,
            "channel": "wechat", "district": "500101"}),
        ],
    );
    assert_eq!(issued[0]["ok"], true, "{issued:?}");
    assert!(scrape(port).contains("voucherd_operations_total"));
    let head = daemon.batch(
        &certs,
        "auditor",
        &[serde_json::json!({"id": "live-2", "op": "audit_head"})],
    );
    let seq = head[0]["seq"].as_u64().expect("audit head");
    LivePage {
        _daemon: daemon,
        _dir: dir,
        port,
        seq,
        person,
    }
}

/// What the live page must show, as served or as a browser parsed it.
fn check_live_page(page: &LivePage, dom: &str) {
    assert!(
        dom.contains("http-equiv=\"refresh\""),
        "the page refreshes itself"
    );
    assert!(
        dom.contains("id=\"as-of-time\""),
        "the time of the figures is shown"
    );
    assert!(
        dom.contains(&format!("id=\"as-of-seq\">{}<", page.seq)),
        "read at audit record {}: {dom}",
        page.seq
    );
    let districts = dom.matches("class=\"district\"").count();
    assert_eq!(districts, 41, "the 41 districts of attachment 1");
    assert!(dom.contains("万州区"));
    assert!(!dom.contains(page.person), "no ID number on the page");
}

/// Checks: the metrics port serves the progress report as a live page (it
/// refreshes itself, says the time and audit sequence of its figures, shows
/// the 41 districts) and serves no personal data; `/metrics` is still there.
/// How: the real daemon with `--metrics`, one voucher issued, `GET /report`.
#[test]
fn the_live_report_page_shows_its_figures_and_no_person() {
    let page = live_page();
    let served = crate::common::daemon::http_get(page.port, "/report");
    check_live_page(&page, &served);
}

/// Checks: headless Chromium renders the live page with the same content.
/// How: as above, then Chromium's DOM dump of `http://127.0.0.1:PORT/report`.
#[test]
#[ignore = "soak: headless Chromium (ops/install-deps.sh --soak installs it)"]
fn the_live_report_page_renders_in_headless_chromium() {
    let page = live_page();
    let dom = run_chromium_on(
        &format!("http://127.0.0.1:{}/report", page.port),
        &[
            "--dump-dom".to_string(),
            "--virtual-time-budget=2000".to_string(),
        ],
    );
    check_live_page(&page, &dom);
}
