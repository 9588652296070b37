//! Globs of the declared BOM: `*` (any run of characters; in path globs, not `/`), `**` (any run,
//! `/` included) and `?` (one character). Model names and `runbom:match` values use name globs,
//! `runbom:exec` uses path globs.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// The pattern as matched: ASCII-lowercased for names.
    folded: Box<[u8]>,
    /// Whether `*` stops at `/` (paths) or not (names).
    path: bool,
    /// No `*` or `?`: a plain comparison.
    literal: bool,
}

impl Glob {
    fn new(pattern: &str, path: bool) -> Self {
        let folded = if path {
            pattern.as_bytes().into()
        } else {
            pattern.to_ascii_lowercase().into_bytes().into()
        };
        Self {
            pattern: pattern.to_owned(),
            folded,
            path,
            literal: !pattern.contains(['*', '?']),
        }
    }

    /// A glob over names: `*` matches any run of characters.
    #[must_use]
    pub fn name(pattern: &str) -> Self {
        Self::new(pattern, false)
    }

    /// A glob over paths: `*` does not cross `/`, `**` does.
    #[must_use]
    pub fn path(pattern: &str) -> Self {
        Self::new(pattern, true)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches; names compare without regard to ASCII case.
    #[must_use]
    pub fn matches(&self, text: &str) -> bool {
        match (self.literal, self.path) {
            (true, true) => self.pattern == text,
            (true, false) => self.pattern.eq_ignore_ascii_case(text),
            (false, path) => matches_at(&self.folded, text.as_bytes(), path),
        }
    }
}

/// Backtracking match of the folded pattern `p` against `t` (folded as it is read); patterns
/// are short, so the simple recursion is fast enough.
fn matches_at(p: &[u8], t: &[u8], path: bool) -> bool {
    let same = |c: u8, b: u8| {
        if path {
            c == b
        } else {
            c == b.to_ascii_lowercase()
        }
    };
    match p.first() {
        None => t.is_empty(),
        Some(b'*') => {
            let deep = p.get(1) == Some(&b'*');
            let rest = if deep { &p[2..] } else { &p[1..] };
            let crosses = deep || !path;
            for i in 0..=t.len() {
                if matches_at(rest, &t[i..], path) {
                    return true;
                }
                if i < t.len() && t[i] == b'/' && !crosses {
                    return false;
                }
            }
            false
        }
        Some(b'?') => {
            !t.is_empty() && (t[0] != b'/' || !path) && matches_at(&p[1..], &t[1..], path)
        }
        Some(&c) => t.first().is_some_and(|&b| same(c, b)) && matches_at(&p[1..], &t[1..], path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_globs_cross_slashes_and_ignore_case() {
        assert!(Glob::name("gpt-4o*").matches("gpt-4o-mini"));
        assert!(Glob::name("gpt-4o*").matches("GPT-4o"));
        assert!(!Glob::name("gpt-4o*").matches("gpt-4"));
        assert!(Glob::name("meta-llama/*").matches("meta-llama/Llama-3-8B"));
        assert!(Glob::name("claude-?-opus").matches("claude-3-opus"));
        assert!(Glob::name("support-agent").matches("support-agent"));
    }

    #[test]
    fn path_globs_keep_star_inside_a_segment() {
        assert!(Glob::path("**/python3*").matches("/work/.venv/bin/python3"));
        assert!(Glob::path("**/python3*").matches("/usr/bin/python3.11"));
        assert!(Glob::path("/usr/bin/*").matches("/usr/bin/wc"));
        assert!(!Glob::path("/usr/bin/*").matches("/usr/bin/x/wc"));
        assert!(Glob::path("/usr/bin/wc").matches("/usr/bin/wc"));
        assert!(!Glob::path("/usr/bin/wc").matches("/usr/bin/wcx"));
        assert!(!Glob::path("/usr/bin/?c").matches("/usr/bin//c"));
    }
}
