//! Reading and replaying an audit export on arbitrary bytes; the properties
//! are in `voucherd_load::properties::check_export_replay`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| voucherd_load::properties::check_export_replay(data));
