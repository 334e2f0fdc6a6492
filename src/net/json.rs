//! Requests and answers as JSON objects (API.md's form): what `voucherctl`
//! reads line by line, and the body of a frame in the JSON encoding of the
//! wire (ALPN `voucherd-json/1`: a JSON array of request objects, answered by
//! a JSON array of answer objects in the same order). A value that is not a
//! valid request becomes an `invalid_request` answer under the request's id
//! (or `line:N`, `item:N`), never an error.

use crate::domain::command::check_request_id;
use crate::domain::op::{Answer, Request};
use crate::error::{Reason, Refusal};
use crate::limits::{BATCH_OPS_MAX, FRAME_BYTES_MAX};

/// One input line: a request to send, or the answer it already got.
#[derive(Debug)]
pub enum Line {
    Request(Request),
    Answered(Answer),
}

/// Parses one JSON line of API.md's form. Never fails: a line that is not a
/// valid request is answered `invalid_request` with the reason.
pub fn parse_line(number: usize, line: &str) -> Line {
    match serde_json::from_str(line) {
        Ok(value) => parse_value(&format!("line {number}"), &format!("line:{number}"), value),
        Err(error) => Line::Answered(Answer::refused(
            &format!("line:{number}"),
            Reason::InvalidRequest,
            format!("line {number} is not JSON: {error}"),
        )),
    }
}

/// One request object; `what` names it in messages, `fallback_id` answers it
/// when it has no usable id.
fn parse_value(what: &str, fallback_id: &str, value: serde_json::Value) -> Line {
    let id = match value.get("id").and_then(|id| id.as_str()) {
        Some(id) => id.to_owned(),
        None => {
            return Line::Answered(Answer::refused(
                fallback_id,
                Reason::InvalidRequest,
                format!("{what} has no string \"id\""),
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
            format!("{what}: {error}"),
        )),
    }
}

/// Reads a JSON frame body: an array of 1 to `BATCH_OPS_MAX` request objects.
/// Each item that is not a valid request is answered in place (`Line::Answered`);
/// a body that is not such an array refuses the whole frame.
pub fn decode_requests(body: &[u8]) -> Result<Vec<Line>, Refusal> {
    let invalid = |message: String| Refusal::new(Reason::InvalidRequest, message);
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| invalid(format!("the frame is not JSON: {error}")))?;
    let serde_json::Value::Array(items) = value else {
        return Err(invalid(
            "a JSON frame is an array of request objects".into(),
        ));
    };
    if items.is_empty() || items.len() > BATCH_OPS_MAX {
        return Err(invalid(format!(
            "a frame carries 1 to {BATCH_OPS_MAX} requests, not {}",
            items.len()
        )));
    }
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_value(&format!("item {index}"), &format!("item:{index}"), item))
        .collect())
}

/// Writes a JSON answer body: the answers as an array in request order. When
/// they do not fit in a frame, the whole frame is refused instead (retry in
/// smaller frames with the same ids).
pub fn encode_answers(answers: &[Answer]) -> Vec<u8> {
    let array: Vec<serde_json::Value> = answers.iter().map(Answer::to_json).collect();
    let body = serde_json::to_vec(&array).expect("answers serialise");
    if body.len() + 2 > FRAME_BYTES_MAX {
        return encode_refusal(&Refusal::new(
            Reason::InvalidRequest,
            "the answers do not fit in one frame; send smaller batches with the same ids",
        ));
    }
    body
}

/// Writes a JSON refusal of a whole frame: one object (not an array) with
/// `ok: false`, the reason and the message; nothing in the frame ran.
pub fn encode_refusal(refusal: &Refusal) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ok": false,
        "reason": refusal.reason.as_str(),
        "message": refusal.message,
    }))
    .expect("a refusal serialises")
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

    /// A JSON frame: items answered in place keep their position; a body that
    /// is not an array of 1 to BATCH_OPS_MAX objects refuses the frame.
    #[test]
    fn json_frames_answer_bad_items_in_place_and_refuse_bad_bodies() {
        let lines = decode_requests(
            br#"[{"id":"a","op":"audit_head"},{"op":"audit_head"},{"id":"c","op":"nope"}]"#,
        )
        .unwrap();
        assert!(matches!(&lines[0], Line::Request(r) if r.id == "a"));
        assert!(matches!(&lines[1], Line::Answered(a) if a.id == "item:1"));
        assert!(matches!(&lines[2], Line::Answered(a) if a.id == "c"));
        for body in [&b"{not json"[..], b"{}", b"[]", b"\"x\""] {
            let refusal = decode_requests(body).unwrap_err();
            assert_eq!(refusal.reason, Reason::InvalidRequest, "{body:?}");
        }
        let too_many = format!(
            "[{}]",
            vec![r#"{"id":"x","op":"audit_head"}"#; BATCH_OPS_MAX + 1].join(",")
        );
        assert!(decode_requests(too_many.as_bytes()).is_err());
        let answers = [Answer::refused("a", Reason::Expired, "late")];
        let body: serde_json::Value = serde_json::from_slice(&encode_answers(&answers)).unwrap();
        assert_eq!(body[0]["reason"], "expired");
        assert_eq!(body[0]["ok"], false);
    }
}
