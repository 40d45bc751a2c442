//! Shared build script: link libtorch from the venv with an rpath, so
//! `cargo run` / `cargo test` need no LD_LIBRARY_PATH. torch-sys must be a
//! direct dependency of the crate for DEP_TCH_LIBTORCH_LIB to be set.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
