//! What replicated mode asks of the ledger besides `replay`: a standby
//! refuses every request `not_leader` (naming the leader), adopts the
//! leader's remembered request ids, and waits for its replays to be durable.

use super::*;

impl Ledger {
    /// `Some(message)`: this ledger is a standby, every request of a frame is
    /// refused `not_leader` with `message` (which names the leader); `None`:
    /// it serves. Set by replicated mode only; a ledger starts serving.
    pub fn set_standby(&self, message: Option<String>) {
        *self.standby.write() = message;
    }

    /// Whether requests are refused `not_leader` now.
    pub fn is_standby(&self) -> bool {
        self.standby.read().is_some()
    }

    /// The `not_leader` answers to a frame while this ledger is a standby.
    pub(super) fn standby_answers(&self, requests: &[Request]) -> Option<Vec<Answer>> {
        let message = self.standby.read().clone()?;
        Some(
            requests
                .iter()
                .map(|request| Answer::refused(&request.id, Reason::NotLeader, message.clone()))
                .collect(),
        )
    }

    /// Writes a request id the leader remembered (its `requests` row as the
    /// replicated log carries it), so a retry here gets the first answer.
    /// A row that does not decode is refused, never stored.
    pub fn adopt_request(&self, key: &[u8], value: &[u8]) -> Result<u64, Refusal> {
        let _: requests::Remembered = codec::decode(value, "remembered request")
            .map_err(|e| Refusal::new(Reason::InvalidRequest, e.to_string()))?;
        let mut tail = self.tail.lock();
        if self.journal.is_full() {
            return Err(Refusal::new(
                Reason::Overloaded,
                "the commit queue is full; retry",
            ));
        }
        let ticket = tail.ticket + 1;
        self.journal.submit(Commit {
            ticket,
            puts: vec![Put {
                table: Table::Requests,
                key: key.to_vec(),
                value: Some(value.to_vec()),
            }],
        })?;
        tail.ticket = ticket;
        self.assigned_ticket.store(ticket, Ordering::SeqCst);
        Ok(ticket)
    }

    /// The check value of this ledger's person-key secret (`meta`): every
    /// node of a replicated deployment must have the same, or the same ID
    /// number would be two persons on two nodes.
    pub fn person_key_check(&self) -> [u8; 32] {
        meta::person_key_check(&self.secret)
    }

    /// Blocks until every commit handed to the journal so far is durable,
    /// its state written too.
    pub fn wait_all_durable(&self) -> Result<(), Refusal> {
        self.journal
            .wait_written(self.assigned_ticket.load(Ordering::SeqCst))
    }
}
