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

/// The two forms of `voucherctl audit export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per record (`audit::entry_json`).
    Jsonl,
    /// The binary export `voucherd replay` reads (from record 1 only).
    Binary,
}

/// Streams the audit chain from `from` up to the head as it was when the
/// export started, page by page with `audit_read`, checking every entry's
/// hash, sequence number and link on the way. Returns the records written.
pub async fn audit_export(
    client: &crate::client::Client,
    from: u64,
    format: ExportFormat,
    out: impl std::io::Write,
) -> anyhow::Result<u64> {
    use crate::audit::{ChainVerifier, ExportWriter, GENESIS_HASH};
    use crate::domain::op::Op;
    anyhow::ensure!(from >= 1, "audit sequence numbers start at 1");
    anyhow::ensure!(
        format == ExportFormat::Jsonl || from == 1,
        "the binary export starts at record 1: a replay needs the whole chain"
    );
    let mut next = from;
    let mut end = None;
    let mut verifier: Option<ChainVerifier> = None;
    let mut jsonl = None;
    let mut binary = None;
    let mut out = Some(out);
    let mut written = 0;
    loop {
        let request = Request {
            id: format!("audit-export-{}-{next}", std::process::id()),
            op: Op::AuditRead {
                from: next,
                limit: None,
            },
        };
        let answer = client.execute(&[request]).await?.remove(0);
        let page = match answer.outcome {
            Ok(Reply::AuditRecords(page)) => page,
            Ok(other) => anyhow::bail!("unexpected answer to audit_read: {other:?}"),
            Err(refusal) => anyhow::bail!(
                "audit_read refused: {} ({})",
                refusal.reason,
                refusal.message
            ),
        };
        let end = *end.get_or_insert(page.head_seq);
        if let Some(out) = out.take() {
            match format {
                ExportFormat::Jsonl => jsonl = Some(out),
                ExportFormat::Binary => binary = Some(ExportWriter::new(out, &page.campaigns)?),
            }
        }
        if next > end {
            break;
        }
        anyhow::ensure!(
            !page.entries.is_empty(),
            "the daemon answered no record {next} although its head is {end}"
        );
        for entry in &page.entries {
            if next > end {
                break;
            }
            let verifier = verifier.get_or_insert_with(|| ChainVerifier {
                next_seq: from,
                prev_hash: if from == 1 {
                    GENESIS_HASH
                } else {
                    crate::audit::open(entry)
                        .map(|(record, _)| record.prev_hash)
                        .unwrap_or(GENESIS_HASH)
                },
            });
            verifier
                .check(entry)
                .map_err(|why| anyhow::anyhow!("audit chain broken at {why}"))?;
            if let Some(out) = jsonl.as_mut() {
                let line = crate::audit::entry_json(entry).map_err(anyhow::Error::msg)?;
                writeln!(out, "{line}")?;
            }
            if let Some(writer) = binary.as_mut() {
                writer.write(entry)?;
            }
            next += 1;
            written += 1;
        }
    }
    if let Some(mut out) = jsonl {
        out.flush()?;
    }
    if let Some(writer) = binary {
        writer.finish()?;
    }
    Ok(written)
}
