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
use crate::limits::STORAGE_FREE_BYTES_MIN;
use crate::store::journal::Journal;
use crate::store::Store;

/// The person-key secret inside a data folder.
pub const SECRET_FILE: &str = "person.key";
const STORE_DIR: &str = "ledger";

/// Reads the secret that keys ID-number hashes, creating it (mode 0600) on first start.
pub fn load_or_create_secret(data: &Path) -> Result<PersonSecret, Error> {
    let path = data.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                Error::Corrupt(format!("{} must hold exactly 32 bytes", path.display()))
            })?;
            Ok(PersonSecret(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(PersonSecret(key))
        }
        Err(e) => Err(e.into()),
    }
}

/// The ledger opened on a data folder.
pub struct Opened {
    pub ledger: Arc<Ledger>,
    pub store: Arc<Store>,
}

/// Opens the data folder: store, secret, campaigns (the given current one plus
/// every one recorded before), then the ledger with its indexes rebuilt.
/// A campaign whose rules differ from those recorded for its year is refused.
pub fn open(data: &Path, current: Campaign, clock: Arc<dyn Clock>) -> Result<Opened, Error> {
    open_with(data, current, clock, STORAGE_FREE_BYTES_MIN)
}

/// `open` with another free-space reserve for the store, bytes.
pub fn open_with(
    data: &Path,
    current: Campaign,
    clock: Arc<dyn Clock>,
    free_bytes_min: u64,
) -> Result<Opened, Error> {
    std::fs::create_dir_all(data)?;
    let secret = load_or_create_secret(data)?;
    let store = Arc::new(Store::open_with(&data.join(STORE_DIR), free_bytes_min)?);
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
    let ledger = Ledger::open(
        LedgerConfig {
            campaigns,
            secret,
            clock,
        },
        journal,
    )?;
    Ok(Opened {
        ledger: Arc::new(ledger),
        store,
    })
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
