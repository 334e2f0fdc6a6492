//! The meta table's campaign records and the person-key check value.
//!
//! Each campaign a ledger has run with is kept as its TOML text under
//! `campaign/<year>`, so a restart, a backup check or an auditor's replay
//! applies exactly the rules vouchers were issued under. `person_key_check`
//! holds a keyed hash of a fixed label under the person-key secret (never the
//! key), so a start, a backup or a restore can tell a missing or foreign
//! `person.key` from the one the ledger's person keys were made with.

use crate::domain::campaign::{Campaign, Campaigns};
use crate::domain::ids::PersonSecret;
use crate::error::Error;
use crate::store::journal::{Journal, Table};

/// The meta key of the person-key check value (32 bytes, no version byte).
pub const PERSON_KEY_CHECK: &[u8] = b"person_key_check";
/// What the check value hashes under the key; a version change is a new label.
const PERSON_KEY_CHECK_LABEL: &[u8] = b"voucherd person.key check v1";

/// The check value of a person-key secret: blake3 keyed hash of a fixed label.
/// It reveals nothing of the key and matches one key only.
pub fn person_key_check(secret: &PersonSecret) -> [u8; 32] {
    *blake3::keyed_hash(&secret.0, PERSON_KEY_CHECK_LABEL).as_bytes()
}

/// Prefix of every campaign key in the meta table.
const CAMPAIGN_PREFIX: &[u8] = b"campaign/";

/// The meta key of a year's campaign text.
pub fn campaign_key(year: u16) -> Vec<u8> {
    let mut key = CAMPAIGN_PREFIX.to_vec();
    key.extend_from_slice(year.to_string().as_bytes());
    key
}

/// Prefix of the meta keys saying a campaign is sealed in the audit chain
/// (empty value): `campaign_record/<year>`.
const CAMPAIGN_SEALED_PREFIX: &[u8] = b"campaign_record/";

/// The meta key written with a campaign's `record_campaign` audit record.
pub fn campaign_sealed_key(year: u16) -> Vec<u8> {
    let mut key = CAMPAIGN_SEALED_PREFIX.to_vec();
    key.extend_from_slice(year.to_string().as_bytes());
    key
}

/// The campaign texts recorded in a journal, in year order.
pub fn recorded_campaign_texts(journal: &dyn Journal) -> Result<Vec<String>, Error> {
    let mut campaigns = Vec::new();
    journal.scan(Table::Meta, &mut |key, value| {
        if key.starts_with(CAMPAIGN_PREFIX) {
            campaigns.push(
                String::from_utf8(value.to_vec())
                    .map_err(|_| Error::Corrupt("campaign text is not UTF-8".into()))?,
            );
        }
        Ok(())
    })?;
    Ok(campaigns)
}

/// Parses recorded campaign texts; a text that does not parse is corrupt data.
pub fn parse_campaigns(texts: &[String]) -> Result<Vec<Campaign>, Error> {
    texts
        .iter()
        .map(|text| {
            Campaign::from_toml(text)
                .map_err(|why| Error::Corrupt(format!("recorded campaign: {why}")))
        })
        .collect()
}

/// The campaigns recorded in a journal, as the rules use them.
pub fn recorded_campaigns(journal: &dyn Journal) -> Result<Campaigns, Error> {
    let campaigns = parse_campaigns(&recorded_campaign_texts(journal)?)?;
    Campaigns::new(campaigns).map_err(|why| Error::Corrupt(format!("recorded campaigns: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::MemoryJournal;

    /// Keys sort by year within the prefix, and only campaign keys are read back.
    #[test]
    fn campaign_keys_round_trip_through_the_meta_table() {
        assert_eq!(campaign_key(2021), b"campaign/2021".to_vec());
        let journal = MemoryJournal::default();
        assert!(recorded_campaign_texts(&journal).unwrap().is_empty());
    }

    /// The check value tells keys apart and does not contain the key.
    #[test]
    fn the_person_key_check_depends_on_the_key_and_hides_it() {
        let (a, b) = (PersonSecret([1; 32]), PersonSecret([2; 32]));
        assert_eq!(person_key_check(&a), person_key_check(&a));
        assert_ne!(person_key_check(&a), person_key_check(&b));
        assert_ne!(person_key_check(&a), a.0);
    }
}
