//! The declared AI-BOM (`docs/declared-bom.md`): a CycloneDX 1.6/1.7 JSON document read into
//! the components runbom matches against. Errors name the file, the JSON path and the reason:
//! `bom.cdx.json: $.services[3].endpoints[0]: not a URL: ...`.
//!
//! `model`: the components and what judging looks up in them; `parse`: a document read into
//! them, through the checked reads of `json`.

mod json;
pub mod merge;
mod model;
mod parse;
mod read;

pub use json::BomError;
pub(crate) use json::type_name;
pub use model::{
    Agent, DataSource, DeclaredBom, Identity, IdentitySpec, Kind, Model, Program, Service,
};
pub use parse::MAX_BOM_BYTES;
