//! The path filter of `file.open` as the kernel side holds it: the prefix rules that go into the
//! `FILE_PREFIXES` LPM trie (the longest prefix of a path decides), and the `FILE_HEADS` table
//! computed from the same rules, indexed by a path's first two bytes: the trie's verdict when
//! those decide it, else a short list of the longer rules that start with them (`HEAD_RULES`),
//! compared word by word, so that the kernel asks the trie only for a head with many or long
//! rules (never with the embedded defaults).

use std::collections::BTreeMap;

use runbom_common::{
    HEAD_ASK_TRIE, HEAD_EXCLUDE, HEAD_INCLUDE, HEAD_LIST, HEAD_LISTS, HEAD_LOW_VALUE,
    HEAD_RULE_WORDS, HEAD_RULES_MAX, HeadRules, PATH_HEADS, PATH_MAX, PREFIX_EXCLUDE,
    PREFIX_INCLUDE, PREFIX_LOW_VALUE,
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

    /// The `FILE_HEADS` table and the `HEAD_RULES` lists it points to: for each value of a
    /// path's first two bytes, the verdict of the longest among the one- and two-byte rules
    /// that match them when no longer rule starts with them; else the list of those longer
    /// rules (longest first, the shorter rules' verdict as its default) when there are at most
    /// `HEAD_RULES_MAX` of at most `HEAD_RULE_WORDS` words and a list is free; else
    /// `HEAD_ASK_TRIE`.
    #[must_use]
    pub fn table(&self) -> HeadTable {
        let mut heads = vec![HEAD_EXCLUDE; PATH_HEADS];
        for b0 in 0..=u8::MAX {
            let one = self.rules.get([b0].as_slice()).copied();
            for b1 in 0..=u8::MAX {
                let two = self.rules.get([b0, b1].as_slice()).copied();
                heads[head_index(b0, b1)] = head_of(two.or(one));
            }
        }
        // Longer rules by head, longest first.
        let mut longer: BTreeMap<usize, Vec<(&[u8], u8)>> = BTreeMap::new();
        for (prefix, class) in self.rules.iter().filter(|(p, _)| p.len() >= 3) {
            longer
                .entry(head_index(prefix[0], prefix[1]))
                .or_default()
                .push((prefix, *class));
        }
        let mut lists = Vec::new();
        for (index, mut rules) in longer {
            let fits = rules.len() <= HEAD_RULES_MAX
                && rules.iter().all(|(p, _)| p.len() <= 8 * HEAD_RULE_WORDS)
                && lists.len() < HEAD_LISTS;
            if !fits {
                heads[index] = HEAD_ASK_TRIE;
                continue;
            }
            rules.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            let mut list = HeadRules {
                count: rules.len() as u32,
                default: u32::from(heads[index]),
                ..HeadRules::default()
            };
            for (slot, (prefix, class)) in list.rules.iter_mut().zip(rules) {
                slot.len = prefix.len() as u32;
                slot.class = u32::from(head_of(Some(class)));
                for (word, chunk) in slot.words.iter_mut().zip(prefix.chunks(8)) {
                    let mut bytes = [0u8; 8];
                    bytes[..chunk.len()].copy_from_slice(chunk);
                    *word = u64::from_le_bytes(bytes);
                }
            }
            heads[index] = HEAD_LIST + lists.len() as u8;
            lists.push(list);
        }
        HeadTable { heads, lists }
    }
}

/// What userspace loads beside the trie: `FILE_HEADS` and `HEAD_RULES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadTable {
    /// `PATH_HEADS` entries, indexed by [`head_index`].
    pub heads: Vec<u8>,
    /// At most `HEAD_LISTS`.
    pub lists: Vec<HeadRules>,
}

impl HeadTable {
    /// True when the table decides `path` without the trie.
    #[must_use]
    pub fn decides(&self, path: &[u8]) -> bool {
        matches!(path, [b0, b1, ..] if self.heads[head_index(*b0, *b1)] != HEAD_ASK_TRIE)
    }

    /// The kernel's classification of `path` (`file.rs`: the table first, a list's words or
    /// the trie when it says so), with the trie modelled by [`PrefixRules::trie_class`]:
    /// `Some(class)` when the path is reported, `None` when it is not. For tests that hold the
    /// table to the trie. `junk` fills the bytes past the path, as the ring's old bytes do.
    #[must_use]
    pub fn classify(&self, rules: &PrefixRules, path: &[u8], junk: u8) -> Option<u8> {
        let head = match path {
            [b0, b1, ..] => self.heads[head_index(*b0, *b1)],
            _ => HEAD_ASK_TRIE,
        };
        let class = match head {
            HEAD_ASK_TRIE => rules.trie_class(path),
            HEAD_EXCLUDE => None,
            HEAD_INCLUDE | HEAD_LOW_VALUE => prefix_of(head),
            list => {
                let list = &self.lists[usize::from(list - HEAD_LIST)];
                let mut buf = [junk; PATH_MAX];
                buf[..path.len()].copy_from_slice(path);
                by_rules(list, &buf, path.len() as u32)
            }
        };
        class.filter(|c| *c == PREFIX_INCLUDE || *c == PREFIX_LOW_VALUE)
    }
}

/// `by_rules` of `file.rs`: [`HeadRules::verdict`] on the bytes the kernel holds.
fn by_rules(list: &HeadRules, path: &[u8; PATH_MAX], len: u32) -> Option<u8> {
    prefix_of(list.verdict(len, |w| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&path[w * 8..w * 8 + 8]);
        u64::from_le_bytes(b)
    }) as u8)
}

/// The trie's class of a `HEAD_*` verdict.
fn prefix_of(head: u8) -> Option<u8> {
    match head {
        HEAD_INCLUDE => Some(PREFIX_INCLUDE),
        HEAD_LOW_VALUE => Some(PREFIX_LOW_VALUE),
        _ => None,
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

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
