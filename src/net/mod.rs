//! The network edge: frames (`wire`) and their reading off a stream
//! (`reading`), requests as JSON objects (`json`), the
//! QUIC service (`server`) and client (`client`), a client that follows the
//! leader of a replicated deployment (`leader`), and mutual TLS with roles
//! in certificates (`tls`).

pub mod client;
pub mod json;
pub mod leader;
pub mod reading;
pub mod server;
pub mod tls;
pub mod wire;
