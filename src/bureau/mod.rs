//! The bureau's paperwork: the progress report (attachment 1) rendered from
//! `stats`, and the institution form (attachment 2) imported as requests.

pub mod import;
pub mod report;
