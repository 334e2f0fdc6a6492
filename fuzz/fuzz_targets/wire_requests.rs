//! The daemon's request frame decoder (`wire::decode_requests`) on arbitrary
//! bytes; the properties are in `voucherd_load::properties`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| voucherd_load::properties::check_request_frame(data));
