//! Criterion benchmarks of the pure rules (claim, redeem, check-in) and of
//! record encoding: the CPU cost of a decision, with no locks, disk or network.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use voucherd::codec;
use voucherd::domain::campaign::{Campaign, Campaigns};
use voucherd::domain::enums::{Category, Channel, ClassMode, InstitutionType, Kind, VoucherState};
use voucherd::domain::ids::{IdNumber, InstitutionCode, OperatorId, PersonSecret, VoucherId};
use voucherd::domain::records::{Class, Institution, PersonYear, Site, Voucher};
use voucherd::domain::rules::{self, Context};
use voucherd::domain::time::Timestamp;

fn fixtures() -> (Campaigns, Voucher, Institution, OperatorId) {
    let now = Timestamp(1_795_914_000);
    let campaigns = Campaigns::new(vec![Campaign::default_for(now)]).unwrap();
    let holder = IdNumber::parse("11010519491231002X")
        .unwrap()
        .key(&PersonSecret([1; 32]));
    let operator: OperatorId = "operator-0001".parse().unwrap();
    let institution = Institution {
        code: InstitutionCode(5_000_001),
        name: "重庆技工学校".into(),
        district: "500101".parse().unwrap(),
        address: "万州区".into(),
        phone: "023-1".into(),
        kind: InstitutionType::TechnicianCollege,
        admin_name: "刘路".into(),
        admin: holder,
        admin_changes: 0,
        sites: vec![Site {
            lat: 30.8,
            lon: 108.4,
            radius_m: 500,
        }],
        operators: (0..50)
            .map(|i| format!("operator-{i:04}").parse().unwrap())
            .collect(),
        registered_at: now,
    };
    let voucher = Voucher {
        id: VoucherId(42),
        holder,
        year: campaigns.current().year,
        kind: Kind::EmploymentSkills,
        category: Category::RuralMigrant,
        channel: Channel::Wechat,
        district: "500101".parse().unwrap(),
        face_value_fen: 80_000,
        state: VoucherState::Claimed,
        institution: None,
        claimed: true,
        checkins: 0,
        last_checkin_day: None,
        score: None,
        settled_fen: None,
    };
    (campaigns, voucher, institution, operator)
}

fn bench_rules(c: &mut Criterion) {
    let (campaigns, claimed, institution, operator) = fixtures();
    let context = Context {
        campaigns: &campaigns,
        now: Timestamp(1_795_914_000),
    };
    let mut issued = claimed.clone();
    issued.state = VoucherState::Issued;
    issued.claimed = false;
    c.bench_function("rules/claim", |b| {
        b.iter(|| {
            rules::claim(
                context,
                Some(black_box(&issued)),
                issued.id,
                issued.holder,
                PersonYear::default(),
            )
        })
    });
    // An onsite class of the voucher's kind at the institution's sites,
    // running the whole campaign.
    let now = context.now;
    let today = now.local_day(8 * 3600);
    let class = Class {
        institution: institution.code,
        code: "电工初级 2026 冬".parse().unwrap(),
        kind: claimed.kind,
        first_day: today - 300,
        last_day: today + 1,
        mode: ClassMode::Onsite,
        sites: institution.sites.clone(),
        opened_by: operator.clone(),
        opened_at: now,
    };
    let enrolling = || rules::Enrolling {
        institution: Some(&institution),
        code: institution.code,
        operator: &operator,
        class: rules::Naming::Class(Some(&class)),
    };
    c.bench_function("rules/redeem", |b| {
        b.iter(|| {
            rules::redeem(
                context,
                Some(black_box(&claimed)),
                claimed.id,
                PersonYear {
                    uses: 1,
                    kinds_claimed: 1,
                },
                enrolling(),
            )
        })
    });
    let (redeemed, _) = rules::redeem(
        context,
        Some(&claimed),
        claimed.id,
        PersonYear::default(),
        enrolling(),
    )
    .unwrap();
    c.bench_function("rules/checkin", |b| {
        b.iter(|| {
            rules::checkin(
                context,
                Some(black_box(&redeemed)),
                redeemed.id,
                Some(&institution),
                Some(&class),
                Some((30.8001, 108.4001)),
            )
        })
    });
    c.bench_function("codec/encode_voucher", |b| {
        b.iter(|| codec::encode(black_box(&redeemed)))
    });
    let bytes = codec::encode(&redeemed);
    c.bench_function("codec/decode_voucher", |b| {
        b.iter(|| codec::decode::<Voucher>(black_box(&bytes), "voucher").unwrap())
    });
    c.bench_function("id_number/parse_and_hash", |b| {
        let secret = PersonSecret([1; 32]);
        b.iter(|| {
            IdNumber::parse(black_box("11010519491231002X"))
                .unwrap()
                .key(&secret)
        })
    });
}

criterion_group!(benches, bench_rules);
criterion_main!(benches);
