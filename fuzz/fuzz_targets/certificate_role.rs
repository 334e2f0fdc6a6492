//! The client certificate role parser (`tls::role_of`) on arbitrary bytes;
//! the properties are in `voucherd_load::properties::check_certificate_role`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| voucherd_load::properties::check_certificate_role(data));
