//! The QUIC client used by `voucherctl`, the load generator and the tests:
//! one connection, one bidirectional stream per batch, many batches in flight.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint};

use crate::domain::op::{Answer, Request, Role};
use crate::error::{Error, Refusal};
use crate::limits::{CLIENT_CONNECT_TIMEOUT_MS, CLIENT_KEEP_ALIVE_MS, FRAME_BYTES_MAX};
use crate::net::tls::{self, CertPaths};
use crate::net::wire::{self, Reply};

/// Why a batch got no answers.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon refused the whole frame (nothing ran).
    #[error("the daemon refused the batch: {} ({})", .0.reason, .0.message)]
    Refused(Refusal),
    /// The connection or stream failed; the batch may or may not have run.
    #[error("connection: {0}")]
    Connection(String),
}

fn connection_error(error: impl std::fmt::Display) -> ClientError {
    ClientError::Connection(error.to_string())
}

/// The TLS configuration of `role` from a certificate folder.
fn role_config(certs: &Path, role: Role) -> Result<rustls::ClientConfig, Error> {
    let paths = CertPaths {
        dir: certs.to_owned(),
    };
    tls::client_config(
        &paths.ca_cert(),
        &paths.client_cert(role),
        &paths.client_key(role),
    )
}

pub struct Client {
    endpoint: Endpoint,
    connection: Connection,
}

impl Client {
    /// Connects as `role` with the certificates in `certs` (see `voucherd certs`);
    /// the daemon's certificate must name the address's IP.
    pub async fn connect(server: SocketAddr, certs: &Path, role: Role) -> Result<Client, Error> {
        Client::connect_with(server, role_config(certs, role)?).await
    }

    /// Connects to `HOST:PORT` (a name or an IP address, `[v6]:port`) as
    /// `role`; the daemon's certificate must name HOST.
    pub async fn connect_to(target: &str, certs: &Path, role: Role) -> Result<Client, Error> {
        let (host, _) = target
            .rsplit_once(':')
            .ok_or_else(|| Error::InvalidInput(format!("--server {target}: expected HOST:PORT")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // IPv4 first: `localhost` often resolves to ::1 too, and the daemon
        // listens on 127.0.0.1 by default.
        let server = tokio::net::lookup_host(target)
            .await
            .map_err(|e| Error::Unavailable(format!("--server {target}: {e}")))?
            .min_by_key(|address| address.is_ipv6())
            .ok_or_else(|| Error::Unavailable(format!("--server {target}: no address")))?;
        Client::connect_named(server, host, role_config(certs, role)?).await
    }

    /// Connects with any TLS client configuration (tests use foreign CAs);
    /// the daemon's certificate must name the address's IP.
    pub async fn connect_with(
        server: SocketAddr,
        config: rustls::ClientConfig,
    ) -> Result<Client, Error> {
        Client::connect_named(server, &server.ip().to_string(), config).await
    }

    /// Connects to `server`, checking that its certificate names `server_name`.
    pub async fn connect_named(
        server: SocketAddr,
        server_name: &str,
        config: rustls::ClientConfig,
    ) -> Result<Client, Error> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config)
            .map_err(|e| Error::InvalidInput(format!("QUIC TLS: {e}")))?;
        let bind: SocketAddr = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        }
        .parse()
        .expect("literal");
        let mut endpoint = Endpoint::client(bind)?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_millis(CLIENT_KEEP_ALIVE_MS)));
        client_config.transport_config(Arc::new(transport));
        endpoint.set_default_client_config(client_config);
        let connecting = endpoint.connect(server, server_name).map_err(|e| {
            Error::InvalidInput(format!("connect to {server_name} ({server}): {e}"))
        })?;
        let connection = match tokio::time::timeout(
            Duration::from_millis(CLIENT_CONNECT_TIMEOUT_MS),
            connecting,
        )
        .await
        {
            Ok(connected) => {
                connected.map_err(|e| Error::Unavailable(format!("connect to {server}: {e}")))?
            }
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "connect to {server}: no answer in {} s; is the daemon running there?",
                    CLIENT_CONNECT_TIMEOUT_MS / 1_000
                )))
            }
        };
        Ok(Client {
            endpoint,
            connection,
        })
    }

    /// Sends one batch and waits for its answers (in request order).
    pub async fn execute(&self, requests: &[Request]) -> Result<Vec<Answer>, ClientError> {
        let frame = wire::encode_requests(requests).map_err(ClientError::Refused)?;
        self.execute_raw(&frame)
            .await
            .and_then(|reply| match reply {
                Reply::Answers(answers) if answers.len() == requests.len() => Ok(answers),
                Reply::Answers(answers) => Err(ClientError::Connection(format!(
                    "{} answers for {} requests",
                    answers.len(),
                    requests.len()
                ))),
                Reply::Refused(refusal) => Err(ClientError::Refused(refusal)),
            })
    }

    /// Sends raw bytes as a request frame (tests send garbage this way).
    pub async fn execute_raw(&self, frame: &[u8]) -> Result<Reply, ClientError> {
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(connection_error)?;
        send.write_all(frame).await.map_err(connection_error)?;
        send.finish().map_err(connection_error)?;
        let bytes = recv
            .read_to_end(FRAME_BYTES_MAX + 4)
            .await
            .map_err(connection_error)?;
        wire::decode_reply(&bytes).map_err(ClientError::Refused)
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Closes the connection and waits until the daemon has been told.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}
