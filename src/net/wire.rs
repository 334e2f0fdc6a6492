//! The wire protocol: one request frame per QUIC bidirectional stream, one
//! answer frame back.
//!
//! A frame is a u32 big-endian length, then a u16 big-endian protocol version,
//! then bincode (standard config). A request body is a batch of 1 to
//! `BATCH_OPS_MAX` requests; an answer body is one answer per request, in
//! order, or one refusal for the whole frame when it could not be read.

use bincode::{Decode, Encode};

use crate::codec;
use crate::domain::op::{Answer, Request};
use crate::error::{Reason, Refusal};
use crate::limits::{BATCH_OPS_MAX, FRAME_BYTES_MAX, PROTOCOL_VERSION};

/// The body of an answer frame.
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum Reply {
    /// One answer per request, in order.
    Answers(Vec<Answer>),
    /// The frame itself was refused (too big, garbage, wrong version, …); nothing ran.
    Refused(Refusal),
}

fn frame(body: Vec<u8>) -> Vec<u8> {
    let len = u32::try_from(body.len() + 2).expect("frames are checked against FRAME_BYTES_MAX");
    let mut bytes = Vec::with_capacity(body.len() + 6);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(Reason::InvalidRequest, message)
}

/// A JSON body in a frame (the JSON encoding; same header as bincode's).
pub fn frame_json(body: Vec<u8>) -> Vec<u8> {
    frame(body)
}

/// Checks a JSON frame's length prefix and version; returns the body.
pub fn unframe_json(bytes: &[u8]) -> Result<&[u8], Refusal> {
    unframe(bytes)
}

/// Checks the length prefix and version; returns the body.
fn unframe(bytes: &[u8]) -> Result<&[u8], Refusal> {
    if bytes.len() < 6 {
        return Err(invalid("frame is shorter than its header"));
    }
    let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(invalid(format!(
            "frame of {len} bytes is over the limit of {FRAME_BYTES_MAX}"
        )));
    }
    if len != bytes.len() - 4 {
        return Err(invalid(format!(
            "frame says {len} bytes but carries {}",
            bytes.len() - 4
        )));
    }
    let version = u16::from_be_bytes(bytes[4..6].try_into().expect("2 bytes"));
    if version != PROTOCOL_VERSION {
        return Err(invalid(format!(
            "protocol version {version} is not supported (this daemon speaks {PROTOCOL_VERSION})"
        )));
    }
    Ok(&bytes[6..])
}

/// Encodes a batch of requests. Refuses an empty or oversized batch.
pub fn encode_requests(requests: &[Request]) -> Result<Vec<u8>, Refusal> {
    if requests.is_empty() || requests.len() > BATCH_OPS_MAX {
        return Err(invalid(format!(
            "a batch carries 1 to {BATCH_OPS_MAX} operations"
        )));
    }
    let body = codec::encode_plain(&requests.to_vec());
    if body.len() + 2 > FRAME_BYTES_MAX {
        return Err(invalid(format!(
            "batch encodes to over {FRAME_BYTES_MAX} bytes"
        )));
    }
    Ok(frame(body))
}

/// The operation count a request body declares (bincode writes a batch's
/// length first, as a varint), read before anything is decoded.
fn declared_operations(body: &[u8]) -> Result<u64, Refusal> {
    let (count, _): (u64, usize) = bincode::decode_from_slice(body, bincode::config::standard())
        .map_err(|why| invalid(format!("request frame does not decode: {why}")))?;
    Ok(count)
}

/// Decodes a request frame (the whole stream's bytes). The declared
/// operation count is checked against `BATCH_OPS_MAX` first: the decoder
/// makes room for every declared operation before reading one, so a ten-byte
/// frame declaring millions would have the daemon allocate tens of MiB.
pub fn decode_requests(bytes: &[u8]) -> Result<Vec<Request>, Refusal> {
    let body = unframe(bytes)?;
    let declared = declared_operations(body)?;
    if declared == 0 || declared > BATCH_OPS_MAX as u64 {
        return Err(invalid(format!(
            "a batch carries 1 to {BATCH_OPS_MAX} operations (this frame declares {declared})"
        )));
    }
    let requests: Vec<Request> = codec::decode_plain(body)
        .map_err(|why| invalid(format!("request frame does not decode: {why}")))?;
    if requests.is_empty() || requests.len() > BATCH_OPS_MAX {
        return Err(invalid(format!(
            "a batch carries 1 to {BATCH_OPS_MAX} operations"
        )));
    }
    Ok(requests)
}

/// Encodes an answer frame. Answers too big for a frame become one refusal.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let body = codec::encode_plain(reply);
    if body.len() + 2 > FRAME_BYTES_MAX {
        let refusal = invalid("the answers do not fit in one frame; send smaller batches");
        return frame(codec::encode_plain(&Reply::Refused(refusal)));
    }
    frame(body)
}

/// Decodes an answer frame.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, Refusal> {
    let body = unframe(bytes)?;
    codec::decode_plain(body).map_err(|why| invalid(format!("answer frame does not decode: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::op::Op;

    fn head(n: usize) -> Vec<Request> {
        (0..n)
            .map(|i| Request {
                id: format!("r{i}"),
                op: Op::AuditHead,
            })
            .collect()
    }

    #[test]
    fn frames_round_trip() {
        let requests = head(3);
        assert_eq!(
            decode_requests(&encode_requests(&requests).unwrap()).unwrap(),
            requests
        );
        let reply = Reply::Answers(vec![Answer::refused("r0", Reason::Expired, "late")]);
        assert_eq!(decode_reply(&encode_reply(&reply)).unwrap(), reply);
    }

    #[test]
    fn batch_size_limit_is_enforced_both_ways() {
        assert!(encode_requests(&[]).is_err());
        assert!(encode_requests(&head(BATCH_OPS_MAX)).is_ok());
        assert!(encode_requests(&head(BATCH_OPS_MAX + 1)).is_err());
        let oversize = frame(codec::encode_plain(&head(BATCH_OPS_MAX + 1)));
        let refusal = decode_requests(&oversize).unwrap_err();
        assert_eq!(refusal.reason, Reason::InvalidRequest);
        assert!(decode_requests(&frame(codec::encode_plain(&Vec::<Request>::new()))).is_err());
    }

    /// Checks (issue 17, item 4): a frame's declared operation count is
    /// refused before the decoder makes room for it. How: bodies that are
    /// only a count (200,000, under the decoder's byte limit, so it would
    /// allocate for them; and 2^40) are refused naming the batch limit and
    /// the declared count; without the check the decoder ran out of input
    /// after allocating and the message named neither.
    #[test]
    fn a_declared_operation_count_is_checked_before_decoding() {
        for declared in [200_000u64, 1 << 40] {
            let body = bincode::encode_to_vec(declared, bincode::config::standard()).unwrap();
            let refusal = decode_requests(&frame(body)).unwrap_err();
            assert_eq!(refusal.reason, Reason::InvalidRequest);
            assert!(
                refusal.message.contains(&format!("1 to {BATCH_OPS_MAX}"))
                    && refusal.message.contains(&declared.to_string()),
                "{}",
                refusal.message
            );
        }
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        let good = encode_requests(&head(1)).unwrap();
        let mut wrong_version = good.clone();
        wrong_version[5] = 9;
        assert!(decode_requests(&wrong_version)
            .unwrap_err()
            .message
            .contains("protocol version 9"));
        let mut too_long = good.clone();
        too_long[..4].copy_from_slice(&((FRAME_BYTES_MAX + 1) as u32).to_be_bytes());
        assert!(decode_requests(&too_long)
            .unwrap_err()
            .message
            .contains("over the limit"));
        assert!(
            decode_requests(&good[..good.len() - 1]).is_err(),
            "truncated"
        );
        assert!(decode_requests(b"garbage!garbage!").is_err());
        let mut garbage = frame(vec![0xff; 32]);
        garbage.truncate(38);
        assert!(decode_requests(&garbage).is_err());
    }
}
