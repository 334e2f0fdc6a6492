//! The QUIC client used by `voucherctl`, the load generator and the tests:
//! one connection, one bidirectional stream per batch, many batches in flight.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint};

use crate::domain::op::{Answer, Request, Role};
use crate::error::{Error, Refusal};
use crate::limits::{
    CLIENT_CONNECT_TIMEOUT_MS, CLIENT_FOLLOW_CONNECT_TIMEOUT_MS, CLIENT_FOLLOW_IDLE_TIMEOUT_MS,
    CLIENT_FOLLOW_KEEP_ALIVE_MS, CLIENT_IDLE_TIMEOUT_MS, CLIENT_KEEP_ALIVE_MS, FRAME_BYTES_MAX,
};
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

/// How long a connection attempt may take and when a silent connection
/// counts as lost, milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect_ms: u64,
    pub keep_alive_ms: u64,
    pub idle_ms: u32,
}

impl Timeouts {
    /// One daemon: `CLIENT_CONNECT_TIMEOUT_MS`, `CLIENT_KEEP_ALIVE_MS`,
    /// `CLIENT_IDLE_TIMEOUT_MS`.
    pub const SINGLE: Timeouts = Timeouts {
        connect_ms: CLIENT_CONNECT_TIMEOUT_MS,
        keep_alive_ms: CLIENT_KEEP_ALIVE_MS,
        idle_ms: CLIENT_IDLE_TIMEOUT_MS,
    };
    /// A leader-following client (several addresses): a dead leader is
    /// noticed well before a standby can take its lease (D100).
    pub const FOLLOWING: Timeouts = Timeouts {
        connect_ms: CLIENT_FOLLOW_CONNECT_TIMEOUT_MS,
        keep_alive_ms: CLIENT_FOLLOW_KEEP_ALIVE_MS,
        idle_ms: CLIENT_FOLLOW_IDLE_TIMEOUT_MS,
    };
}

/// How a client encodes its frames (chosen by ALPN at connect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `voucherd/1`: bincode bodies.
    Binary,
    /// `voucherd-json/1`: JSON array bodies (what gateways in other languages use).
    Json,
}

pub struct Client {
    endpoint: Endpoint,
    connection: Connection,
    encoding: Encoding,
}

impl Client {
    /// Connects as `role` with the certificates in `certs` (see `voucherd certs`);
    /// the daemon's certificate must name the address's IP.
    pub async fn connect(server: SocketAddr, certs: &Path, role: Role) -> Result<Client, Error> {
        Client::connect_with(server, role_config(certs, role)?).await
    }

    /// `connect` with the given encoding (`Encoding::Json` offers only the
    /// JSON ALPN, as a gateway in another language would).
    pub async fn connect_encoded(
        server: SocketAddr,
        certs: &Path,
        role: Role,
        encoding: Encoding,
    ) -> Result<Client, Error> {
        let mut config = role_config(certs, role)?;
        if encoding == Encoding::Json {
            config.alpn_protocols = vec![tls::ALPN_JSON.to_vec()];
        }
        let mut client = Client::connect_with(server, config).await?;
        client.encoding = encoding;
        Ok(client)
    }

    /// Connects to `HOST:PORT` (a name or an IP address, `[v6]:port`) as
    /// `role`; the daemon's certificate must name HOST.
    pub async fn connect_to(target: &str, certs: &Path, role: Role) -> Result<Client, Error> {
        Client::connect_to_within(target, certs, role, Timeouts::SINGLE).await
    }

    /// `connect_to` with the given timeouts.
    pub async fn connect_to_within(
        target: &str,
        certs: &Path,
        role: Role,
        timeouts: Timeouts,
    ) -> Result<Client, Error> {
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
        Client::connect_timed(server, host, role_config(certs, role)?, timeouts).await
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
        Client::connect_timed(server, server_name, config, Timeouts::SINGLE).await
    }

    async fn connect_timed(
        server: SocketAddr,
        server_name: &str,
        config: rustls::ClientConfig,
        timeouts: Timeouts,
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
        transport.keep_alive_interval(Some(Duration::from_millis(timeouts.keep_alive_ms)));
        transport.max_idle_timeout(Some(quinn::VarInt::from_u32(timeouts.idle_ms).into()));
        client_config.transport_config(Arc::new(transport));
        endpoint.set_default_client_config(client_config);
        let connecting = endpoint.connect(server, server_name).map_err(|e| {
            Error::InvalidInput(format!("connect to {server_name} ({server}): {e}"))
        })?;
        let connection = match tokio::time::timeout(
            Duration::from_millis(timeouts.connect_ms),
            connecting,
        )
        .await
        {
            Ok(connected) => {
                connected.map_err(|e| Error::Unavailable(format!("connect to {server}: {e}")))?
            }
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "connect to {server}: no answer in {:.1} s; is the daemon running there?",
                    timeouts.connect_ms as f64 / 1_000.0
                )))
            }
        };
        Ok(Client {
            endpoint,
            connection,
            encoding: Encoding::Binary,
        })
    }

    /// Sends one batch and waits for its answers (in request order).
    pub async fn execute(&self, requests: &[Request]) -> Result<Vec<Answer>, ClientError> {
        let reply = match self.encoding {
            Encoding::Binary => {
                let frame = wire::encode_requests(requests).map_err(ClientError::Refused)?;
                self.execute_raw(&frame).await
            }
            Encoding::Json => self.execute_json(requests).await,
        };
        reply.and_then(|reply| match reply {
            Reply::Answers(answers) if answers.len() == requests.len() => Ok(answers),
            Reply::Answers(answers) => Err(ClientError::Connection(format!(
                "{} answers for {} requests",
                answers.len(),
                requests.len()
            ))),
            Reply::Refused(refusal) => Err(ClientError::Refused(refusal)),
        })
    }

    /// One frame in the JSON encoding; the answers read back for their ops.
    async fn execute_json(&self, requests: &[Request]) -> Result<Reply, ClientError> {
        let body = serde_json::to_vec(requests).expect("requests serialise");
        let bytes = self.exchange(&wire::frame_json(body)).await?;
        let body = wire::unframe_json(&bytes).map_err(ClientError::Refused)?;
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ClientError::Connection(format!("answer frame is not JSON: {e}")))?;
        match value {
            serde_json::Value::Array(items) if items.len() == requests.len() => items
                .into_iter()
                .zip(requests)
                .map(|(item, request)| Answer::from_json(&request.op, item))
                .collect::<Result<Vec<_>, _>>()
                .map(Reply::Answers)
                .map_err(ClientError::Connection),
            serde_json::Value::Object(refused) => {
                let text = |name: &str| refused.get(name).and_then(|v| v.as_str()).unwrap_or("");
                let reason = serde_json::from_value(serde_json::Value::from(text("reason")))
                    .map_err(|e| ClientError::Connection(format!("refusal reason: {e}")))?;
                Ok(Reply::Refused(Refusal::new(reason, text("message"))))
            }
            other => Err(ClientError::Connection(format!(
                "answer frame is neither an array of {} answers nor a refusal: {other}",
                requests.len()
            ))),
        }
    }

    /// Sends one frame's bytes and reads the answer frame's.
    async fn exchange(&self, frame: &[u8]) -> Result<Vec<u8>, ClientError> {
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(connection_error)?;
        send.write_all(frame).await.map_err(connection_error)?;
        send.finish().map_err(connection_error)?;
        recv.read_to_end(FRAME_BYTES_MAX + 4)
            .await
            .map_err(connection_error)
    }

    /// Sends raw bytes as a request frame (tests send garbage this way).
    pub async fn execute_raw(&self, frame: &[u8]) -> Result<Reply, ClientError> {
        let bytes = self.exchange(frame).await?;
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
