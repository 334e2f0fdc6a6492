//! `voucherctl`'s JSON line parser (`ctl::parse_line`) on arbitrary bytes;
//! the properties are in `voucherd_load::properties`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| voucherd_load::properties::check_ctl_line(data));
