//! The classes institutions opened, held in memory: found by institution
//! and code when a redeem names one, and by handle when an enrolled voucher
//! checks in (a packed voucher keeps its class as a 4-byte handle).

use hashbrown::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::domain::ids::InstitutionCode;
use crate::domain::records::Class;

/// A class's place in the index, never 0 (a packed voucher's 0 is "none").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassHandle(u32);

impl ClassHandle {
    /// The handle a packed voucher stores, 0 for none.
    pub fn to_packed(handle: Option<ClassHandle>) -> u32 {
        handle.map_or(0, |handle| handle.0)
    }

    pub fn from_packed(packed: u32) -> Option<ClassHandle> {
        (packed != 0).then_some(ClassHandle(packed))
    }
}

#[derive(Default)]
struct Index {
    /// Every class, in the order opened; handle `n` is `list[n - 1]`.
    list: Vec<Arc<Class>>,
    /// Each institution's classes by code.
    by_institution: HashMap<InstitutionCode, HashMap<String, ClassHandle>>,
}

/// Classes never change once opened, so lookups hand out shared copies.
/// Opening takes the institution's write lock first (`Ledger::open_class`),
/// so a redeem that holds the institution's read lock sees a stable set.
#[derive(Default)]
pub struct Classes(RwLock<Index>);

impl Classes {
    /// The class `code` of `institution`, if opened.
    pub fn find(
        &self,
        institution: InstitutionCode,
        code: &str,
    ) -> Option<(ClassHandle, Arc<Class>)> {
        let index = self.0.read();
        let handle = *index.by_institution.get(&institution)?.get(code)?;
        Some((handle, index.list[handle.0 as usize - 1].clone()))
    }

    pub fn get(&self, handle: ClassHandle) -> Arc<Class> {
        self.0.read().list[handle.0 as usize - 1].clone()
    }

    /// How many classes `institution` opened.
    pub fn opened_by(&self, institution: InstitutionCode) -> u32 {
        let index = self.0.read();
        index.by_institution.get(&institution).map_or(0, |classes| {
            u32::try_from(classes.len()).expect("classes per institution are bounded")
        })
    }

    /// Adds a class not yet held; returns its handle.
    pub fn insert(&self, class: Class) -> ClassHandle {
        let mut index = self.0.write();
        let handle =
            ClassHandle(u32::try_from(index.list.len() + 1).expect("class handles fit u32"));
        let code = class.code.as_str().to_owned();
        let institution = class.institution;
        index.list.push(Arc::new(class));
        let previous = index
            .by_institution
            .entry(institution)
            .or_default()
            .insert(code, handle);
        assert!(
            previous.is_none(),
            "a class is opened once (the rules refuse class_exists)"
        );
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::enums::{ClassMode, Kind};
    use crate::domain::time::Timestamp;

    fn class(institution: u32, code: &str) -> Class {
        Class {
            institution: InstitutionCode(institution),
            code: code.parse().expect("a class code"),
            kind: Kind::HrServices,
            first_day: 1,
            last_day: 2,
            mode: ClassMode::Online,
            sites: Vec::new(),
            opened_by: "op-1".parse().expect("an operator"),
            opened_at: Timestamp(0),
        }
    }

    /// Handles start at 1 (0 is a packed voucher's "none") and find the
    /// class they were given for; a code is per institution.
    #[test]
    fn classes_are_found_by_institution_and_code_and_by_handle() {
        let classes = Classes::default();
        let first = classes.insert(class(5_000_001, "电工"));
        let second = classes.insert(class(5_000_002, "电工"));
        assert_eq!(ClassHandle::to_packed(Some(first)), 1);
        assert_eq!(ClassHandle::from_packed(0), None);
        assert_eq!(ClassHandle::from_packed(2), Some(second));
        let (found, held) = classes
            .find(InstitutionCode(5_000_002), "电工")
            .expect("opened");
        assert_eq!(found, second);
        assert_eq!(held.institution, InstitutionCode(5_000_002));
        assert_eq!(classes.get(first).institution, InstitutionCode(5_000_001));
        assert!(classes.find(InstitutionCode(5_000_001), "焊工").is_none());
        assert!(classes.find(InstitutionCode(5_000_003), "电工").is_none());
        assert_eq!(classes.opened_by(InstitutionCode(5_000_001)), 1);
        assert_eq!(classes.opened_by(InstitutionCode(5_000_003)), 0);
    }
}
