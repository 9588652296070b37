//! Reading a BOM's JSON with errors that name the file, the JSON path and the reason:
//! `bom.cdx.json: $.services[3].endpoints[0]: not a URL: ...`.

use serde_json::Value;

/// A BOM that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BomError {
    #[error("{source_name}: cannot read: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}: not a regular file ({kind}): a declared BOM must be a regular file")]
    NotRegularFile {
        source_name: String,
        kind: &'static str,
    },
    #[error("{source_name}: larger than {limit} bytes, the most a declared BOM may have")]
    TooLarge { source_name: String, limit: u64 },
    #[error("{source_name}: not read within {seconds} s (a hung file system?)")]
    Timeout { source_name: String, seconds: u64 },
    #[error("{source_name}: not JSON: {error}")]
    Json {
        source_name: String,
        error: serde_json::Error,
    },
    #[error("{source_name}: {path}: {reason}")]
    Invalid {
        source_name: String,
        path: String,
        reason: String,
    },
}

pub(super) type Res<T> = Result<T, BomError>;

/// Reads the values of one document, naming it (`source`) in every error.
pub(super) struct Json<'a> {
    pub source: &'a str,
}

impl Json<'_> {
    /// The document is invalid at `path` (a JSON path such as `$.services[3].endpoints[0]`).
    pub fn err(&self, path: &str, reason: impl Into<String>) -> BomError {
        BomError::Invalid {
            source_name: self.source.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn str<'v>(&self, v: &'v Value, path: &str) -> Res<&'v str> {
        v.as_str()
            .ok_or_else(|| self.err(path, format!("expected a string, found {}", type_name(v))))
    }

    pub fn opt_str<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Res<Option<&'v str>> {
        obj.get(key)
            .map(|v| self.str(v, &format!("{path}.{key}")))
            .transpose()
    }

    /// The string `key` of `obj`, which `what` (`"a service"`) needs.
    pub fn required<'v>(&self, obj: &'v Value, key: &str, path: &str, what: &str) -> Res<&'v str> {
        self.opt_str(obj, key, path)?
            .ok_or_else(|| self.err(path, format!("{what} needs a `{key}`")))
    }

    pub fn array<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Res<&'v [Value]> {
        match obj.get(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(self.err(
                &format!("{path}.{key}"),
                format!("expected an array, found {}", type_name(v)),
            )),
        }
    }

    pub fn object<'v>(&self, v: &'v Value, path: &str) -> Res<&'v Value> {
        if v.is_object() {
            Ok(v)
        } else {
            Err(self.err(path, format!("expected an object, found {}", type_name(v))))
        }
    }

    /// `properties[]` as (name, value, path of the value).
    pub fn properties(&self, obj: &Value, path: &str) -> Res<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for (i, p) in self.array(obj, "properties", path)?.iter().enumerate() {
            let at = format!("{path}.properties[{i}]");
            self.object(p, &at)?;
            let name = self.required(p, "name", &at, "a property")?;
            let value = self.opt_str(p, "value", &at)?.unwrap_or("");
            out.push((name.to_owned(), value.to_owned(), format!("{at}.value")));
        }
        Ok(out)
    }
}

/// The JSON type of `v` as an error names it ("expected a string, found a number").
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
