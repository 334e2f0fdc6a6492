//! The fuzz targets link RocksDB like every build (Debian's librocksdb, see
//! `.cargo/config.toml`); a static archive instead (`ROCKSDB_STATIC=1`) would
//! also need the C++ runtime named here.
fn main() {
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
