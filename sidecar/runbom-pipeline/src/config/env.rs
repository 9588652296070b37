//! `${env:NAME}` substitution in the configuration's text.

/// Replaces `${env:NAME}` (and `${NAME}`) with the variable's value; an unset variable is an
/// error rather than a silent empty string.
pub fn substitute_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in {:?}", &rest[start..]))?;
        let name = after[..end].strip_prefix("env:").unwrap_or(&after[..end]);
        let value = std::env::var(name).map_err(|_| {
            format!(
                "environment variable `{name}` (used as `${{{}}}`) is not set",
                &after[..end]
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
