//! What `voucherctl` does besides talking: read JSON lines into requests
//! (a bad line becomes an `invalid_request` answer for that line) and print
//! answers for people.

use crate::domain::command::check_request_id;
use crate::domain::enums::wire_name;
use crate::domain::op::{Answer, Reply, Request};
use crate::error::Reason;

/// One input line: a request to send, or the answer it already got.
pub enum Line {
    Request(Request),
    Answered(Answer),
}

/// Parses one JSON line of API.md's form. Never fails: a line that is not a
/// valid request is answered `invalid_request` with the reason.
pub fn parse_line(number: usize, line: &str) -> Line {
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(error) => {
            return Line::Answered(Answer::refused(
                &format!("line:{number}"),
                Reason::InvalidRequest,
                format!("line {number} is not JSON: {error}"),
            ))
        }
    };
    let id = match value.get("id").and_then(|id| id.as_str()) {
        Some(id) => id.to_owned(),
        None => {
            return Line::Answered(Answer::refused(
                &format!("line:{number}"),
                Reason::InvalidRequest,
                format!("line {number} has no string \"id\""),
            ))
        }
    };
    if let Err(refusal) = check_request_id(&id) {
        return Line::Answered(Answer {
            id,
            outcome: Err(refusal),
        });
    }
    match serde_json::from_value::<Request>(value) {
        Ok(request) => Line::Request(request),
        Err(error) => Line::Answered(Answer::refused(
            &id,
            Reason::InvalidRequest,
            format!("line {number}: {error}"),
        )),
    }
}

/// A reply as a person reads it.
pub fn human(reply: &Reply) -> String {
    match reply {
        Reply::Done {} => "ok".into(),
        Reply::Issued { voucher } => format!("issued voucher {voucher}"),
        Reply::Redeemed { uses_this_year } => {
            format!("redeemed; the holder's uses this year: {uses_this_year}")
        }
        Reply::CheckedIn { session, checkins } => {
            format!("checked in for {session} ({checkins} check-ins)")
        }
        Reply::Expired { expired } => format!("expired {expired} vouchers"),
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
                wire_name(&view.state),
                wire_name(&view.kind),
                wire_name(&view.category),
                wire_name(&view.channel),
                view.face_value_fen,
                view.year,
                view.district
            );
            if let Some(institution) = view.institution {
                text += &format!("institution   {institution}\n");
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
            let mut text = format!(
                "{:<8} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                "code", "district", "target", "issued", "claimed", "used", "%target"
            );
            for d in &stats.districts {
                text += &format!(
                    "{:<8} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8.2}\n",
                    d.code.as_str(),
                    d.name,
                    d.target,
                    d.issued,
                    d.claimed,
                    d.used,
                    d.percent_of_target
                );
            }
            let c = &stats.city;
            text += &format!(
                "city {}: issued {} of {} goal, claimed {}, used {} of {} goal ({:.2}% of district targets)\n",
                stats.year, c.issued, c.issued_goal, c.claimed, c.used, c.used_goal, c.percent_of_target
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: Line) -> Answer {
        match line {
            Line::Answered(answer) => answer,
            Line::Request(request) => panic!("parsed {request:?}"),
        }
    }

    #[test]
    fn bad_lines_become_invalid_request_answers() {
        let answer = refused(parse_line(3, "{not json"));
        assert_eq!(answer.id, "line:3");
        assert_eq!(answer.outcome.unwrap_err().reason, Reason::InvalidRequest);
        let long = format!(r#"{{"id":"{}","op":"audit_head"}}"#, "x".repeat(65));
        assert_eq!(
            refused(parse_line(1, &long)).outcome.unwrap_err().reason,
            Reason::InvalidRequest
        );
        let unknown = refused(parse_line(
            2,
            r#"{"id":"a","op":"claim","voucher":"7","id_number":"x"}"#,
        ));
        assert_eq!(
            unknown.id, "a",
            "a malformed voucher id is refused with the line's request id"
        );
        let bad_enum = refused(parse_line(
            4,
            r#"{"id":"b","op":"issue","id_number":"1","category":"alien","kind":"hr_services","face_value_fen":1,"channel":"wechat","district":"500101"}"#,
        ));
        assert!(bad_enum.outcome.unwrap_err().message.contains("alien"));
        assert!(matches!(
            parse_line(5, r#"{"id":"c","op":"audit_head"}"#),
            Line::Request(_)
        ));
    }
}
