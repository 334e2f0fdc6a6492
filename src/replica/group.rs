//! The payloads of the stream's messages (D111), pure code: a commit
//! group's audit records and remembered request ids packed into group
//! messages, and its events packed per district into JSON arrays, each
//! message at most `REPLICA_MESSAGE_BYTES_MAX`.

use crate::domain::op::Event;
use crate::limits::REPLICA_MESSAGE_BYTES_MAX;

/// Entry kind of a sealed audit record (the export's bytes: record, hash).
const KIND_RECORD: u8 = 0;
/// Entry kind of a remembered request id (its `requests` key and row).
const KIND_REQUEST: u8 = 1;

/// One entry of a group message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    /// A sealed audit record and the audit sequence it holds.
    Record { seq: u64, sealed: &'a [u8] },
    /// A `requests` row as the leader stored it.
    Request { key: &'a [u8], value: &'a [u8] },
}

/// A group message's payload and the chain head after it: its last
/// record's sequence, or the head before it when it holds none (the
/// `Voucherd-Audit-Seq` header a restarted node searches by).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Packed {
    pub payload: Vec<u8>,
    pub head: u64,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("an entry is far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn entry_len(entry: &Entry) -> usize {
    match entry {
        Entry::Record { sealed, .. } => 1 + 4 + sealed.len(),
        Entry::Request { key, value } => 1 + 4 + key.len() + 4 + value.len(),
    }
}

/// Packs `entries` (in commit order) into as few payloads as fit
/// `REPLICA_MESSAGE_BYTES_MAX` each (an entry is never split; one larger
/// than that goes alone). `head` is the chain head before the first.
pub(super) fn pack(entries: &[Entry], mut head: u64) -> Vec<Packed> {
    let mut packed: Vec<Packed> = Vec::new();
    let mut payload = Vec::new();
    for entry in entries {
        if !payload.is_empty() && payload.len() + entry_len(entry) > REPLICA_MESSAGE_BYTES_MAX {
            packed.push(Packed {
                payload: std::mem::take(&mut payload),
                head,
            });
        }
        match entry {
            Entry::Record { seq, sealed } => {
                payload.push(KIND_RECORD);
                put_bytes(&mut payload, sealed);
                head = *seq;
            }
            Entry::Request { key, value } => {
                payload.push(KIND_REQUEST);
                put_bytes(&mut payload, key);
                put_bytes(&mut payload, value);
            }
        }
    }
    if !payload.is_empty() {
        packed.push(Packed { payload, head });
    }
    packed
}

/// The entries of a group message's payload, in order; a record's `seq`
/// is left 0 (the caller opens the sealed bytes). A truncated or unknown
/// entry is an error, never skipped.
pub(super) fn unpack(payload: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    fn bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or("a truncated entry length")?;
        let bytes = rest
            .get(4..4 + len)
            .ok_or("an entry longer than its message")?;
        *rest = &rest[4 + len..];
        Ok(bytes)
    }
    let mut rest = payload;
    let mut entries = Vec::new();
    while let Some((&kind, after)) = rest.split_first() {
        rest = after;
        entries.push(match kind {
            KIND_RECORD => Entry::Record {
                seq: 0,
                sealed: bytes(&mut rest)?,
            },
            KIND_REQUEST => Entry::Request {
                key: bytes(&mut rest)?,
                value: bytes(&mut rest)?,
            },
            other => return Err(format!("an entry of unknown kind {other}")),
        });
    }
    Ok(entries)
}

/// One events message: the subject token of its district (`none` for
/// campaign-wide events), its payload (a JSON array of events, each
/// exactly as `events` answers it, in chain order) and its last event's
/// `seq` (the `events` cursor after it).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EventsMessage {
    pub district: String,
    pub payload: Vec<u8>,
    pub last_seq: u64,
}

/// A group's events (chain order) as one message per district, in the
/// order districts first appear, split where a payload would pass
/// `REPLICA_MESSAGE_BYTES_MAX` (an event is never split).
pub(super) fn events_by_district(
    events: &[Event],
    none: &str,
) -> Result<Vec<EventsMessage>, String> {
    let mut districts: Vec<(String, Vec<&Event>)> = Vec::new();
    for event in events {
        let token = event
            .district
            .map_or_else(|| none.to_owned(), |d| d.to_string());
        match districts.iter_mut().find(|(d, _)| *d == token) {
            Some((_, list)) => list.push(event),
            None => districts.push((token, vec![event])),
        }
    }
    let mut messages = Vec::new();
    for (district, list) in districts {
        let mut payload = Vec::new();
        let mut last_seq = 0;
        for event in list {
            let json = serde_json::to_vec(event).map_err(|e| e.to_string())?;
            if !payload.is_empty() && payload.len() + json.len() + 2 > REPLICA_MESSAGE_BYTES_MAX {
                payload.push(b']');
                messages.push(EventsMessage {
                    district: district.clone(),
                    payload: std::mem::take(&mut payload),
                    last_seq,
                });
            }
            payload.push(if payload.is_empty() { b'[' } else { b',' });
            payload.extend_from_slice(&json);
            last_seq = event.seq;
        }
        payload.push(b']');
        messages.push(EventsMessage {
            district,
            payload,
            last_seq,
        });
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::DistrictCode;

    fn record(seq: u64, len: usize) -> (u64, Vec<u8>) {
        (seq, vec![seq as u8; len])
    }

    #[test]
    fn a_group_packs_and_unpacks_in_order_with_its_heads() {
        let (r1, r2) = (record(41, 300), record(42, 280));
        let entries = [
            Entry::Record {
                seq: r1.0,
                sealed: &r1.1,
            },
            Entry::Request {
                key: b"key-1",
                value: b"row-1",
            },
            Entry::Record {
                seq: r2.0,
                sealed: &r2.1,
            },
        ];
        let packed = pack(&entries, 40);
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0].head, 42);
        let back = unpack(&packed[0].payload).unwrap();
        assert_eq!(
            back,
            [
                Entry::Record {
                    seq: 0,
                    sealed: &r1.1
                },
                entries[1],
                Entry::Record {
                    seq: 0,
                    sealed: &r2.1
                }
            ]
        );
        // Only request ids: the head before it.
        let rows = [Entry::Request {
            key: b"k",
            value: b"v",
        }];
        assert_eq!(pack(&rows, 40)[0].head, 40);
        assert!(pack(&[], 40).is_empty());
    }

    #[test]
    fn a_large_group_splits_at_the_message_bound_between_entries() {
        let size = REPLICA_MESSAGE_BYTES_MAX / 3;
        let records: Vec<_> = (1..=7).map(|seq| record(seq, size)).collect();
        let entries: Vec<Entry> = records
            .iter()
            .map(|(seq, sealed)| Entry::Record { seq: *seq, sealed })
            .collect();
        let packed = pack(&entries, 0);
        // Two records of a third each fit, a third's framing does not.
        assert_eq!(packed.len(), 4);
        assert_eq!(
            packed.iter().map(|p| p.head).collect::<Vec<_>>(),
            [2, 4, 6, 7]
        );
        let mut seen = 0;
        for p in &packed {
            assert!(p.payload.len() <= REPLICA_MESSAGE_BYTES_MAX);
            seen += unpack(&p.payload).unwrap().len();
        }
        assert_eq!(seen, 7);
        // An entry larger than the bound goes alone, whole.
        let big = record(9, REPLICA_MESSAGE_BYTES_MAX + 1);
        let alone = pack(
            &[
                entries[0],
                Entry::Record {
                    seq: big.0,
                    sealed: &big.1,
                },
            ],
            0,
        );
        assert_eq!(alone.len(), 2);
        assert_eq!(unpack(&alone[1].payload).unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_group_message_is_refused() {
        let r = record(5, 10);
        let packed = pack(
            &[Entry::Record {
                seq: r.0,
                sealed: &r.1,
            }],
            4,
        );
        let payload = &packed[0].payload;
        for cut in 1..payload.len() {
            assert!(unpack(&payload[..cut]).is_err(), "cut at {cut}");
        }
        let mut unknown = payload.clone();
        unknown[0] = 7;
        assert!(unpack(&unknown).is_err());
    }

    fn event(seq: u64, district: Option<&str>) -> Event {
        let mut event = Event::new(seq, "2021-03-01T09:00:00+08:00".into(), "redeem");
        event.district = district.map(|d| d.parse::<DistrictCode>().unwrap());
        event
    }

    #[test]
    fn events_go_one_array_per_district_in_chain_order() {
        let events = [
            event(10, Some("500101")),
            event(11, Some("500102")),
            event(12, Some("500101")),
            event(13, None),
        ];
        let messages = events_by_district(&events, "_").unwrap();
        let districts: Vec<&str> = messages.iter().map(|m| m.district.as_str()).collect();
        assert_eq!(districts, ["500101", "500102", "_"]);
        let first: Vec<Event> = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [10, 12]);
        assert_eq!(messages[0].last_seq, 12);
        let as_events: serde_json::Value = serde_json::to_value(&events[1]).unwrap();
        let second: serde_json::Value = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(second, serde_json::json!([as_events]));
    }

    #[test]
    fn many_events_of_a_district_split_at_the_message_bound() {
        let one = serde_json::to_vec(&event(1, Some("500101"))).unwrap().len();
        let count = 3 * REPLICA_MESSAGE_BYTES_MAX / one;
        let events: Vec<Event> = (1..=count as u64)
            .map(|seq| event(seq, Some("500101")))
            .collect();
        let messages = events_by_district(&events, "_").unwrap();
        assert!(messages.len() >= 3, "{} messages", messages.len());
        let mut seqs = Vec::new();
        for m in &messages {
            assert!(m.payload.len() <= REPLICA_MESSAGE_BYTES_MAX);
            let part: Vec<Event> = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(part.last().unwrap().seq, m.last_seq);
            seqs.extend(part.iter().map(|e| e.seq));
        }
        assert_eq!(seqs, (1..=count as u64).collect::<Vec<_>>());
    }
}
