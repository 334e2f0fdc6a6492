//! The domain: ids, enumerations, campaigns, records and the rules of
//! DOMAIN.md. Everything here is pure: no I/O, no OS clock, no threads.

pub mod campaign;
pub mod command;
pub mod enums;
pub mod geo;
pub mod ids;
pub mod op;
pub mod records;
pub mod rules;
pub mod time;
