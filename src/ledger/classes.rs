//! The classes institutions opened, held in memory: found by institution
//! and code when a redeem names one, and by handle when an enrolled voucher
//! checks in (a packed voucher keeps its class as a 4-byte handle).

use std::collections::HashMap;
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
    by_code: HashMap<(InstitutionCode, String), ClassHandle>,
    /// Classes opened per institution.
    opened: HashMap<InstitutionCode, u32>,
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
        let handle = *index.by_code.get(&(institution, code.to_owned()))?;
        Some((handle, index.list[handle.0 as usize - 1].clone()))
    }

    pub fn get(&self, handle: ClassHandle) -> Arc<Class> {
        self.0.read().list[handle.0 as usize - 1].clone()
    }

    /// How many classes `institution` opened.
    pub fn opened_by(&self, institution: InstitutionCode) -> u32 {
        self.0.read().opened.get(&institution).copied().unwrap_or(0)
    }

    /// Adds a class not yet held; returns its handle.
    pub fn insert(&self, class: Class) -> ClassHandle {
        let mut index = self.0.write();
        let key = (class.institution, class.code.as_str().to_owned());
        assert!(
            !index.by_code.contains_key(&key),
            "a class is opened once (the rules refuse class_exists)"
        );
        let handle =
            ClassHandle(u32::try_from(index.list.len() + 1).expect("class handles fit u32"));
        *index.opened.entry(class.institution).or_default() += 1;
        index.list.push(Arc::new(class));
        index.by_code.insert(key, handle);
        handle
    }
}
