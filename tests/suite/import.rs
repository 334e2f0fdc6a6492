//! The attachment 2 form import on a ledger (memory journal), the same steps
//! `voucherctl institution import` takes over QUIC: `stats` for the districts
//! and the institutions already there, the form's rows as requests, answers
//! as per-line outcomes. The shipped sample registers whole; re-running a
//! form changes nothing; each kind of bad row is reported on its line.

use crate::common::{id_number, Harness};
use voucherd::bureau::import::{self, RowOutcome, Status};
use voucherd::domain::op::{Op, Reply, Role, StatsView};

const SAMPLE: &str = include_str!("../../ops/institutions-sample.csv");
const HEADER: &str = "机构名称,行政区划编码,机构地址,机构电话,机构编码,机构类型,机构专员姓名,机构专员身份证号码,培训机构经纬度\n";

fn stats(harness: &Harness) -> StatsView {
    match harness.ok(
        Role::Bureau,
        Op::Stats {
            district: None,
            year: None,
        },
    ) {
        Reply::Stats(stats) => *stats,
        other => panic!("stats answered {other:?}"),
    }
}

/// Imports `form` as the bureau; returns each row's outcome.
fn import(harness: &Harness, form: &str) -> Vec<RowOutcome> {
    let (districts, existing) = import::known(&stats(harness));
    let rows = import::read_form(form.as_bytes(), &districts).expect("the form reads");
    let answers = harness
        .ledger
        .execute(Role::Bureau, &import::requests(&rows));
    import::outcomes(&rows, answers, &existing)
}

fn statuses(outcomes: &[RowOutcome]) -> Vec<(u64, String)> {
    outcomes
        .iter()
        .map(|o| {
            let status = match &o.status {
                Status::Registered => "registered".to_owned(),
                Status::AlreadyPresent => "already_present".to_owned(),
                Status::Refused(refusal) => refusal.reason.as_str().to_owned(),
            };
            (o.line, status)
        })
        .collect()
}

#[test]
fn the_sample_form_registers_whole_and_a_second_run_changes_nothing() {
    let harness = Harness::new();
    let first = import(&harness, SAMPLE);
    assert_eq!(
        statuses(&first),
        (3..=9)
            .map(|line| (line, "registered".to_owned()))
            .collect::<Vec<_>>(),
        "line 1 is the header, line 2 the form's 【必填】 notes"
    );
    let registered = stats(&harness);
    assert_eq!(registered.coverage.institutions_registered, 7);
    let listed: Vec<(String, String, String)> = registered
        .institutions
        .iter()
        .map(|i| (i.code.to_string(), i.district.to_string(), i.name.clone()))
        .collect();
    assert!(listed.contains(&("5001031".into(), "500103".into(), "重庆渝中技工学校".into())));
    assert!(listed.contains(&(
        "5009011".into(),
        "LJXQ".into(),
        "两江新区创业孵化培训中心".into()
    )));
    let head = harness.head();

    let second = import(&harness, SAMPLE);
    assert_eq!(
        statuses(&second),
        (3..=9)
            .map(|line| (line, "already_present".to_owned()))
            .collect::<Vec<_>>()
    );
    assert_eq!(harness.head(), head, "audit seq and state digest unchanged");
    assert_eq!(
        import::summary(&second),
        "7 rows: 0 registered, 7 already present, 0 refused"
    );
}

#[test]
fn each_kind_of_bad_row_is_reported_on_its_line_and_good_rows_register() {
    let harness = Harness::new();
    let good = id_number(11);
    let bad = crate::common::bad_id_number();
    let site = "\"29.5576,106.5775\"";
    let rows = [
        // line 2: good
        format!("重庆甲培训学校,500101,重庆市万州区一路1号,023-1,5100001,技工院校,刘路,{good},{site}"),
        // line 3: a 【必填】 field (the phone) left empty
        format!("重庆乙培训学校,500101,重庆市万州区一路2号,,5100002,技工院校,刘路,{good},{site}"),
        // line 4: a code that is not 7 digits
        format!("重庆丙培训学校,500101,重庆市万州区一路3号,023-1,510003,技工院校,刘路,{good},{site}"),
        // line 5: an unknown district
        format!("重庆丁培训学校,500199,重庆市某区一路4号,023-1,5100004,技工院校,刘路,{good},{site}"),
        // line 6: a site outside Chongqing (Beijing)
        format!("重庆戊培训学校,500101,重庆市万州区一路5号,023-1,5100005,技工院校,刘路,{good},\"29.56,106.55;39.90,116.40\""),
        // line 7: a bad ID number (check digit)
        format!("重庆己培训学校,500101,重庆市万州区一路6号,023-1,5100006,技工院校,刘路,{bad},{site}"),
        // line 8: good, type left empty (【选填】)
        format!("重庆庚培训学校,500103,重庆市渝中区一路7号,023-1,5100007,,王芳,{good},{site}"),
    ];
    let form = format!("{HEADER}{}\n", rows.join("\n"));
    let outcomes = import(&harness, &form);
    assert_eq!(
        statuses(&outcomes),
        [
            (2, "registered"),
            (3, "invalid_request"),
            (4, "invalid_request"),
            (5, "unknown_district"),
            (6, "invalid_request"),
            (7, "invalid_id_number"),
            (8, "registered"),
        ]
        .map(|(line, status)| (line, status.to_owned()))
    );
    let message = |index: usize| match &outcomes[index].status {
        Status::Refused(refusal) => refusal.message.clone(),
        other => panic!("{other:?}"),
    };
    assert!(message(1).contains("【必填】") && message(1).contains("机构电话"));
    assert!(message(2).contains("510003") && message(2).contains("7-digit"));
    assert!(message(3).contains("500199"));
    assert!(message(4).contains("(39.9, 116.4) is not inside Chongqing"));
    assert!(message(5).contains("机构专员身份证号码") && message(5).contains("check digit"));
    assert_eq!(
        outcomes[3].text(),
        format!("line 5: refused unknown_district ({})", message(3))
    );
    assert_eq!(outcomes[1].to_json()["line"], 3);
    assert_eq!(outcomes[1].to_json()["reason"], "invalid_request");
    assert_eq!(stats(&harness).coverage.institutions_registered, 2);

    // The same form again: the good rows are already present, the bad ones
    // refused the same way, and nothing changes.
    let head = harness.head();
    let again = import(&harness, &form);
    assert_eq!(again[0].status, Status::AlreadyPresent);
    assert_eq!(again[6].status, Status::AlreadyPresent);
    assert_eq!(again[1..6], outcomes[1..6]);
    assert_eq!(harness.head(), head);
}

#[test]
fn a_row_that_differs_from_what_is_registered_is_refused() {
    let harness = Harness::new();
    import(&harness, SAMPLE);
    let head = harness.head();
    // Another phone for 5001031: another request, the code is taken.
    let changed = SAMPLE.replace("023-63850021", "023-63850099");
    let outcomes = import(&harness, &changed);
    let refused: Vec<(u64, String)> = statuses(&outcomes)
        .into_iter()
        .filter(|(_, status)| status != "already_present")
        .collect();
    assert_eq!(refused, [(4, "institution_exists".to_owned())]);
    // Another admin only: the same request id with other content.
    let other_admin = SAMPLE.replace("500103197908212033", &id_number(77));
    let outcomes = import(&harness, &other_admin);
    let refused: Vec<(u64, String)> = statuses(&outcomes)
        .into_iter()
        .filter(|(_, status)| status != "already_present")
        .collect();
    assert_eq!(
        refused,
        [
            (4, "request_id_reused".to_owned()),
            (9, "request_id_reused".to_owned())
        ],
        "the sample's 刘路 administers two institutions"
    );
    assert!(outcomes[1].text().contains("voucherctl institution admin"));
    assert_eq!(harness.head(), head);
}
