//! A client that follows the leader of a replicated deployment: several
//! daemon addresses, one connection at a time. A batch answered `not_leader`
//! or lost with its connection is sent again with the same request ids (so
//! it is applied at most once) to the leader the refusal names, or the next
//! address, for at most `CLIENT_FAILOVER_WAIT_MS`. With several addresses
//! its connections use `Timeouts::FOLLOWING`, and an address whose connection
//! was lost is not gone back to on a standby's word for
//! `CLIENT_FOLLOW_LOST_SKIP_MS` while others are left (a standby names a
//! dead leader until its lease lapses).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::domain::op::{Answer, Request, Role};
use crate::error::{Error, Reason};
use crate::limits::{
    CLIENT_FAILOVER_PAUSE_MS, CLIENT_FAILOVER_WAIT_MS, CLIENT_FOLLOW_LOST_SKIP_MS,
    CLIENT_SERVERS_MAX,
};
use crate::net::client::{Client, ClientError, Timeouts};

pub struct LeaderClient {
    certs: PathBuf,
    role: Role,
    state: tokio::sync::Mutex<State>,
}

struct State {
    servers: Vec<String>,
    connected: Option<Client>,
    /// The address `connected` is (or the next connection goes) to.
    at: usize,
    /// Batches sent again after `not_leader` or a lost connection.
    retries: u64,
    /// Addresses whose connection was lost (or could not be made), and when:
    /// skipped for `CLIENT_FOLLOW_LOST_SKIP_MS` while another is left.
    lost: Vec<(usize, Instant)>,
}

/// The leader a `not_leader` answer names (`leader=HOST:PORT`), if any.
pub fn named_leader(message: &str) -> Option<&str> {
    message
        .split_whitespace()
        .find_map(|word| word.strip_prefix("leader="))
        .map(|address| address.trim_end_matches([')', ',', '.', ';']))
}

impl LeaderClient {
    /// Connects as `role` to the first of `servers` (`HOST:PORT` each, at
    /// most `CLIENT_SERVERS_MAX`) that answers; with one address, exactly
    /// `Client::connect_to` (its error as it is).
    pub async fn connect(
        servers: &[String],
        certs: &Path,
        role: Role,
    ) -> Result<LeaderClient, Error> {
        if servers.is_empty() || servers.len() > CLIENT_SERVERS_MAX {
            return Err(Error::InvalidInput(format!(
                "--server: 1 to {CLIENT_SERVERS_MAX} addresses, not {}",
                servers.len()
            )));
        }
        let mut last_error = None;
        for (at, server) in servers.iter().enumerate() {
            match Client::connect_to_within(server, certs, role, timeouts(servers.len())).await {
                Ok(client) => {
                    return Ok(LeaderClient {
                        certs: certs.to_owned(),
                        role,
                        state: tokio::sync::Mutex::new(State {
                            servers: servers.to_vec(),
                            connected: Some(client),
                            at,
                            retries: 0,
                            lost: (0..at).map(|index| (index, Instant::now())).collect(),
                        }),
                    })
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one address was tried"))
    }

    /// Batches sent again so far (after `not_leader` or a lost connection).
    pub async fn retries(&self) -> u64 {
        self.state.lock().await.retries
    }

    /// Sends a batch to the leader, following it as the module doc says (a
    /// lost connection is retried only when there are other addresses).
    /// Answers other than a frame refused `not_leader` as a whole are
    /// returned as they are; so is that refusal once the time is up.
    pub async fn execute(&self, requests: &[Request]) -> Result<Vec<Answer>, ClientError> {
        let deadline = Instant::now() + Duration::from_millis(CLIENT_FAILOVER_WAIT_MS);
        let mut state = self.state.lock().await;
        let mut moves = 0;
        loop {
            let failure = match state.send(&self.certs, self.role, requests).await {
                Ok(answers) => {
                    let standby = !answers.is_empty()
                        && answers.iter().all(|answer| {
                            matches!(&answer.outcome, Err(r) if r.reason == Reason::NotLeader)
                        });
                    if !standby {
                        state.lost.clear();
                        return Ok(answers);
                    }
                    if Instant::now() >= deadline {
                        return Ok(answers);
                    }
                    let message = match &answers[0].outcome {
                        Err(refusal) => refusal.message.clone(),
                        Ok(_) => unreachable!("checked above"),
                    };
                    state.connected = None;
                    state.go_to(named_leader(&message).map(str::to_owned));
                    message
                }
                Err(ClientError::Connection(why)) => {
                    state.connected = None;
                    if state.servers.len() == 1 || Instant::now() >= deadline {
                        return Err(ClientError::Connection(why));
                    }
                    let at = state.at;
                    state.lost.retain(|(index, _)| *index != at);
                    state.lost.push((at, Instant::now()));
                    state.go_to(None);
                    why
                }
                Err(refused) => return Err(refused),
            };
            state.retries += 1;
            tracing::debug!(%failure, next = %state.servers[state.at], "following the leader");
            // The next address at once, a pause after each round over them:
            // a live daemon answers in a round trip, a standby about to lead
            // is asked again shortly.
            moves += 1;
            if moves >= state.servers.len() {
                moves = 0;
                tokio::time::sleep(Duration::from_millis(CLIENT_FAILOVER_PAUSE_MS)).await;
            }
        }
    }

    /// Closes the connection, if any, and waits until the daemon was told.
    pub async fn close(self) {
        if let Some(client) = self.state.into_inner().connected {
            client.close().await;
        }
    }
}

impl State {
    async fn send(
        &mut self,
        certs: &Path,
        role: Role,
        requests: &[Request],
    ) -> Result<Vec<Answer>, ClientError> {
        if self.connected.is_none() {
            let timeouts = timeouts(self.servers.len());
            let client = Client::connect_to_within(&self.servers[self.at], certs, role, timeouts)
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            self.connected = Some(client);
        }
        self.connected
            .as_ref()
            .expect("connected above")
            .execute(requests)
            .await
    }

    /// Moves to the named leader (added to the addresses when new and there
    /// is room) unless its connection was lost, or else to the next address
    /// not lost (all lost: they are all tried again).
    fn go_to(&mut self, leader: Option<String>) {
        let skip = Duration::from_millis(CLIENT_FOLLOW_LOST_SKIP_MS);
        self.lost.retain(|(_, at)| at.elapsed() < skip);
        let lost = |lost: &[(usize, Instant)], index: usize| lost.iter().any(|(i, _)| *i == index);
        if let Some(leader) = leader {
            match self.servers.iter().position(|s| *s == leader) {
                Some(index) if !lost(&self.lost, index) => {
                    self.at = index;
                    return;
                }
                Some(_) => {}
                None if self.servers.len() < CLIENT_SERVERS_MAX => {
                    self.servers.push(leader);
                    self.at = self.servers.len() - 1;
                    return;
                }
                None => {}
            }
        }
        if self.lost.len() >= self.servers.len() {
            self.lost.clear();
        }
        loop {
            self.at = (self.at + 1) % self.servers.len();
            if !lost(&self.lost, self.at) {
                return;
            }
        }
    }
}

/// A client with several addresses follows a leader: short timeouts.
fn timeouts(servers: usize) -> Timeouts {
    if servers > 1 {
        Timeouts::FOLLOWING
    } else {
        Timeouts::SINGLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standby's message format (`replica::run`) names the leader.
    #[test]
    fn the_leader_is_read_from_a_standby_message() {
        assert_eq!(
            named_leader("not the leader: this daemon is a standby; leader=127.0.0.1:7443"),
            Some("127.0.0.1:7443")
        );
        assert_eq!(named_leader("not the leader: no leader is known yet"), None);
    }

    fn state(servers: &[&str], at: usize, lost: Vec<usize>) -> State {
        State {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            connected: None,
            at,
            retries: 0,
            lost: lost.into_iter().map(|i| (i, Instant::now())).collect(),
        }
    }

    /// After the leader's connection is lost, a standby that still names it
    /// (its lease has not lapsed) does not send the client back to it: the
    /// client asks the other addresses, for `CLIENT_FOLLOW_LOST_SKIP_MS`.
    #[test]
    fn a_lost_leader_named_by_a_standby_is_skipped_for_a_while() {
        let mut s = state(&["a:1", "b:1", "c:1"], 1, vec![0]);
        s.go_to(Some("a:1".into()));
        assert_eq!(s.at, 2);
        s.go_to(Some("a:1".into()));
        assert_eq!(s.at, 1, "a:1 skipped");
        // A leader named that is not lost is followed.
        s.go_to(Some("c:1".into()));
        assert_eq!(s.at, 2);
        // Every address lost: all are tried again.
        let mut s = state(&["a:1", "b:1"], 1, vec![0, 1]);
        s.go_to(None);
        assert_eq!((s.at, s.lost.len()), (0, 0));
        // Lost long enough ago (the connection dropped on a live leader, or
        // it came back): a standby naming it sends the client there again.
        let mut s = state(&["a:1", "b:1"], 1, vec![]);
        let long_ago = Instant::now() - Duration::from_millis(CLIENT_FOLLOW_LOST_SKIP_MS + 1);
        s.lost.push((0, long_ago));
        s.go_to(Some("a:1".into()));
        assert_eq!((s.at, s.lost.len()), (0, 0));
    }
}
