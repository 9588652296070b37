//! `runbom bom observed` and `runbom bom diff`: the runtime BOM from exported OTLP/JSON, and
//! its comparison with the declared one.

use std::{path::Path, process::ExitCode};

use anyhow::{Context as _, Result};
use runbom_aibom::{DeclaredBom, diff::diff, endpoint::Endpoint, observed::Inventory};

/// Writes the CycloneDX 1.6 BOM of what `from` (a file exporter's directory) shows.
pub fn observed(from: &Path, out: Option<&Path>, ignore: &[String]) -> Result<()> {
    let ignore = ignore
        .iter()
        .map(|e| Endpoint::parse(e).map_err(|why| anyhow::anyhow!("--ignore: {why}")))
        .collect::<Result<Vec<_>>>()?;
    let mut inventory = Inventory::new(ignore);
    inventory.read_dir(from)?;
    let doc = inventory.to_cyclonedx(&from.display().to_string());
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// Prints what is undeclared and what is unused; exit status 1 when anything is undeclared.
pub fn diff_cmd(declared: &Path, observed: &Path, json: bool) -> Result<ExitCode> {
    let decl = DeclaredBom::from_file(declared)?;
    let text = std::fs::read_to_string(observed)
        .with_context(|| format!("cannot read {}", observed.display()))?;
    let raw: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", observed.display()))?;
    let obs = DeclaredBom::parse(&text, &observed.display().to_string())?;
    let d = diff(&decl, &obs, &raw);
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", d.text());
    }
    Ok(if d.undeclared.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
