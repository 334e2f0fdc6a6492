//! The data folder: the RocksDB store, the per-deployment person-key secret,
//! and the campaigns this ledger has run with (kept so a restart, a replay or
//! a new year's campaign never changes the rules of vouchers already issued).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;

use crate::domain::campaign::{Campaign, Campaigns};
use crate::domain::ids::PersonSecret;
use crate::domain::time::Clock;
use crate::error::Error;
use crate::ledger::{meta, Ledger, LedgerConfig};
use crate::limits::{EVENTS_INDEX_BUILT_BEFORE_LISTENING_RECORDS_MAX, STORAGE_FREE_BYTES_MIN};
use crate::store::journal::{Journal, Table};
use crate::store::Store;

/// The person-key secret inside a data folder.
pub const SECRET_FILE: &str = "person.key";
const STORE_DIR: &str = "ledger";

/// Creates a folder (and missing parents) readable by the owner only (0700).
pub fn create_private_dir(path: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .map_err(|e| Error::Storage(format!("cannot create the folder {}: {e}", path.display())))
}

/// Reads a person-key file (exactly 32 bytes); `None` when it does not exist.
pub fn read_secret(path: &Path) -> Result<Option<PersonSecret>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                Error::Corrupt(format!("{} must hold exactly 32 bytes", path.display()))
            })?;
            Ok(Some(PersonSecret(key)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Storage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes a person-key file (mode 0600, new file only), synced, and syncs its
/// folder so the file's name is on disk before anything keyed with it.
pub fn write_secret(path: &Path, secret: &PersonSecret) -> Result<(), Error> {
    let failed =
        |e: std::io::Error| Error::Storage(format!("cannot write {}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(failed)?;
    file.write_all(&secret.0).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::Storage(format!("cannot sync the folder {}: {e}", folder.display())))
}

/// Checks a person key against the check value a ledger stored (`meta`),
/// `key_file` naming where it came from. A ledger without a check value (made
/// before check values were stored) accepts any key.
pub fn verify_secret(
    journal: &dyn Journal,
    secret: &PersonSecret,
    key_file: &Path,
) -> Result<(), Error> {
    match journal.get(Table::Meta, meta::PERSON_KEY_CHECK)? {
        Some(stored) if stored[..] != meta::person_key_check(secret)[..] => {
            Err(Error::Corrupt(format!(
                "{} is not the person key this ledger was created with (its check value differs); \
                 put back the original file (see the runbook, \"Backup\")",
                key_file.display()
            )))
        }
        _ => Ok(()),
    }
}

/// The refusal for a ledger that needs its person key and has none.
fn missing_secret(key_file: &Path, records: u64) -> Error {
    Error::Corrupt(format!(
        "{} is missing, and this ledger ({records} audit records) was created with a person key; \
         put back the original file (see the runbook, \"Backup\"): a new key would make every \
         stored person unknown",
        key_file.display()
    ))
}

/// The audit records in a journal (its last sequence number).
fn audit_records(journal: &dyn Journal) -> Result<u64, Error> {
    Ok(match journal.last(Table::Audit)? {
        None => 0,
        Some((key, _)) => crate::ledger::decode_u64(&key)
            .ok_or_else(|| Error::Corrupt("audit key is not a sequence number".into()))?,
    })
}

/// The person key of a data folder whose store is open: read, checked against
/// the stored check value, or created for a new ledger (and its check value
/// recorded). A ledger that has records or a check value and no key, or
/// another key, is refused: a new key would silently make every stored person
/// unknown.
pub fn load_or_create_secret(data: &Path, store: &Store) -> Result<PersonSecret, Error> {
    let path = data.join(SECRET_FILE);
    let stored_check = store.get(Table::Meta, meta::PERSON_KEY_CHECK)?;
    match read_secret(&path)? {
        Some(secret) => {
            verify_secret(store, &secret, &path)?;
            if stored_check.is_none() {
                store.put_meta(meta::PERSON_KEY_CHECK, &meta::person_key_check(&secret))?;
            }
            Ok(secret)
        }
        None => {
            let records = audit_records(store)?;
            if stored_check.is_some() || records > 0 {
                return Err(missing_secret(&path, records));
            }
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            let secret = PersonSecret(key);
            write_secret(&path, &secret)?;
            store.put_meta(meta::PERSON_KEY_CHECK, &meta::person_key_check(&secret))?;
            Ok(secret)
        }
    }
}

/// The person key for a read-only look at a data folder (backup checks): the
/// folder's `person.key`, else `key_file`, checked against the stored value.
/// `None` when neither exists and the ledger is empty and has no check value.
pub fn existing_secret(
    data: &Path,
    key_file: Option<&Path>,
    journal: &dyn Journal,
) -> Result<Option<(PersonSecret, PathBuf)>, Error> {
    let own = data.join(SECRET_FILE);
    for path in std::iter::once(own.as_path()).chain(key_file) {
        if let Some(secret) = read_secret(path)? {
            verify_secret(journal, &secret, path)?;
            return Ok(Some((secret, path.to_owned())));
        }
    }
    let records = audit_records(journal)?;
    if journal.get(Table::Meta, meta::PERSON_KEY_CHECK)?.is_some() || records > 0 {
        return Err(Error::Corrupt(format!(
            "{} is missing{}, and this ledger ({records} audit records) was created with a person key; \
             give the kept key with --key FILE",
            own.display(),
            key_file
                .map(|k| format!(" and so is {}", k.display()))
                .unwrap_or_default()
        )));
    }
    Ok(None)
}

/// The folder of an existing data folder's store; an error naming the folder
/// when it (or its store) does not exist. Offline tools open existing stores only.
pub fn existing_store_path(data: &Path) -> Result<PathBuf, Error> {
    if !data.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{} is not a folder; give the data folder of an existing ledger",
            data.display()
        )));
    }
    let store = store_path(data);
    if !store.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{} holds no ledger (no {} folder inside)",
            data.display(),
            STORE_DIR
        )));
    }
    Ok(store)
}

/// The ledger opened on a data folder.
pub struct Opened {
    pub ledger: Arc<Ledger>,
    pub store: Arc<Store>,
    /// The thread building the events index of a long chain (D66), if any:
    /// joined before the store closes (`Ledger::stop_events_index_build`).
    pub events_index: Option<std::thread::JoinHandle<()>>,
}

/// Opens the data folder: store, secret, campaigns (the given current one plus
/// every one recorded before), then the ledger with its indexes rebuilt.
/// A campaign whose rules differ from those recorded for its year is refused.
pub fn open(data: &Path, current: Campaign, clock: Arc<dyn Clock>) -> Result<Opened, Error> {
    open_with(data, current, clock, STORAGE_FREE_BYTES_MIN)
}

/// `open` without sealing the campaigns into the audit chain: replicated
/// mode seals them once the node leads (a standby's chain is the stream's).
pub fn open_unsealed(
    data: &Path,
    current: Campaign,
    clock: Arc<dyn Clock>,
) -> Result<Opened, Error> {
    open_sealing(data, current, clock, STORAGE_FREE_BYTES_MIN, false)
}

/// `open` with another free-space reserve for the store, bytes.
pub fn open_with(
    data: &Path,
    current: Campaign,
    clock: Arc<dyn Clock>,
    free_bytes_min: u64,
) -> Result<Opened, Error> {
    open_sealing(data, current, clock, free_bytes_min, true)
}

fn open_sealing(
    data: &Path,
    current: Campaign,
    clock: Arc<dyn Clock>,
    free_bytes_min: u64,
    seal: bool,
) -> Result<Opened, Error> {
    create_private_dir(data)?;
    create_private_dir(&store_path(data))?;
    let store = Arc::new(Store::open_with(&store_path(data), free_bytes_min)?);
    let secret = load_or_create_secret(data, &store)?;
    let mut campaigns = Vec::new();
    let mut recorded_current = false;
    for campaign in meta::parse_campaigns(&meta::recorded_campaign_texts(store.as_ref())?)? {
        if campaign.year == current.year {
            if campaign != current {
                return Err(Error::InvalidInput(format!(
                    "the {} campaign differs from the one this ledger ran with; keep its file unchanged",
                    current.year
                )));
            }
            recorded_current = true;
        } else {
            campaigns.push(campaign);
        }
    }
    if !recorded_current {
        record_campaign(&store, &current)?;
    }
    campaigns.push(current);
    let campaigns = Campaigns::new(campaigns).map_err(Error::InvalidInput)?;
    let journal: Arc<dyn Journal> = store.clone();
    let ledger = Ledger::open_deferring_events(
        LedgerConfig {
            campaigns,
            secret,
            clock,
        },
        journal,
    )?;
    // Before serving: every campaign's rules in the chain itself.
    if seal {
        ledger.record_campaigns()?;
    }
    let ledger = Arc::new(ledger);
    let events_index = build_events_index(&ledger)?;
    Ok(Opened {
        ledger,
        store,
        events_index,
    })
}

/// The events index of a short chain now; of a longer one on a thread of
/// its own, so a large ledger listens without waiting for it (D66): that
/// thread. A failed build leaves `events` answering `overloaded` and is
/// logged.
fn build_events_index(ledger: &Arc<Ledger>) -> Result<Option<std::thread::JoinHandle<()>>, Error> {
    if ledger.head().0 <= EVENTS_INDEX_BUILT_BEFORE_LISTENING_RECORDS_MAX {
        ledger.build_events_index()?;
        return Ok(None);
    }
    let ledger = Arc::clone(ledger);
    let thread = std::thread::Builder::new()
        .name("events-index".into())
        .spawn(move || {
            if let Err(error) = ledger.build_events_index() {
                tracing::error!(%error, "the events index was not built; events answer overloaded");
            }
        })
        .map_err(|e| Error::Storage(format!("events index thread: {e}")))?;
    Ok(Some(thread))
}

/// Writes a campaign into the meta table, synced, before any voucher uses it.
fn record_campaign(store: &Store, campaign: &Campaign) -> Result<(), Error> {
    store.put_meta(
        &meta::campaign_key(campaign.year),
        campaign.to_toml().as_bytes(),
    )
}

/// The folder of the store inside a data folder.
pub fn store_path(data: &Path) -> PathBuf {
    data.join(STORE_DIR)
}
