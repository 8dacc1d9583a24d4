//! The fuzz targets' inputs in the normal test suite (stable toolchain, no libFuzzer):
//! every seed (`fuzz/corpus/<target>/seed-*`) and every input that once crashed a target
//! (`fuzz/regressions/<target>/*`, kept when the bug is fixed) goes through the same code
//! as the target (`fuzz/targets.rs`). README, "Fuzzing".

#[path = "../fuzz/targets.rs"]
mod targets;

use std::{fs, path::Path};

/// The files of `dir` whose name starts with `prefix` (none when it does not exist).
fn inputs(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = fs::read(e.path()).expect("readable");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_and_every_kept_crash_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, body) in targets::ALL {
        let seeds = inputs(&root.join("corpus").join(name), "seed-");
        assert!(!seeds.is_empty(), "{name}: no seed in fuzz/corpus/{name}/");
        let kept = inputs(&root.join("regressions").join(name), "");
        for (file, bytes) in seeds.iter().chain(&kept) {
            let run = std::panic::catch_unwind(|| body(bytes));
            assert!(run.is_ok(), "{name}: {file} panicked");
        }
        println!("{name}: {} seeds, {} kept crashes", seeds.len(), kept.len());
    }
}
