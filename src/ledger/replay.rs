//! Replay: an audit record applied again through the same rules (offline
//! tools, backups), checking the reply and the record hash are the same.

use super::*;

impl Ledger {
    /// Re-applies one audit record (replay): same command, time, role and
    /// voucher id, sealed in the record's own version (a version 1 record
    /// again without its caller's certificate). The result must be the
    /// recorded reply and the same hash.
    pub fn replay(&self, record: &AuditRecord, hash: &[u8; 32]) -> Result<(), String> {
        self.replay_record(record, hash, false)
    }

    /// `replay`, for a record already in the journal's durable log (start-up
    /// re-applying the records after the state's checkpoint): the commit
    /// writes the state it changes, not the record again.
    pub(super) fn replay_record(
        &self,
        record: &AuditRecord,
        hash: &[u8; 32],
        logged: bool,
    ) -> Result<(), String> {
        // A request's role is checked before the rules; a record's must be
        // too, or a crafted one would reach rules that assume it.
        if !record.command.allows(record.caller.role) {
            return Err(format!(
                "record {}: role {} may not run {}",
                record.seq,
                record.caller.role,
                record.command.name()
            ));
        }
        let voucher_id = match &record.reply {
            Reply::Issued { voucher } => Some(*voucher),
            _ => None,
        };
        if let Some(id) = voucher_id {
            self.next_voucher.fetch_max(id.0 + 1, Ordering::SeqCst);
        }
        let origin = Origin {
            caller: record.caller,
            request_id: &record.request_id,
            time: std::cell::Cell::new(record.time),
            fixed_time: true,
            restamp: std::cell::Cell::new(false),
            remember: None,
            record_version: record.version,
            logged,
        };
        let (outcome, _) = self.apply_command(&origin, &record.command, voucher_id);
        match outcome {
            Ok(reply) if reply == record.reply => {}
            Ok(reply) => {
                return Err(format!(
                    "record {}: replay answered {reply:?}, log says {:?}",
                    record.seq, record.reply
                ))
            }
            Err(refusal) => {
                return Err(format!(
                    "record {}: replay refused it: {} ({})",
                    record.seq, refusal.reason, refusal.message
                ))
            }
        }
        let (seq, head, _) = self.head();
        if seq != record.seq || &head != hash {
            return Err(format!(
                "record {}: replay produced a different record",
                record.seq
            ));
        }
        Ok(())
    }
}
