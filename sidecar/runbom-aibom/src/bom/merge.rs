//! Several declared BOMs as one: a directory of BOM files (one per agent or team, e.g. a
//! mounted ConfigMap each) judged together, each agent only against its own file.
//!
//! Every `bom-ref` is prefixed with its file's name (`team-a/bom.cdx.json#model-gpt`), so
//! refs of different files never meet; an agent whose file declares no dependencies for it
//! may use every component of its own file and nothing of the others'.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use super::model::{DeclaredBom, Kind};

/// `boms` (file label → BOM) merged into one, named `source`.
#[must_use]
pub fn merge(source: &str, boms: &BTreeMap<String, Arc<DeclaredBom>>) -> DeclaredBom {
    let mut out = DeclaredBom::empty(source);
    let mut serials = Vec::new();
    for (label, bom) in boms {
        let p = |r: &str| format!("{label}#{r}");
        serials.push(bom.serial_number.clone());
        out.agents.extend(bom.agents.iter().cloned().map(|mut a| {
            a.bom_ref = p(&a.bom_ref);
            a
        }));
        out.models.extend(bom.models.iter().cloned().map(|mut m| {
            m.bom_ref = p(&m.bom_ref);
            m
        }));
        for (to, from) in [
            (&mut out.tools, &bom.tools),
            (&mut out.services, &bom.services),
        ] {
            to.extend(from.iter().cloned().map(|mut s| {
                s.bom_ref = p(&s.bom_ref);
                s
            }));
        }
        out.data.extend(bom.data.iter().cloned().map(|mut d| {
            d.bom_ref = p(&d.bom_ref);
            d
        }));
        out.programs
            .extend(bom.programs.iter().cloned().map(|mut x| {
                x.bom_ref = p(&x.bom_ref);
                x
            }));
        out.identities
            .extend(bom.identities.iter().cloned().map(|mut i| {
                i.bom_ref = p(&i.bom_ref);
                i
            }));
        out.mcp_servers
            .extend(bom.mcp_servers.iter().cloned().map(|mut m| {
                m.bom_ref = p(&m.bom_ref);
                for (_, tool_ref) in &mut m.tools {
                    *tool_ref = p(tool_ref);
                }
                m
            }));
        for (r, deps) in &bom.depends_on {
            out.depends_on
                .insert(p(r), deps.iter().map(|d| p(d)).collect());
        }
        let own: Vec<String> = bom
            .components()
            .filter(|(kind, _, _)| *kind != Kind::Agent)
            .map(|(_, r, _)| p(r))
            .collect();
        for a in &bom.agents {
            out.depends_on
                .entry(p(&a.bom_ref))
                .or_insert_with(|| own.clone());
        }
    }
    out.serial_number = serials.join(",");
    out.index();
    out
}

/// The BOM files of directory `dir`: its `*.json` files and those of its subdirectories one
/// level down (a ConfigMap mounted per subdirectory), hidden entries (a ConfigMap's `..data`)
/// left out; each with its label, its path relative to `dir`.
#[must_use]
pub fn files(dir: &std::path::Path) -> Vec<(String, PathBuf)> {
    let visible = |e: &std::fs::DirEntry| !e.file_name().to_string_lossy().starts_with('.');
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten().filter(visible) {
        let path = e.path();
        if path.is_dir() {
            let Ok(inner) = std::fs::read_dir(&path) else {
                continue;
            };
            for f in inner.flatten().filter(visible) {
                let file = f.path();
                if file.is_file() && file.extension().is_some_and(|x| x == "json") {
                    let label = format!(
                        "{}/{}",
                        e.file_name().to_string_lossy(),
                        f.file_name().to_string_lossy()
                    );
                    out.push((label, file));
                }
            }
        } else if path.is_file() && path.extension().is_some_and(|x| x == "json") {
            out.push((e.file_name().to_string_lossy().into_owned(), path));
        }
    }
    out.sort();
    out
}
