//! Backups and restores of a data folder. A backup is a data folder of its own:
//! a RocksDB checkpoint of the store, taken by the running daemon when asked on
//! its control socket (or directly when none runs). The person-key secret is
//! left out unless asked for (`--include-key`): with it, the low-entropy ID
//! numbers behind every stored person key can be found by trying them all, so
//! it is kept apart from the backups (ops/runbook.md, "Backup"). Backup
//! folders are 0700 and their files 0600.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use crate::admin::data_dir;
use crate::domain::ids::PersonSecret;
use crate::domain::time::{ManualClock, Timestamp};
use crate::error::Error;
use crate::ledger::{decode_u64, meta, Ledger, LedgerConfig};
use crate::store::journal::{Journal, Table};
use crate::store::Store;

/// The daemon's control socket, inside its data folder (mode 0600).
pub const CONTROL_SOCKET: &str = "control.sock";
/// How long `voucherd backup` waits for the daemon to finish a checkpoint.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes of one control request line at most.
pub const CONTROL_LINE_BYTES_MAX: usize = 4096;

/// What a backup or a restored data folder holds: its audit head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub audit_seq: u64,
    pub audit_hash: String,
}

#[derive(Serialize, Deserialize)]
struct ControlRequest {
    backup: PathBuf,
    /// Copy `person.key` into the backup too.
    #[serde(default)]
    include_key: bool,
}

#[derive(Serialize, Deserialize)]
struct ControlAnswer {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<Manifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The audit head stored in a journal.
fn head_of(journal: &dyn Journal) -> Result<Manifest, Error> {
    Ok(match journal.last(Table::Audit)? {
        None => Manifest {
            audit_seq: 0,
            audit_hash: hex::encode(crate::audit::GENESIS_HASH),
        },
        Some((key, entry)) => {
            let seq = decode_u64(&key)
                .ok_or_else(|| Error::Corrupt("audit key is not a sequence number".into()))?;
            let (_, hash) = crate::audit::open(&entry)
                .map_err(|why| Error::Corrupt(format!("audit record {seq}: {why}")))?;
            Manifest {
                audit_seq: seq,
                audit_hash: hex::encode(hash),
            }
        }
    })
}

fn prepare_out(out: &Path) -> Result<(), Error> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        return Err(Error::InvalidInput(format!(
            "{} exists and is not empty; a backup goes into a new folder",
            out.display()
        )));
    }
    if out.exists() {
        std::fs::remove_dir(out)?;
    }
    data_dir::create_private_dir(out)
}

/// Makes every folder under `dir` (and itself) 0700 and every file 0600.
/// Files hard-linked by a checkpoint share their mode with the live store's,
/// which the daemon's `UMask=0077` already makes 0600.
fn make_private(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |path: &Path, e: std::io::Error| {
        Error::Storage(format!("cannot restrict {}: {e}", path.display()))
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| failed(dir, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| failed(dir, e))? {
        let path = entry.map_err(|e| failed(dir, e))?.path();
        if path.is_dir() {
            make_private(&path)?;
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| failed(&path, e))?;
        }
    }
    Ok(())
}

/// The data folder's person key, checked against the store's check value: a
/// backup of a ledger without its key would be unusable.
fn checked_secret(from_data: &Path, store: &Store) -> Result<PersonSecret, Error> {
    let path = from_data.join(data_dir::SECRET_FILE);
    let secret = data_dir::read_secret(&path)?.ok_or_else(|| {
        Error::Corrupt(format!(
            "{} is missing; a backup of this ledger would be unusable",
            path.display()
        ))
    })?;
    data_dir::verify_secret(store, &secret, &path)?;
    Ok(secret)
}

/// Takes a backup of an open store (the daemon's) into `out`, a new folder;
/// with the person key when `include_key`. The key is checked first, so a
/// refused backup leaves nothing behind.
pub fn create(
    data_dir: &Path,
    store: &Store,
    out: &Path,
    include_key: bool,
) -> Result<Manifest, Error> {
    let secret = checked_secret(data_dir, store)?;
    prepare_out(out)?;
    let store_out = data_dir::store_path(out);
    store.checkpoint(&store_out)?;
    if include_key {
        data_dir::write_secret(&out.join(data_dir::SECRET_FILE), &secret)?;
    }
    make_private(out)?;
    let copy = Store::open_read_only(&store_out)?;
    head_of(&copy)
}

/// Asks the daemon serving `data_dir` for a backup; `Ok(None)` when no daemon
/// answers on the control socket.
pub fn request(data_dir: &Path, out: &Path, include_key: bool) -> Result<Option<Manifest>, Error> {
    let Ok(mut stream) = UnixStream::connect(data_dir.join(CONTROL_SOCKET)) else {
        return Ok(None);
    };
    stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
    let out = std::path::absolute(out)?;
    let mut line = serde_json::to_vec(&ControlRequest {
        backup: out,
        include_key,
    })
    .map_err(|e| Error::InvalidInput(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer: ControlAnswer = serde_json::from_str(&answer)
        .map_err(|e| Error::Unavailable(format!("the daemon's answer: {e}")))?;
    match (answer.ok, answer.manifest) {
        (true, Some(manifest)) => Ok(Some(manifest)),
        _ => Err(Error::InvalidInput(
            answer.error.unwrap_or_else(|| "backup failed".into()),
        )),
    }
}

/// `voucherd backup`: through the running daemon, or directly from the folder
/// when no daemon runs (RocksDB's lock refuses a folder another process holds).
/// A folder that is not a data folder is refused: nothing is created in it.
pub fn backup(data_dir: &Path, out: &Path, include_key: bool) -> Result<Manifest, Error> {
    let store_path = data_dir::existing_store_path(data_dir)?;
    if let Some(manifest) = request(data_dir, out, include_key)? {
        return Ok(manifest);
    }
    let store = Arc::new(Store::open(&store_path)?);
    // A folder left by a crash may hold audit records its state tables do
    // not reflect yet: opening the ledger re-applies them (and writes their
    // state), so the copy is whole, like an online backup's.
    drop(open_ledger(data_dir, &store, None)?);
    create(data_dir, &store, out, include_key)
}

/// The ledger of an open store with the campaigns it recorded, under the
/// folder's person key (else `key_file`'s; an empty ledger needs none), on
/// a stopped clock: what the offline tools read.
fn open_ledger(
    data_dir: &Path,
    store: &Arc<Store>,
    key_file: Option<&Path>,
) -> Result<Ledger, Error> {
    let campaigns = meta::recorded_campaigns(store.as_ref())?;
    let secret = match data_dir::existing_secret(data_dir, key_file, store.as_ref())? {
        Some((secret, _)) => secret,
        // An empty ledger: no person key was ever used.
        None => PersonSecret([0; 32]),
    };
    let journal: Arc<dyn Journal> = store.clone();
    Ledger::open(
        LedgerConfig {
            campaigns,
            secret,
            clock: Arc::new(ManualClock::new(Timestamp(0))),
        },
        journal,
    )
}

/// Serves the control socket of `data_dir` until the task is dropped.
pub async fn serve_control(data_dir: PathBuf, store: Arc<Store>) -> Result<(), Error> {
    let path = data_dir.join(CONTROL_SOCKET);
    // A socket left by a killed daemon; this process holds the store's lock.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (data_dir, store) = (data_dir.clone(), Arc::clone(&store));
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read).take(CONTROL_LINE_BYTES_MAX as u64);
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let answer = match serde_json::from_str::<ControlRequest>(&line) {
                Err(e) => ControlAnswer {
                    ok: false,
                    manifest: None,
                    error: Some(format!("unreadable control request: {e}")),
                },
                Ok(request) => {
                    let out = request.backup.clone();
                    let made = tokio::task::spawn_blocking(move || {
                        create(&data_dir, &store, &request.backup, request.include_key)
                    })
                    .await;
                    match made {
                        Ok(Ok(manifest)) => {
                            info!(out = %out.display(), audit_seq = manifest.audit_seq, "backup taken");
                            ControlAnswer {
                                ok: true,
                                manifest: Some(manifest),
                                error: None,
                            }
                        }
                        Ok(Err(error)) => {
                            warn!(out = %out.display(), %error, "backup failed");
                            ControlAnswer {
                                ok: false,
                                manifest: None,
                                error: Some(error.to_string()),
                            }
                        }
                        Err(error) => ControlAnswer {
                            ok: false,
                            manifest: None,
                            error: Some(error.to_string()),
                        },
                    }
                }
            };
            let mut bytes = serde_json::to_vec(&answer).expect("answers serialise");
            bytes.push(b'\n');
            let _ = write.write_all(&bytes).await;
        });
    }
}

/// What a checked data folder holds.
#[derive(Debug)]
pub struct Checked {
    pub manifest: Manifest,
    pub state_digest: String,
    pub vouchers: usize,
}

/// Opens a data folder read-only with the campaigns it recorded and runs the
/// full recovery (every cross-check of start-up) and the audit chain check.
/// The person key is the folder's, else `key_file`; it must match the
/// ledger's check value.
pub fn check(data_dir: &Path, key_file: Option<&Path>) -> Result<Checked, Error> {
    let store = Arc::new(Store::open_read_only(&data_dir::existing_store_path(
        data_dir,
    )?)?);
    if let Err(broken) = crate::admin::offline::verify_journal(store.as_ref())? {
        return Err(Error::Corrupt(format!("audit chain broken at {broken}")));
    }
    let manifest = head_of(store.as_ref())?;
    let ledger = open_ledger(data_dir, &store, key_file)?;
    let (_, _, state_digest) = ledger.head();
    let (vouchers, _, _) = ledger.sizes();
    Ok(Checked {
        manifest,
        state_digest,
        vouchers,
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    data_dir::create_private_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// `voucherd restore`: checks the backup, copies it into a new data folder
/// (0700, files 0600), puts the person key in it (the backup's, else
/// `key_file`, checked against the ledger's check value), and checks the copy.
/// The daemon is then started on that folder.
pub fn restore(backup: &Path, data_dir: &Path, key_file: Option<&Path>) -> Result<Checked, Error> {
    let original = check(backup, key_file)?;
    let store = Store::open_read_only(&data_dir::existing_store_path(backup)?)?;
    let secret = data_dir::existing_secret(backup, key_file, &store)?;
    drop(store);
    prepare_out(data_dir)?;
    copy_dir(backup, data_dir)?;
    let key_in_copy = data_dir.join(data_dir::SECRET_FILE);
    if let Some((secret, _)) = secret {
        if !key_in_copy.exists() {
            data_dir::write_secret(&key_in_copy, &secret)?;
        }
    }
    let restored = check(data_dir, None)?;
    if restored.manifest != original.manifest || restored.state_digest != original.state_digest {
        return Err(Error::Corrupt(
            "the restored folder differs from the backup".into(),
        ));
    }
    Ok(restored)
}
