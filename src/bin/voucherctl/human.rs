//! Replies as a person reads them (`voucherctl` without `--json`). Depends on
//! the library only, so the fuzz properties (`load-test/properties.rs`)
//! include this very file and check it on arbitrary replies.

use voucherd::domain::enums::wire_name;
use voucherd::domain::op::Reply;

/// A reply as a person reads it.
pub fn human(reply: &Reply) -> String {
    match reply {
        Reply::Done {} => "ok".into(),
        Reply::Vouchers { vouchers } if vouchers.is_empty() => "no vouchers".into(),
        Reply::Vouchers { vouchers } => vouchers
            .iter()
            .map(|v| {
                format!(
                    "{}  {:<18} {:<10} {:>10} fen  {}",
                    v.voucher,
                    wire_name(v.kind),
                    wire_name(v.state),
                    v.face_value_fen,
                    v.year
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Reply::Events { events, next } => {
            let mut lines: Vec<String> = events
                .iter()
                .map(|event| serde_json::to_string(event).expect("events serialise"))
                .collect();
            lines.push(format!("next {next}"));
            lines.join("\n")
        }
        Reply::Issued { voucher } => format!("issued voucher {voucher}"),
        Reply::Redeemed { uses_this_year } => {
            format!("redeemed; the holder's uses this year: {uses_this_year}")
        }
        Reply::CheckedIn { session, checkins } => {
            format!("checked in for {session} ({checkins} check-ins)")
        }
        Reply::Expired { expired } => format!("expired {expired} vouchers"),
        Reply::AuditRecords(page) => format!(
            "{} audit records (head {})",
            page.entries.len(),
            page.head_seq
        ),
        Reply::AuditHead {
            seq,
            hash,
            state_digest,
        } => {
            format!("audit seq     {seq}\naudit hash    {hash}\nstate digest  {state_digest}")
        }
        Reply::Voucher(view) => {
            let mut text = format!(
                "voucher       {}\nstate         {}\nkind          {}\ncategory      {}\nchannel       {}\nface value    {} fen\nyear          {}\ndistrict      {}\n",
                view.voucher,
                wire_name(view.state),
                wire_name(view.kind),
                wire_name(view.category),
                wire_name(view.channel),
                view.face_value_fen,
                view.year,
                view.district
            );
            if let Some(institution) = view.institution {
                text += &format!("institution   {institution}\n");
            }
            if let Some(class) = &view.class {
                text += &format!("class         {class}\n");
            }
            let steps = &view.steps;
            for (label, at) in [
                ("issued at    ", &steps.issued_at),
                ("claimed at   ", &steps.claimed_at),
                ("redeemed at  ", &steps.redeemed_at),
                ("completed at ", &steps.completed_at),
                ("settled at   ", &steps.settled_at),
            ] {
                if let Some(at) = at {
                    text += &format!("{label} {at}\n");
                }
            }
            text += &format!("check-ins     {}\n", view.checkins);
            if let Some(score) = view.score {
                text += &format!("score         {score}\n");
            }
            if let Some(settled) = view.settled_fen {
                text += &format!("settled       {settled} fen\n");
            }
            text.trim_end().to_owned()
        }
        Reply::Stats(stats) => {
            let mut text = format!("figures as of {}, audit record {}\n", stats.at, stats.seq);
            text += &format!(
                "{:<8} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12}\n",
                "code", "district", "target", "issued", "claimed", "used", "%target", "settled fen"
            );
            for d in &stats.districts {
                text += &format!(
                    "{:<8} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8.2} {:>12}\n",
                    d.code.as_str(),
                    d.name,
                    d.target,
                    d.issued,
                    d.claimed,
                    d.used,
                    d.percent_of_target,
                    d.settled_fen
                );
            }
            let c = &stats.city;
            text += &format!(
                "city {}: issued {} of {} goal, claimed {}, used {} of {} goal ({:.2}% of district targets), settled {} fen\n",
                stats.year, c.issued, c.issued_goal, c.claimed, c.used, c.used_goal, c.percent_of_target, c.settled_fen
            );
            let v = &stats.coverage;
            text += &format!(
                "coverage: districts using vouchers {}/{}, institutions using vouchers {}/{}, used vouchers with check-ins {}/{}",
                v.districts_used, v.districts_total, v.institutions_used, v.institutions_registered, v.used_with_checkin, v.used
            );
            text
        }
    }
}
