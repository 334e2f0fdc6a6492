//! Campaigns as configuration: a year's deadline, use limit, goals and districts.
//!
//! The embedded default is the 2021 notice (`ops/campaigns/2021.toml`) moved to
//! the next 30 November still to come; other years load from a TOML file.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, TimeZone};
use serde::{Deserialize, Serialize};

use super::ids::DistrictCode;
use super::time::Timestamp;
use crate::limits::DISTRICTS_PER_CAMPAIGN_MAX;

/// The 2021 campaign file, embedded so the daemon runs with no files at all.
pub const CAMPAIGN_2021_TOML: &str = include_str!("../../ops/campaigns/2021.toml");

/// One district of a campaign (attachment 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct District {
    pub code: DistrictCode,
    pub name: String,
    /// Vouchers this district should see used this year.
    pub target: u64,
}

/// One year's rules and figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Campaign {
    pub year: u16,
    pub name: String,
    /// Vouchers are valid through this instant, inclusive.
    pub deadline: Timestamp,
    /// Offset of the local calendar (check-in sessions are local days), seconds.
    pub utc_offset_s: i32,
    pub uses_per_person_max: u8,
    pub issued_goal: u64,
    pub used_goal: u64,
    pub districts: Vec<District>,
    district_index: HashMap<DistrictCode, usize>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignFile {
    year: u16,
    name: String,
    deadline: String,
    utc_offset_hours: i8,
    uses_per_person_max: u8,
    issued_goal: u64,
    used_goal: u64,
    districts: Vec<District>,
}

impl Campaign {
    /// Parses and checks a campaign file.
    pub fn from_toml(text: &str) -> Result<Campaign, String> {
        let file: CampaignFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let deadline = DateTime::parse_from_rfc3339(&file.deadline)
            .map_err(|e| format!("deadline {:?}: {e}", file.deadline))?;
        if deadline.year() != i32::from(file.year) {
            return Err(format!(
                "deadline {} is not in the campaign year {}",
                file.deadline, file.year
            ));
        }
        if !(-12..=14).contains(&file.utc_offset_hours) {
            return Err("utc_offset_hours must be within -12..=14".into());
        }
        if file.uses_per_person_max == 0 {
            return Err("uses_per_person_max must be at least 1".into());
        }
        Campaign::new(
            file.year,
            file.name,
            Timestamp(deadline.timestamp()),
            i32::from(file.utc_offset_hours) * 3600,
            file.uses_per_person_max,
            file.issued_goal,
            file.used_goal,
            file.districts,
        )
    }

    /// The campaign as a file `from_toml` reads back to the same campaign.
    pub fn to_toml(&self) -> String {
        let file = CampaignFile {
            year: self.year,
            name: self.name.clone(),
            deadline: self.deadline_text(),
            utc_offset_hours: i8::try_from(self.utc_offset_s / 3600).expect("checked on load"),
            uses_per_person_max: self.uses_per_person_max,
            issued_goal: self.issued_goal,
            used_goal: self.used_goal,
            districts: self.districts.clone(),
        };
        toml::to_string(&file).expect("campaigns serialise")
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        year: u16,
        name: String,
        deadline: Timestamp,
        utc_offset_s: i32,
        uses_per_person_max: u8,
        issued_goal: u64,
        used_goal: u64,
        districts: Vec<District>,
    ) -> Result<Campaign, String> {
        if districts.is_empty() || districts.len() > DISTRICTS_PER_CAMPAIGN_MAX {
            return Err(format!(
                "a campaign has 1 to {DISTRICTS_PER_CAMPAIGN_MAX} districts"
            ));
        }
        let mut district_index = HashMap::new();
        for (position, district) in districts.iter().enumerate() {
            if district_index.insert(district.code, position).is_some() {
                return Err(format!("district {} is listed twice", district.code));
            }
        }
        Ok(Campaign {
            year,
            name,
            deadline,
            utc_offset_s,
            uses_per_person_max,
            issued_goal,
            used_goal,
            districts,
            district_index,
        })
    }

    /// The embedded default: the 2021 rules and figures applied to the next
    /// deadline (same month, day and time) that is still to come at `now`.
    pub fn default_for(now: Timestamp) -> Campaign {
        let base = Campaign::from_toml(CAMPAIGN_2021_TOML).expect("the embedded campaign is valid");
        let offset = FixedOffset::east_opt(base.utc_offset_s).expect("offset checked on load");
        let base_deadline = offset
            .timestamp_opt(base.deadline.0, 0)
            .single()
            .expect("deadline is a valid instant");
        let now_local = offset
            .timestamp_opt(now.0, 0)
            .single()
            .expect("clock reads a valid instant");
        let mut year = now_local.year();
        loop {
            let deadline = base_deadline
                .with_year(year)
                .expect("30 November exists every year");
            if deadline.timestamp() >= now.0 {
                let mut campaign = base.clone();
                campaign.year = u16::try_from(year).expect("campaign years fit u16");
                campaign.deadline = Timestamp(deadline.timestamp());
                campaign.name = format!("{year} campaign on the 2021 notice's rules and figures");
                return campaign;
            }
            year += 1;
        }
    }

    pub fn district(&self, code: DistrictCode) -> Option<&District> {
        self.district_index.get(&code).map(|&i| &self.districts[i])
    }

    /// True while vouchers of this campaign may be issued, claimed and used.
    pub fn is_open(&self, now: Timestamp) -> bool {
        now <= self.deadline
    }

    /// The deadline as local RFC 3339 text, for messages and reports.
    pub fn deadline_text(&self) -> String {
        self.deadline.local_rfc3339(self.utc_offset_s)
    }
}

/// The campaigns a ledger knows, one per year; the newest is the current one.
#[derive(Clone, Debug)]
pub struct Campaigns {
    by_year: Vec<Campaign>,
}

impl Campaigns {
    pub fn new(mut campaigns: Vec<Campaign>) -> Result<Campaigns, String> {
        if campaigns.is_empty() {
            return Err("at least one campaign is needed".into());
        }
        campaigns.sort_by_key(|c| c.year);
        if campaigns.windows(2).any(|w| w[0].year == w[1].year) {
            return Err("two campaigns for the same year".into());
        }
        Ok(Campaigns { by_year: campaigns })
    }

    pub fn current(&self) -> &Campaign {
        self.by_year.last().expect("never empty")
    }

    pub fn year(&self, year: u16) -> Option<&Campaign> {
        self.by_year.iter().find(|c| c.year == year)
    }

    pub fn all(&self) -> &[Campaign] {
        &self.by_year
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp(DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp())
    }

    #[test]
    fn the_2021_file_carries_attachment_1() {
        let campaign = Campaign::from_toml(CAMPAIGN_2021_TOML).unwrap();
        assert_eq!(campaign.year, 2021);
        assert_eq!(campaign.districts.len(), 41);
        assert_eq!(
            campaign.districts.iter().map(|d| d.target).sum::<u64>(),
            120_000
        );
        assert_eq!(campaign.uses_per_person_max, 3);
        assert_eq!(campaign.deadline, at("2021-11-30T23:59:59+08:00"));
        let wanzhou = campaign.district("500101".parse().unwrap()).unwrap();
        assert_eq!((wanzhou.name.as_str(), wanzhou.target), ("万州区", 7000));
        assert!(campaign.district("LJXQ".parse().unwrap()).is_some());
    }

    #[test]
    fn default_moves_to_the_next_deadline_to_come() {
        let before = Campaign::default_for(at("2026-11-29T09:00:00+08:00"));
        assert_eq!(before.year, 2026);
        assert_eq!(before.deadline, at("2026-11-30T23:59:59+08:00"));
        let last_second = Campaign::default_for(at("2026-11-30T23:59:59+08:00"));
        assert_eq!(last_second.year, 2026);
        let after = Campaign::default_for(at("2026-12-01T00:00:00+08:00"));
        assert_eq!(after.year, 2027);
        assert_eq!(after.deadline, at("2027-11-30T23:59:59+08:00"));
        assert_eq!(after.districts.len(), 41);
    }

    #[test]
    fn campaigns_round_trip_through_toml() {
        let campaign = Campaign::default_for(at("2026-11-29T09:00:00+08:00"));
        assert_eq!(Campaign::from_toml(&campaign.to_toml()).unwrap(), campaign);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let bad_year = CAMPAIGN_2021_TOML.replace("year = 2021", "year = 2022");
        assert!(Campaign::from_toml(&bad_year)
            .unwrap_err()
            .contains("not in the campaign year"));
        let twice = format!(
            "{CAMPAIGN_2021_TOML}\n[[districts]]\ncode = \"500101\"\nname = \"x\"\ntarget = 1\n"
        );
        assert!(Campaign::from_toml(&twice)
            .unwrap_err()
            .contains("listed twice"));
        assert!(Campaign::from_toml("year = 2021").is_err());
    }
}
