//! The ledger on arbitrary (role, operation) sequences, six bytes each; the
//! properties are in `voucherd_load::properties::check_ledger_operations`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| voucherd_load::properties::check_ledger_operations(data));
