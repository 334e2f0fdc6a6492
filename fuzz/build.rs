//! The fuzz targets link the RocksDB archive an ordinary build already
//! compiled (`ROCKSDB_LIB_DIR`, `ROCKSDB_STATIC=1`; see the README's
//! "Fuzzing" section); a prebuilt archive needs the C++ runtime named here.
fn main() {
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
