//! The leader's lease: one key in a JetStream key-value bucket whose
//! entries live `REPLICA_LEASE_MS`; taken by create (only when absent),
//! renewed by compare-and-set on the revision the holder last wrote.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, kv};

use crate::limits::{REPLICA_LEASE_MS, REPLICA_STREAM_REPLICAS};

const KEY: &str = "leader";

pub(super) struct Lease {
    bucket: kv::Store,
    /// What this node writes as the holder: the address clients reach it at.
    holder: String,
}

impl Lease {
    /// The bucket `<stream>_lease`, created when missing.
    pub(super) async fn open(
        context: &jetstream::Context,
        stream: &str,
        advertise: SocketAddr,
    ) -> Result<Lease, String> {
        let name = format!("{stream}_lease");
        let bucket = match context.get_key_value(&name).await {
            Ok(bucket) => bucket,
            Err(_) => context
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    max_age: Duration::from_millis(REPLICA_LEASE_MS),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: REPLICA_STREAM_REPLICAS,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("{name}: {e}"))?,
        };
        Ok(Lease {
            bucket,
            holder: advertise.to_string(),
        })
    }

    /// Takes the lease if nobody holds it: its revision, or `None` if held.
    pub(super) async fn take(&self) -> Result<Option<u64>, String> {
        match self.bucket.create(KEY, self.holder.clone().into()).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Renews the lease held at `revision`; refused when anyone wrote since.
    pub(super) async fn renew(&self, revision: u64) -> Result<u64, String> {
        self.bucket
            .update(KEY, self.holder.clone().into(), revision)
            .await
            .map_err(|e| e.to_string())
    }

    /// Who holds the lease now (an address), if anyone.
    pub(super) async fn holder(&self) -> Result<Option<String>, String> {
        match self.bucket.entry(KEY).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                Ok(Some(String::from_utf8_lossy(&entry.value).into_owned()))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}
