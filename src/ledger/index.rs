//! The voucher and person indexes, packed so tens of millions of vouchers fit
//! in memory: vouchers in dense per-shard chunks found by their sequential id,
//! persons interned once per (holder, year) and referred to by a 4-byte handle.

use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::domain::enums::{Category, Channel, Kind, VoucherState};
use crate::domain::ids::{DistrictCode, InstitutionCode, PersonKey, VoucherId};
use crate::domain::records::{PersonYear, Voucher};
use crate::limits::{INDEX_SHARDS, VOUCHER_ID_MAX};

use super::classes::ClassHandle;

/// Slots per chunk of a voucher shard. A shard grows a chunk at a time, so at
/// most one partly used chunk per shard is memory held ahead of use.
const CHUNK_SLOTS: usize = 1024;

/// Every district a campaign names, each known by its place in this table.
pub struct Districts(Vec<DistrictCode>);

impl Districts {
    pub fn new(mut codes: Vec<DistrictCode>) -> Districts {
        codes.sort();
        codes.dedup();
        assert!(codes.len() <= usize::from(u16::MAX), "district table");
        Districts(codes)
    }

    pub fn index(&self, code: DistrictCode) -> Option<u16> {
        self.0.binary_search(&code).ok().map(|i| i as u16)
    }

    fn code(&self, index: u16) -> DistrictCode {
        self.0[usize::from(index)]
    }
}

/// A person-year's place in the person index: shard in the low 8 bits, the
/// entry within the shard above them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PersonHandle(u32);

const _: () = assert!(
    INDEX_SHARDS == 256,
    "a person handle keeps its shard in 8 bits"
);

impl PersonHandle {
    fn new(shard: usize, entry: usize) -> PersonHandle {
        assert!(
            entry < 1 << 24,
            "more than 16 million person-years in one shard"
        );
        PersonHandle((entry as u32) << 8 | shard as u32)
    }

    pub fn shard(self) -> usize {
        (self.0 & 0xff) as usize
    }

    pub fn entry(self) -> usize {
        (self.0 >> 8) as usize
    }
}

/// A voucher as memory holds it (40 bytes): the holder as a handle, districts
/// as indexes into `Districts`, the class it is enrolled in as a handle into
/// `Classes` (0: none), amounts as u32 (`FACE_VALUE_FEN_MAX` fits), and
/// optional fields behind flag bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed {
    holder: PersonHandle,
    face_value_fen: u32,
    settled_fen: u32,
    institution: u32,
    class: u32,
    checkins: u32,
    last_checkin_day: i32,
    year: u16,
    district: u16,
    institution_district: u16,
    kind: Kind,
    category: Category,
    channel: Channel,
    state: VoucherState,
    score: u8,
    flags: u8,
}

const CLAIMED: u8 = 1;
const AT_INSTITUTION: u8 = 2;
const CHECKED_IN: u8 = 4;
const SCORED: u8 = 8;
const SETTLED: u8 = 16;

/// Why a voucher cannot be packed (only read-back records can fail).
pub type PackError = String;

impl Packed {
    pub fn holder(&self) -> PersonHandle {
        self.holder
    }

    pub fn institution(&self) -> Option<InstitutionCode> {
        (self.flags & AT_INSTITUTION != 0).then_some(InstitutionCode(self.institution))
    }

    pub fn year(&self) -> u16 {
        self.year
    }

    /// The class the voucher is enrolled in (`None`: not enrolled, or
    /// redeemed with a free-text class).
    pub fn class(&self) -> Option<ClassHandle> {
        ClassHandle::from_packed(self.class)
    }

    pub fn with_class(self, class: Option<ClassHandle>) -> Packed {
        Packed {
            class: ClassHandle::to_packed(class),
            ..self
        }
    }

    pub fn state(&self) -> VoucherState {
        self.state
    }

    pub fn pack(
        voucher: &Voucher,
        holder: PersonHandle,
        districts: &Districts,
    ) -> Result<Packed, PackError> {
        let district = |code: DistrictCode| {
            districts
                .index(code)
                .ok_or_else(|| format!("district {code} is in no campaign"))
        };
        let amount = |fen: u64| {
            u32::try_from(fen).map_err(|_| format!("{fen} fen is more than a voucher holds"))
        };
        let mut flags = 0;
        let mut set = |flag: u8, on: bool| {
            if on {
                flags |= flag;
            }
        };
        set(CLAIMED, voucher.claimed);
        set(AT_INSTITUTION, voucher.institution.is_some());
        set(CHECKED_IN, voucher.last_checkin_day.is_some());
        set(SCORED, voucher.score.is_some());
        set(SETTLED, voucher.settled_fen.is_some());
        let (institution, institution_district) = match voucher.institution {
            Some((code, at)) => (code.0, district(at)?),
            None => (0, 0),
        };
        Ok(Packed {
            holder,
            face_value_fen: amount(voucher.face_value_fen)?,
            settled_fen: amount(voucher.settled_fen.unwrap_or(0))?,
            institution,
            class: 0,
            checkins: voucher.checkins,
            last_checkin_day: voucher.last_checkin_day.unwrap_or(0),
            year: voucher.year,
            district: district(voucher.district)?,
            institution_district,
            kind: voucher.kind,
            category: voucher.category,
            channel: voucher.channel,
            state: voucher.state,
            score: voucher.score.unwrap_or(0),
            flags,
        })
    }

    /// The voucher the rules see, given its id and its holder's key.
    pub fn unpack(&self, id: VoucherId, holder: PersonKey, districts: &Districts) -> Voucher {
        let has = |flag: u8| self.flags & flag != 0;
        Voucher {
            id,
            holder,
            year: self.year,
            kind: self.kind,
            category: self.category,
            channel: self.channel,
            district: districts.code(self.district),
            face_value_fen: u64::from(self.face_value_fen),
            state: self.state,
            institution: has(AT_INSTITUTION).then(|| {
                (
                    InstitutionCode(self.institution),
                    districts.code(self.institution_district),
                )
            }),
            claimed: has(CLAIMED),
            checkins: self.checkins,
            last_checkin_day: has(CHECKED_IN).then_some(self.last_checkin_day),
            score: has(SCORED).then_some(self.score),
            settled_fen: has(SETTLED).then_some(u64::from(self.settled_fen)),
        }
    }
}

/// One shard of vouchers: ids `shard + INDEX_SHARDS * slot`, in chunks made
/// as they are first needed (so a gap in the ids costs at most its chunks).
#[derive(Default)]
pub struct VoucherShard {
    chunks: Vec<Option<Box<[Option<Packed>]>>>,
    len: usize,
}

/// The shard a voucher id lives in.
pub fn shard_of(id: VoucherId) -> usize {
    (id.0 % INDEX_SHARDS as u64) as usize
}

fn slot_of(id: VoucherId) -> usize {
    (id.0 / INDEX_SHARDS as u64) as usize
}

impl VoucherShard {
    pub fn get(&self, id: VoucherId) -> Option<&Packed> {
        let slot = slot_of(id);
        self.chunks
            .get(slot / CHUNK_SLOTS)?
            .as_ref()?
            .get(slot % CHUNK_SLOTS)?
            .as_ref()
    }

    /// Stores a voucher; its id must be at most `VOUCHER_ID_MAX`.
    pub fn set(&mut self, id: VoucherId, packed: Packed) {
        assert!(
            id.0 <= VOUCHER_ID_MAX,
            "voucher ids are checked before they are stored"
        );
        let slot = slot_of(id);
        let chunk = slot / CHUNK_SLOTS;
        if self.chunks.len() <= chunk {
            self.chunks.resize_with(chunk + 1, || None);
        }
        let chunk =
            self.chunks[chunk].get_or_insert_with(|| vec![None; CHUNK_SLOTS].into_boxed_slice());
        let old = chunk[slot % CHUNK_SLOTS].replace(packed);
        self.len += usize::from(old.is_none());
    }

    /// Every voucher of the shard with its id, in id order.
    pub fn iter(&self, shard: usize) -> impl Iterator<Item = (VoucherId, &Packed)> {
        self.chunks
            .iter()
            .enumerate()
            .filter_map(|(c, chunk)| Some((c, chunk.as_ref()?)))
            .flat_map(move |(c, chunk)| {
                chunk.iter().enumerate().filter_map(move |(i, packed)| {
                    let slot = (c * CHUNK_SLOTS + i) as u64;
                    Some((
                        VoucherId(slot * INDEX_SHARDS as u64 + shard as u64),
                        packed.as_ref()?,
                    ))
                })
            })
    }
}

pub struct Vouchers {
    shards: Vec<RwLock<VoucherShard>>,
}

fn empty_shards<T: Default>() -> Vec<RwLock<T>> {
    (0..INDEX_SHARDS).map(|_| RwLock::default()).collect()
}

impl Default for Vouchers {
    fn default() -> Self {
        Vouchers {
            shards: empty_shards(),
        }
    }
}

impl Vouchers {
    pub fn of(&self, id: VoucherId) -> &RwLock<VoucherShard> {
        &self.shards[shard_of(id)]
    }

    /// Every shard, in a fixed order (lock them in this order only).
    pub fn all(&self) -> &[RwLock<VoucherShard>] {
        &self.shards
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().len).sum()
    }
}

/// One person-year: who, which year, and their record (`stored` once the
/// journal holds one; a voucher's holder is known before their first claim).
#[derive(Clone, Copy, Debug)]
pub struct PersonEntry {
    pub key: PersonKey,
    pub year: u16,
    pub record: PersonYear,
    pub stored: bool,
}

/// Vouchers a person-year holds up to which they are kept inline.
const HELD_INLINE: usize = 5;

/// The vouchers a person-year holds, in the order they were added, as u32
/// (ids are at most `VOUCHER_ID_MAX`): up to `HELD_INLINE` inline in the
/// 24 bytes of the value, more in one exact heap block, replaced on each
/// addition (a person-year holds a few vouchers).
#[derive(Clone, Debug)]
enum Held {
    Few { len: u8, ids: [u32; HELD_INLINE] },
    Many(Box<[u32]>),
}

impl Default for Held {
    fn default() -> Held {
        Held::Few {
            len: 0,
            ids: [0; HELD_INLINE],
        }
    }
}

impl Held {
    fn ids(&self) -> &[u32] {
        match self {
            Held::Few { len, ids } => &ids[..usize::from(*len)],
            Held::Many(ids) => ids,
        }
    }

    fn push(&mut self, id: VoucherId) {
        let id = u32::try_from(id.0).expect("voucher ids are at most VOUCHER_ID_MAX");
        assert!(
            !self.ids().contains(&id),
            "a voucher is added to its holder once"
        );
        match self {
            Held::Few { len, ids } if usize::from(*len) < HELD_INLINE => {
                ids[usize::from(*len)] = id;
                *len += 1;
            }
            _ => {
                let mut grown = Vec::with_capacity(self.ids().len() + 1);
                grown.extend_from_slice(self.ids());
                grown.push(id);
                *self = Held::Many(grown.into_boxed_slice());
            }
        }
    }
}

/// One shard of persons: entries in insertion order, and a hash table of
/// entry numbers. Person keys are keyed blake3 hashes, so their bytes are
/// already uniformly spread and serve as the hash.
#[derive(Default)]
pub struct PersonShard {
    table: HashTable<u32>,
    entries: Vec<PersonEntry>,
    /// Each entry's vouchers (same positions as `entries`), for
    /// `list_vouchers`.
    vouchers: Vec<Held>,
    /// Entries with a stored record.
    stored: usize,
}

fn person_hash(key: &PersonKey, year: u16) -> u64 {
    u64::from_le_bytes(key.0[8..16].try_into().expect("8 bytes")) ^ u64::from(year)
}

fn person_shard(key: &PersonKey) -> usize {
    usize::from(u16::from_le_bytes([key.0[0], key.0[1]])) % INDEX_SHARDS
}

impl PersonShard {
    pub fn entry(&self, handle: PersonHandle) -> &PersonEntry {
        &self.entries[handle.entry()]
    }

    /// Sets a person-year's record, as the journal now holds it.
    pub fn store(&mut self, handle: PersonHandle, record: PersonYear) {
        let entry = &mut self.entries[handle.entry()];
        self.stored += usize::from(!entry.stored);
        entry.record = record;
        entry.stored = true;
    }

    /// The entry number of (key, year), if interned.
    fn find(&self, key: PersonKey, year: u16) -> Option<usize> {
        let entries = &self.entries;
        self.table
            .find(person_hash(&key, year), |&e| {
                let entry = &entries[e as usize];
                entry.key == key && entry.year == year
            })
            .map(|&e| e as usize)
    }

    /// The handle of (key, year), made with an empty, unstored record if new.
    fn intern(&mut self, shard: usize, key: PersonKey, year: u16) -> PersonHandle {
        if let Some(e) = self.find(key, year) {
            return PersonHandle::new(shard, e);
        }
        let handle = PersonHandle::new(shard, self.entries.len());
        self.entries.push(PersonEntry {
            key,
            year,
            record: PersonYear::default(),
            stored: false,
        });
        self.vouchers.push(Held::default());
        let entries = &self.entries;
        self.table
            .insert_unique(person_hash(&key, year), handle.entry() as u32, |&e| {
                let entry = &entries[e as usize];
                person_hash(&entry.key, entry.year)
            });
        handle
    }

    pub fn entries(&self) -> &[PersonEntry] {
        &self.entries
    }

    /// Notes that a person-year holds a voucher (once per voucher).
    pub fn add_voucher(&mut self, handle: PersonHandle, id: VoucherId) {
        self.vouchers[handle.entry()].push(id);
    }

    /// `add_voucher` by entry number, for start-up, which adds each shard's
    /// vouchers at once (`ledger::recovery`).
    pub fn add_voucher_at(&mut self, entry: usize, id: VoucherId) {
        self.vouchers[entry].push(id);
    }

    /// The vouchers a person-year holds, in the order they were added.
    pub fn vouchers(&self, handle: PersonHandle) -> impl Iterator<Item = VoucherId> + '_ {
        self.vouchers[handle.entry()]
            .ids()
            .iter()
            .map(|&id| VoucherId(id.into()))
    }
}

pub struct Persons {
    shards: Vec<RwLock<PersonShard>>,
}

impl Default for Persons {
    fn default() -> Self {
        Persons {
            shards: empty_shards(),
        }
    }
}

impl Persons {
    /// The handle of (key, year), interned on first sight.
    pub fn intern(&self, key: PersonKey, year: u16) -> PersonHandle {
        let shard = person_shard(&key);
        self.shards[shard].write().intern(shard, key, year)
    }

    pub fn read(&self, handle: PersonHandle) -> RwLockReadGuard<'_, PersonShard> {
        self.shards[handle.shard()].read()
    }

    pub fn write(&self, handle: PersonHandle) -> RwLockWriteGuard<'_, PersonShard> {
        self.shards[handle.shard()].write()
    }

    /// The handle of (key, year) if the person-year was ever seen.
    pub fn find(&self, key: PersonKey, year: u16) -> Option<PersonHandle> {
        let shard = person_shard(&key);
        let entry = self.shards[shard].read().find(key, year)?;
        Some(PersonHandle::new(shard, entry))
    }

    /// The holder key behind a handle (person keys never change once interned).
    pub fn key(&self, handle: PersonHandle) -> PersonKey {
        self.read(handle).entry(handle).key
    }

    /// Every shard, in a fixed order (lock them in this order only).
    pub fn all(&self) -> &[RwLock<PersonShard>] {
        &self.shards
    }

    /// Person-years with a stored record.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().stored).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::enums::VoucherState;

    fn district(code: &str) -> DistrictCode {
        code.parse().expect("a district code")
    }

    /// An issued voucher of the largest face value, in district 500101.
    fn voucher(id: u64) -> Voucher {
        Voucher {
            id: VoucherId(id),
            face_value_fen: 10_000_000,
            ..Voucher::issued_example()
        }
    }

    #[test]
    fn a_voucher_packs_into_40_bytes_and_back_unchanged() {
        assert_eq!(std::mem::size_of::<Option<Packed>>(), 40);
        let districts = Districts::new(vec![district("500101"), district("500102")]);
        let persons = Persons::default();
        let mut full = voucher(1);
        let handle = persons.intern(full.holder, full.year);
        for step in 0..4 {
            match step {
                1 => full.claimed = true,
                2 => {
                    full.state = VoucherState::Redeemed;
                    full.institution = Some((InstitutionCode(9_999_999), district("500102")));
                    full.checkins = 3;
                    full.last_checkin_day = Some(-5);
                }
                3 => {
                    full.state = VoucherState::Settled;
                    full.score = Some(5);
                    full.settled_fen = Some(0);
                }
                _ => {}
            }
            let packed = Packed::pack(&full, handle, &districts).expect("packs");
            assert_eq!(packed.unpack(full.id, full.holder, &districts), full);
        }
    }

    #[test]
    fn packing_refuses_what_does_not_fit() {
        let districts = Districts::new(vec![district("500101")]);
        let handle = Persons::default().intern(PersonKey([7; 32]), 2021);
        let mut big = voucher(1);
        big.face_value_fen = u64::from(u32::MAX) + 1;
        assert!(Packed::pack(&big, handle, &districts).is_err());
        let mut elsewhere = voucher(1);
        elsewhere.district = district("500102");
        assert!(Packed::pack(&elsewhere, handle, &districts).is_err());
    }

    #[test]
    fn vouchers_are_found_by_id_and_listed_in_id_order() {
        let districts = Districts::new(vec![district("500101")]);
        let handle = Persons::default().intern(PersonKey([7; 32]), 2021);
        let vouchers = Vouchers::default();
        let ids = [1u64, 257, 256 * 5000 + 1, 2];
        for id in ids {
            let packed = Packed::pack(&voucher(id), handle, &districts).expect("packs");
            vouchers
                .of(VoucherId(id))
                .write()
                .set(VoucherId(id), packed);
        }
        assert_eq!(vouchers.len(), 4);
        assert!(vouchers
            .of(VoucherId(513))
            .read()
            .get(VoucherId(513))
            .is_none());
        assert!(vouchers
            .of(VoucherId(257))
            .read()
            .get(VoucherId(257))
            .is_some());
        let shard_one: Vec<u64> = vouchers.all()[1]
            .read()
            .iter(1)
            .map(|(id, _)| id.0)
            .collect();
        assert_eq!(shard_one, vec![1, 257, 256 * 5000 + 1]);
    }

    #[test]
    fn a_person_year_is_interned_once() {
        let persons = Persons::default();
        let mut handles = Vec::new();
        for n in 0..5_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_le_bytes());
            key[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
            let key = PersonKey(key);
            let first = persons.intern(key, 2021);
            assert_eq!(persons.intern(key, 2021), first);
            let next_year = persons.intern(key, 2022);
            assert_ne!(next_year, first);
            assert_eq!(persons.key(first), key);
            handles.push(first);
        }
        let mut unique = handles.clone();
        unique.sort_by_key(|h| h.0);
        unique.dedup();
        assert_eq!(unique.len(), handles.len());
        assert_eq!(persons.len(), 0, "nothing is stored yet");
        for handle in &handles[..10] {
            persons.write(*handle).store(*handle, PersonYear::default());
            persons.write(*handle).store(*handle, PersonYear::default());
        }
        assert_eq!(persons.len(), 10);
    }

    #[test]
    fn a_person_year_lists_the_vouchers_it_holds() {
        let persons = Persons::default();
        let key = PersonKey([9; 32]);
        assert_eq!(persons.find(key, 2021), None);
        let handle = persons.intern(key, 2021);
        assert_eq!(persons.find(key, 2021), Some(handle));
        assert_eq!(persons.find(key, 2022), None);
        assert_eq!(persons.read(handle).vouchers(handle).count(), 0);
        let ids = [7, 3, 9, 11, 12, 400, 13, u64::from(u32::MAX)];
        for (n, id) in ids.into_iter().enumerate() {
            persons.write(handle).add_voucher(handle, VoucherId(id));
            // Inline up to HELD_INLINE, then in a heap block: the same list.
            let listed: Vec<u64> = persons.read(handle).vouchers(handle).map(|v| v.0).collect();
            assert_eq!(listed, ids[..=n]);
        }
    }

    /// A person-year's list costs 24 bytes beside its entry, with no heap
    /// block up to `HELD_INLINE` vouchers.
    #[test]
    fn a_short_list_of_vouchers_is_kept_inline() {
        assert_eq!(std::mem::size_of::<Held>(), 24);
        let mut held = Held::default();
        for id in 1..=HELD_INLINE as u64 {
            held.push(VoucherId(id));
        }
        assert!(matches!(held, Held::Few { .. }));
        held.push(VoucherId(99));
        assert!(matches!(held, Held::Many(_)));
    }
}
