//! Builds the eBPF object with the toolchain pinned in `ebpf/rust-toolchain.toml` (aya-build
//! runs `rustup run <toolchain> cargo build --target bpfel-unknown-none -Z build-std=core`).

use std::{fs, path::Path};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    // Read at run time, not with `env!`: cargo may reuse this compiled script for another
    // checkout that shares the target directory (the demo-from-a-fresh-clone test does).
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = Path::new(&manifest_dir).join("../../ebpf");
    let toolchain_file = root.join("rust-toolchain.toml");
    let pinned = fs::read_to_string(&toolchain_file)
        .with_context(|| format!("reading {}", toolchain_file.display()))?;
    let channel = pinned
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|rest| rest.split('"').nth(1))
        .ok_or_else(|| anyhow!("{}: no `channel = \"...\"` line", toolchain_file.display()))?
        .to_owned();
    println!("cargo:rerun-if-changed={}", toolchain_file.display());
    // aya-build watches the eBPF crate; the shared records live beside it.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("runbom-common/src").display()
    );

    let ebpf_dir = root.join("runbom-ebpf");
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "runbom-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&channel),
    )
}
