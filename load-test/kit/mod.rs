//! The shared test kit: what the integration tests (`tests/suite`) and the
//! tools (`voucher-crash`, `voucher-load`) both need, in one copy.
//!
//! - `daemon`: the one process wrapper of `voucherd serve` (start on a free
//!   port, wait until it listens, kill -9, restart, stop, read its output).
//! - `nats`: a three-node JetStream cluster on loopback (`ops/nats-cluster.sh`)
//!   for replicated mode, node kills and restarts.
//! - `workload`: the one random workload (the next operation, valid or
//!   deliberately invalid, and the model of what each answer changed), with
//!   the synthetic ID numbers and request builders it uses.

pub mod daemon;
pub mod nats;
pub mod workload;
