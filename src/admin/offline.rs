//! The offline tools auditors run: verify the chain in a data folder, export
//! it, and replay an export into an empty ledger to recompute the digest.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use crate::admin::data_dir;
use crate::audit::{ChainVerifier, ExportReader, ExportWriter};
use crate::domain::campaign::{Campaign, Campaigns};
use crate::domain::command::Command;
use crate::domain::ids::PersonSecret;
use crate::domain::time::{ManualClock, Timestamp};
use crate::error::Error;
use crate::ledger::{decode_u64, meta, Ledger, LedgerConfig};
use crate::store::journal::{Journal, MemoryJournal, Table};
use crate::store::Store;

/// What `verify` found: the records checked and the head, or the first break.
#[derive(Debug, PartialEq)]
pub struct Verified {
    pub records: u64,
    pub head_hash: [u8; 32],
}

/// Checks every record of a chain, in order; stops at the first broken one.
pub fn verify_journal(journal: &dyn Journal) -> Result<Result<Verified, String>, Error> {
    let mut verifier = ChainVerifier::default();
    let mut broken = None;
    journal.scan(Table::Audit, &mut |key, entry| {
        if broken.is_some() {
            return Ok(());
        }
        if decode_u64(key) != Some(verifier.next_seq) {
            broken = Some(format!(
                "record {}: stored under key {}",
                verifier.next_seq,
                hex::encode(key)
            ));
            return Ok(());
        }
        if let Err(why) = verifier.check(entry) {
            broken = Some(why);
        }
        Ok(())
    })?;
    Ok(match broken {
        Some(why) => Err(why),
        None => Ok(Verified {
            records: verifier.next_seq - 1,
            head_hash: verifier.prev_hash,
        }),
    })
}

/// `voucherd audit verify --data DIR`: an existing data folder only.
pub fn verify(data_dir: &Path) -> Result<Result<Verified, String>, Error> {
    let store = Store::open_read_only(&data_dir::existing_store_path(data_dir)?)?;
    verify_journal(&store)
}

/// Writes the whole chain of a journal as a binary export. Returns the records written.
pub fn export_journal(
    journal: &dyn Journal,
    campaigns: &[String],
    out: impl Write,
) -> Result<u64, Error> {
    let mut writer = ExportWriter::new(out, campaigns)?;
    let mut records = 0;
    journal.scan(Table::Audit, &mut |_, entry| {
        records += 1;
        writer.write(entry)
    })?;
    writer.finish()?;
    Ok(records)
}

/// `voucherd audit export --data DIR --out FILE`: an existing data folder only.
pub fn export(data_dir: &Path, out: &Path) -> Result<u64, Error> {
    let store = Store::open_read_only(&data_dir::existing_store_path(data_dir)?)?;
    let campaigns = meta::recorded_campaign_texts(&store)?;
    let file = std::fs::File::create(out)
        .map_err(|e| Error::Storage(format!("cannot create {}: {e}", out.display())))?;
    let file = std::io::BufWriter::new(file);
    export_journal(&store, &campaigns, file)
}

/// What a replay rebuilt.
pub struct Replayed {
    pub records: u64,
    pub state_digest: String,
    pub ledger: Ledger,
}

/// The campaigns a chain carries: each `record_campaign` record's year,
/// text and sequence number, in chain order.
struct ChainCampaigns {
    records: Vec<(u16, String, u64)>,
}

/// First pass of a replay: checks the whole chain (hashes, sequence, links)
/// and gathers its campaign records. A second record for a year must carry
/// the same rules.
fn read_chain_campaigns(input: impl Read) -> Result<Result<ChainCampaigns, String>, Error> {
    let (mut reader, _) = ExportReader::new(input)?;
    let mut verifier = ChainVerifier::default();
    let mut records: Vec<(u16, String, u64)> = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        let record = match verifier.check(&entry) {
            Ok(record) => record,
            Err(why) => return Ok(Err(why)),
        };
        if let Command::RecordCampaign { year, text } = record.command {
            let parsed = match Campaign::from_toml(&text) {
                Ok(campaign) => campaign,
                Err(why) => {
                    return Ok(Err(format!(
                        "record {}: campaign {year} does not parse: {why}",
                        record.seq
                    )))
                }
            };
            if parsed.year != year {
                return Ok(Err(format!(
                    "record {}: campaign text is for {}, the record says {year}",
                    record.seq, parsed.year
                )));
            }
            if let Some((_, earlier, seq)) = records.iter().find(|(y, _, _)| *y == year) {
                if Campaign::from_toml(earlier).ok() != Some(parsed) {
                    return Ok(Err(format!(
                        "record {}: campaign {year} differs from record {seq}",
                        record.seq
                    )));
                }
                continue;
            }
            records.push((year, text, record.seq));
        }
    }
    Ok(Ok(ChainCampaigns { records }))
}

/// Replays an export into an empty in-memory ledger: checks the chain, applies
/// each record's command with its time and caller, and requires the same
/// reply and the same record hash. Errors name the first record that differs.
///
/// The rules come from the chain: its `record_campaign` records (a first
/// pass reads them). The export's header must then list exactly the same
/// campaigns, or the replay fails naming the campaign's record. A chain
/// without campaign records (written before they existed) is replayed with
/// the header's campaigns, which nothing in the chain can check.
pub fn replay<R: Read + Seek>(mut input: R) -> Result<Result<Replayed, String>, Error> {
    let chain = match read_chain_campaigns(&mut input)? {
        Ok(chain) => chain,
        Err(why) => return Ok(Err(why)),
    };
    input.seek(SeekFrom::Start(0))?;
    let (mut reader, header_texts) = ExportReader::new(input)?;
    let header = meta::parse_campaigns(&header_texts)?;
    let campaigns = if chain.records.is_empty() {
        header
    } else {
        let mut campaigns = Vec::new();
        for (year, text, seq) in &chain.records {
            let sealed = Campaign::from_toml(text).expect("parsed in the first pass");
            match header.iter().find(|campaign| campaign.year == *year) {
                Some(listed) if *listed == sealed => {}
                Some(_) => {
                    return Ok(Err(format!(
                    "record {seq}: campaign {year} in the export's header differs from this record"
                )))
                }
                None => {
                    return Ok(Err(format!(
                        "record {seq}: campaign {year} is missing from the export's header"
                    )))
                }
            }
            campaigns.push(sealed);
        }
        if let Some(extra) = header.iter().find(|listed| {
            !chain
                .records
                .iter()
                .any(|(year, _, _)| *year == listed.year)
        }) {
            return Ok(Err(format!(
                "the export's header lists campaign {}, which no record of the chain holds",
                extra.year
            )));
        }
        campaigns
    };
    let campaigns = Campaigns::new(campaigns)
        .map_err(|why| Error::Corrupt(format!("export campaigns: {why}")))?;
    let config = LedgerConfig {
        campaigns,
        // Replay sees only hashes, never ID numbers: the secret is not needed.
        secret: PersonSecret([0; 32]),
        clock: Arc::new(ManualClock::new(Timestamp(0))),
    };
    let ledger = Ledger::open(config, Arc::new(MemoryJournal::default()))?;
    let mut verifier = ChainVerifier::default();
    let mut records = 0;
    while let Some(entry) = reader.next_entry()? {
        let record = match verifier.check(&entry) {
            Ok(record) => record,
            Err(why) => return Ok(Err(why)),
        };
        if let Err(why) = ledger.replay(&record, &verifier.prev_hash) {
            return Ok(Err(why));
        }
        records += 1;
    }
    let (_, _, state_digest) = ledger.head();
    Ok(Ok(Replayed {
        records,
        state_digest,
        ledger,
    }))
}
