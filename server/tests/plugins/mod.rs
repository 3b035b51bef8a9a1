//! Shared by the plugin tests: where the built components are, and a plugin directory made
//! from some of them.

#![allow(dead_code)] // each test file uses part of this

use std::path::{Path, PathBuf};

/// A component built by `scripts/build-plugins` (which `scripts/test` runs first).
pub fn component(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins first (scripts/test does)",
        path.display()
    );
    path
}

/// Copies components into `<data_dir>/plugins/` (where the server looks by default).
pub fn install(data_dir: &Path, names: &[&str]) -> PathBuf {
    let dir = data_dir.join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    for name in names {
        std::fs::copy(component(name), dir.join(format!("{name}.wasm"))).expect("copy component");
    }
    dir
}
