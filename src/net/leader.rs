//! A client that follows the leader of a replicated deployment: several
//! daemon addresses, one connection at a time. A batch answered `not_leader`
//! or lost with its connection is sent again with the same request ids (so
//! it is applied at most once) to the leader the refusal names, or the next
//! address, for at most `CLIENT_FAILOVER_WAIT_MS`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::domain::op::{Answer, Request, Role};
use crate::error::{Error, Reason};
use crate::limits::{CLIENT_FAILOVER_PAUSE_MS, CLIENT_FAILOVER_WAIT_MS, CLIENT_SERVERS_MAX};
use crate::net::client::{Client, ClientError};

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
            match Client::connect_to(server, certs, role).await {
                Ok(client) => {
                    return Ok(LeaderClient {
                        certs: certs.to_owned(),
                        role,
                        state: tokio::sync::Mutex::new(State {
                            servers: servers.to_vec(),
                            connected: Some(client),
                            at,
                            retries: 0,
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
        loop {
            let failure = match state.send(&self.certs, self.role, requests).await {
                Ok(answers) => {
                    let standby = !answers.is_empty()
                        && answers.iter().all(|answer| {
                            matches!(&answer.outcome, Err(r) if r.reason == Reason::NotLeader)
                        });
                    if !standby || Instant::now() >= deadline {
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
                    state.go_to(None);
                    why
                }
                Err(refused) => return Err(refused),
            };
            state.retries += 1;
            tracing::debug!(%failure, next = %state.servers[state.at], "following the leader");
            tokio::time::sleep(Duration::from_millis(CLIENT_FAILOVER_PAUSE_MS)).await;
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
            let client = Client::connect_to(&self.servers[self.at], certs, role)
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
    /// is room), or else to the next address.
    fn go_to(&mut self, leader: Option<String>) {
        if let Some(leader) = leader {
            if let Some(index) = self.servers.iter().position(|s| *s == leader) {
                self.at = index;
                return;
            }
            if self.servers.len() < CLIENT_SERVERS_MAX {
                self.servers.push(leader);
                self.at = self.servers.len() - 1;
                return;
            }
        }
        self.at = (self.at + 1) % self.servers.len();
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
}
