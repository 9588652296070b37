//! The path filter of `file.open` as the kernel side holds it: the prefix rules that go into the
//! `FILE_PREFIXES` LPM trie (the longest prefix of a path decides), and the `FILE_HEADS` table
//! computed from the same rules, which gives the trie's verdict from a path's first two bytes
//! whenever those decide it, so that the kernel looks most paths up without the trie.

use std::collections::BTreeMap;

use runbom_common::{
    HEAD_ASK_TRIE, HEAD_EXCLUDE, HEAD_INCLUDE, HEAD_LOW_VALUE, PATH_HEADS, PATH_MAX,
    PREFIX_EXCLUDE, PREFIX_INCLUDE, PREFIX_LOW_VALUE,
};

use crate::overload::effective_low_value;

/// Prefix → `PREFIX_*` class, as the trie holds it (a prefix in two lists keeps the class of the
/// later list: include, then exclude, then low-value, the order they are inserted in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixRules {
    rules: BTreeMap<Vec<u8>, u8>,
}

impl PrefixRules {
    /// The rules of the include, exclude and low-value lists (low-value prefixes only where
    /// the lists report their paths, [`effective_low_value`]). Every prefix must be 1 to
    /// `PATH_MAX - 1` bytes long.
    pub fn new(
        include: &[String],
        exclude: &[String],
        low_value: &[String],
    ) -> Result<Self, String> {
        let low_value = effective_low_value(include, exclude, low_value);
        let lists: [(Vec<&str>, u8); 3] = [
            (include.iter().map(String::as_str).collect(), PREFIX_INCLUDE),
            (exclude.iter().map(String::as_str).collect(), PREFIX_EXCLUDE),
            (low_value, PREFIX_LOW_VALUE),
        ];
        let mut rules = BTreeMap::new();
        for (list, class) in lists {
            for prefix in list {
                let bytes = prefix.as_bytes();
                if bytes.is_empty() || bytes.len() >= PATH_MAX {
                    return Err(format!(
                        "prefix {prefix:?} must be 1 to {} bytes long",
                        PATH_MAX - 1
                    ));
                }
                rules.insert(bytes.to_vec(), class);
            }
        }
        Ok(Self { rules })
    }

    /// Every rule: the prefix's bytes and its `PREFIX_*` class.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u8)> {
        self.rules.iter().map(|(p, c)| (p.as_slice(), *c))
    }

    /// What the trie answers for `path` (the bytes the kernel read, at most `PATH_MAX - 1`):
    /// the class of the longest rule that is a prefix of it, `None` when none is.
    #[must_use]
    pub fn trie_class(&self, path: &[u8]) -> Option<u8> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.rules.get(&path[..n]).copied())
    }

    /// The `FILE_HEADS` table: for each value of a path's first two bytes, `HEAD_ASK_TRIE` when
    /// a rule of three or more bytes starts with them (only the trie can tell), else the
    /// verdict of the longest rule among the one- and two-byte rules that match them.
    /// It has `PATH_HEADS` entries, indexed by [`head_index`].
    #[must_use]
    pub fn heads(&self) -> Vec<u8> {
        let mut heads = vec![HEAD_EXCLUDE; PATH_HEADS];
        for b0 in 0..=u8::MAX {
            let one = self.rules.get([b0].as_slice()).copied();
            for b1 in 0..=u8::MAX {
                let two = self.rules.get([b0, b1].as_slice()).copied();
                heads[head_index(b0, b1)] = head_of(two.or(one));
            }
        }
        for prefix in self.rules.keys().filter(|p| p.len() >= 3) {
            heads[head_index(prefix[0], prefix[1])] = HEAD_ASK_TRIE;
        }
        heads
    }
}

/// The table entry of a path starting with `b0`, `b1` (as the kernel computes it).
#[must_use]
pub fn head_index(b0: u8, b1: u8) -> usize {
    (usize::from(b0) << 8) | usize::from(b1)
}

/// The `HEAD_*` verdict of a trie answer.
fn head_of(class: Option<u8>) -> u8 {
    match class {
        Some(PREFIX_INCLUDE) => HEAD_INCLUDE,
        Some(PREFIX_LOW_VALUE) => HEAD_LOW_VALUE,
        _ => HEAD_EXCLUDE,
    }
}

/// True when the table decides `path` without the trie.
#[must_use]
pub fn head_decides(heads: &[u8], path: &[u8]) -> bool {
    matches!(path, [b0, b1, ..] if heads[head_index(*b0, *b1)] != HEAD_ASK_TRIE)
}

/// The kernel's classification of `path` (`file.rs`: the table first, the trie when it asks),
/// with the trie modelled by [`PrefixRules::trie_class`]: `Some(class)` when the path is
/// reported, `None` when it is not. For tests that hold the table to the trie.
#[must_use]
pub fn classify(rules: &PrefixRules, heads: &[u8], path: &[u8]) -> Option<u8> {
    let head = match path {
        [b0, b1, ..] => heads[head_index(*b0, *b1)],
        _ => HEAD_ASK_TRIE,
    };
    let class = match head {
        HEAD_ASK_TRIE => rules.trie_class(path),
        HEAD_INCLUDE => Some(PREFIX_INCLUDE),
        HEAD_LOW_VALUE => Some(PREFIX_LOW_VALUE),
        _ => None,
    };
    class.filter(|c| *c == PREFIX_INCLUDE || *c == PREFIX_LOW_VALUE)
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
