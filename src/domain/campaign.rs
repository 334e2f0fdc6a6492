//! Campaigns as configuration: a year's opening and deadline, use limit,
//! goals and districts.
//!
//! The embedded default is the 2021 notice (`ops/campaigns/2021.toml`) moved to
//! the next 30 November still to come; other years load from a TOML file.
//! A campaign is open from its opening to its deadline, both inclusive. The
//! opening is the file's `opens`, or by default the instant after the
//! previous configured year's deadline (one year before its own deadline for
//! the earliest year), so a daemon on defaults always has an open campaign.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, Months, TimeZone};
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
    /// The opening the file gives (`opens`), `None` when it leaves it to the
    /// default (see `opens`).
    configured_opens: Option<Timestamp>,
    /// The opening in force: `configured_opens`, or the default (worked out
    /// by `Campaigns::new` from the previous year's deadline).
    opens: Timestamp,
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
    /// RFC 3339; absent: the default opening (see the module doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    opens: Option<String>,
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
        let opens = match &file.opens {
            Some(text) => {
                let opens = DateTime::parse_from_rfc3339(text)
                    .map_err(|e| format!("opens {text:?}: {e}"))?;
                if opens > deadline {
                    return Err(format!(
                        "opens {text} is after the deadline {}",
                        file.deadline
                    ));
                }
                Some(Timestamp(opens.timestamp()))
            }
            None => None,
        };
        if !(-12..=14).contains(&file.utc_offset_hours) {
            return Err("utc_offset_hours must be within -12..=14".into());
        }
        if file.uses_per_person_max == 0 {
            return Err("uses_per_person_max must be at least 1".into());
        }
        Campaign::new(
            file.year,
            file.name,
            opens,
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
            opens: self
                .configured_opens
                .map(|opens| opens.local_rfc3339(self.utc_offset_s)),
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
        configured_opens: Option<Timestamp>,
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
            configured_opens,
            opens: configured_opens.unwrap_or_else(|| one_year_before(deadline, utc_offset_s)),
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
                campaign.opens = one_year_before(campaign.deadline, campaign.utc_offset_s);
                campaign.name = format!("{year} campaign on the 2021 notice's rules and figures");
                return campaign;
            }
            year += 1;
        }
    }

    pub fn district(&self, code: DistrictCode) -> Option<&District> {
        self.district_index.get(&code).map(|&i| &self.districts[i])
    }

    /// The opening in force: vouchers of this campaign may be issued from
    /// this instant on, inclusive.
    pub fn opens(&self) -> Timestamp {
        self.opens
    }

    /// True from the opening to the deadline, both inclusive: while vouchers
    /// of this campaign may be issued.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.opens <= now && now <= self.deadline
    }

    /// True once the deadline has passed: unfinished vouchers are expired.
    pub fn has_ended(&self, now: Timestamp) -> bool {
        now > self.deadline
    }

    /// The deadline as local RFC 3339 text, for messages and reports.
    pub fn deadline_text(&self) -> String {
        self.deadline.local_rfc3339(self.utc_offset_s)
    }

    /// The opening as local RFC 3339 text, for messages and reports.
    pub fn opens_text(&self) -> String {
        self.opens.local_rfc3339(self.utc_offset_s)
    }
}

/// A campaign for unit tests: the 2021 file moved to `year` (deadline 30
/// November 23:59:59, UTC+8), opening at `opens` (RFC 3339) if given.
#[cfg(test)]
impl Campaign {
    pub(crate) fn example(year: u16, opens: Option<&str>) -> Campaign {
        let mut text = CAMPAIGN_2021_TOML
            .replace("year = 2021", &format!("year = {year}"))
            .replace(
                "2021-11-30T23:59:59+08:00",
                &format!("{year}-11-30T23:59:59+08:00"),
            );
        if let Some(opens) = opens {
            text = text.replace("deadline = ", &format!("opens = \"{opens}\"\ndeadline = "));
        }
        Campaign::from_toml(&text).expect("an example campaign")
    }
}

/// The default opening of the earliest campaign: one year before its deadline
/// (local calendar; 29 February goes to 28 February).
fn one_year_before(deadline: Timestamp, utc_offset_s: i32) -> Timestamp {
    let offset = FixedOffset::east_opt(utc_offset_s).expect("offset checked on load");
    let local = offset
        .timestamp_opt(deadline.0, 0)
        .single()
        .expect("deadline is a valid instant");
    let opens = local
        .checked_sub_months(Months::new(12))
        .expect("a year before a campaign's deadline exists");
    Timestamp(opens.timestamp())
}

/// The campaigns a ledger knows, one per year.
#[derive(Clone, Debug)]
pub struct Campaigns {
    by_year: Vec<Campaign>,
}

impl Campaigns {
    /// Sorts the campaigns by year and works out each default opening: the
    /// instant after the previous configured year's deadline, or for the
    /// earliest year one year before its deadline.
    pub fn new(mut campaigns: Vec<Campaign>) -> Result<Campaigns, String> {
        if campaigns.is_empty() {
            return Err("at least one campaign is needed".into());
        }
        campaigns.sort_by_key(|c| c.year);
        if campaigns.windows(2).any(|w| w[0].year == w[1].year) {
            return Err("two campaigns for the same year".into());
        }
        let mut previous_deadline = None;
        for campaign in &mut campaigns {
            campaign.opens = match (campaign.configured_opens, previous_deadline) {
                (Some(opens), _) => opens,
                (None, Some(Timestamp(deadline))) => Timestamp(deadline + 1),
                (None, None) => one_year_before(campaign.deadline, campaign.utc_offset_s),
            };
            if campaign.opens > campaign.deadline {
                return Err(format!(
                    "the {} campaign would open ({}) after its deadline ({})",
                    campaign.year,
                    campaign.opens_text(),
                    campaign.deadline_text()
                ));
            }
            previous_deadline = Some(campaign.deadline);
        }
        Ok(Campaigns { by_year: campaigns })
    }

    /// The newest campaign loaded, open or not (it may open later). An
    /// `issue` without year goes to `for_issue`, not here.
    pub fn current(&self) -> &Campaign {
        self.by_year.last().expect("never empty")
    }

    /// The campaign open at `now` (the newest, should openings configured
    /// by hand overlap), if any.
    pub fn open_at(&self, now: Timestamp) -> Option<&Campaign> {
        self.by_year.iter().rev().find(|c| c.is_open(now))
    }

    /// The campaign an `issue` without year goes to at `now`: the one open
    /// (`open_at`); when none is, the newest that has opened (it has ended),
    /// else the earliest (none has opened yet). The rules refuse an issue
    /// into a campaign that is not open `expired` (API.md).
    pub fn for_issue(&self, now: Timestamp) -> &Campaign {
        self.open_at(now)
            .or_else(|| self.by_year.iter().rev().find(|c| c.opens <= now))
            .unwrap_or_else(|| self.by_year.first().expect("never empty"))
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

    /// Checks campaign openings: `opens` is read from the file and written
    /// back (absent stays absent); by default a campaign opens the instant
    /// after the previous loaded year's deadline, and the earliest one year
    /// before its own deadline; a campaign is open from its opening to its
    /// deadline, both inclusive; an opening after the deadline is refused.
    /// Before the fix campaigns had no opening: open from the epoch on.
    #[test]
    fn campaigns_open_at_their_opening() {
        let configured = Campaign::example(2027, Some("2027-01-01T00:00:00+08:00"));
        assert_eq!(configured.opens(), at("2027-01-01T00:00:00+08:00"));
        assert!(configured
            .to_toml()
            .contains("opens = \"2027-01-01T00:00:00+08:00\""));
        assert_eq!(
            Campaign::from_toml(&configured.to_toml()).unwrap(),
            configured
        );
        let default = Campaign::example(2026, None);
        assert!(!default.to_toml().contains("opens"));
        assert_eq!(default.opens(), at("2025-11-30T23:59:59+08:00"));
        let campaigns = Campaigns::new(vec![
            Campaign::example(2027, None),
            Campaign::example(2026, None),
            Campaign::example(2028, Some("2028-02-01T00:00:00+08:00")),
        ])
        .unwrap();
        let year = |y| campaigns.year(y).unwrap();
        assert_eq!(year(2026).opens(), at("2025-11-30T23:59:59+08:00"));
        assert_eq!(year(2027).opens(), at("2026-12-01T00:00:00+08:00"));
        assert_eq!(year(2028).opens(), at("2028-02-01T00:00:00+08:00"));
        assert!(!year(2027).is_open(at("2026-11-30T23:59:59+08:00")));
        assert!(year(2027).is_open(at("2026-12-01T00:00:00+08:00")));
        assert!(year(2027).is_open(at("2027-11-30T23:59:59+08:00")));
        assert!(!year(2027).is_open(at("2027-12-01T00:00:00+08:00")));
        assert!(year(2027).has_ended(at("2027-12-01T00:00:00+08:00")));
        let open_year = |now| campaigns.open_at(at(now)).map(|c| c.year);
        assert_eq!(open_year("2026-11-30T23:59:59+08:00"), Some(2026));
        assert_eq!(open_year("2026-12-01T00:00:00+08:00"), Some(2027));
        assert_eq!(open_year("2028-01-15T00:00:00+08:00"), None);
        assert_eq!(open_year("2028-02-01T00:00:00+08:00"), Some(2028));
        let issue_year = |now| campaigns.for_issue(at(now)).year;
        assert_eq!(issue_year("2028-01-15T00:00:00+08:00"), 2027, "ended");
        assert_eq!(issue_year("2020-01-01T00:00:00+08:00"), 2026, "none opened");
        let late = CAMPAIGN_2021_TOML.replace(
            "deadline = ",
            "opens = \"2021-12-01T00:00:00+08:00\"\ndeadline = ",
        );
        assert!(Campaign::from_toml(&late)
            .unwrap_err()
            .contains("after the deadline"));
    }
}
