//! The daemon's frame reader (`reading::read_frame`) on a stream handing its
//! bytes out in fuzzer-chosen pieces; the properties are in
//! `voucherd_load::frame_reading::check_frame_reading`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| voucherd_load::properties::check_frame_reading(data));
