//! Requests as JSON objects (API.md's form), one at a time: what `voucherctl`
//! reads line by line. A value that is not a valid request becomes an
//! `invalid_request` answer under the request's id (or `line:N`), never an error.

use crate::domain::command::check_request_id;
use crate::domain::op::{Answer, Request};
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
