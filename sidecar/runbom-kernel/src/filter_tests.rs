use runbom_common::{
    HEAD_ASK_TRIE, HEAD_EXCLUDE, HEAD_INCLUDE, HEAD_LIST, HEAD_LOW_VALUE, PATH_MAX,
};

use super::*;
use crate::ProbeSettings;

/// The trie's verdict alone: reported (with its class) or not.
fn by_trie(rules: &PrefixRules, path: &[u8]) -> Option<u8> {
    rules
        .trie_class(path)
        .filter(|c| *c == PREFIX_INCLUDE || *c == PREFIX_LOW_VALUE)
}

/// Holds the table to the trie for every path (with two fillings of the bytes past the path);
/// returns how many paths the table decided alone (without the trie).
fn assert_same_verdicts(rules: &PrefixRules, paths: &[Vec<u8>]) -> usize {
    let table = rules.table();
    let mut decided = 0;
    for path in paths {
        for junk in [0, 0xff] {
            assert_eq!(
                table.classify(rules, path, junk),
                by_trie(rules, path),
                "path {:?} with rules {rules:?}",
                String::from_utf8_lossy(path)
            );
        }
        if table.decides(path) {
            decided += 1;
        }
    }
    decided
}

/// A small deterministic generator (xorshift64*), so that a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `len` bytes drawn from `alphabet`.
    fn string(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

/// Paths around the rules: each rule, its prefixes, extensions of it, and random strings.
fn paths_around(
    rules: &PrefixRules,
    alphabet: &[u8],
    rng: &mut Rng,
    random: usize,
) -> Vec<Vec<u8>> {
    let mut paths = vec![Vec::new(), b"/".to_vec(), b"a".to_vec(), b"//".to_vec()];
    for (prefix, _) in rules.iter() {
        for n in 0..=prefix.len() {
            paths.push(prefix[..n].to_vec());
        }
        for _ in 0..4 {
            let mut p = prefix.to_vec();
            let extra = rng.below(6);
            p.extend(rng.string(alphabet, extra));
            paths.push(p);
        }
    }
    for _ in 0..random {
        let len = rng.below(10);
        let mut p = rng.string(alphabet, len);
        if rng.below(4) != 0 {
            p.insert(0, b'/');
        }
        paths.push(p);
    }
    for b0 in alphabet {
        for b1 in alphabet {
            paths.push(vec![*b0, *b1]);
            paths.push(vec![*b0, *b1, b'x']);
        }
    }
    let longest = vec![b'/'; PATH_MAX - 1];
    paths.push(longest);
    paths
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_table_agrees_with_the_trie_on_the_embedded_defaults() {
    let d = ProbeSettings::default();
    let rules = PrefixRules::new(&d.file_include, &d.file_exclude, &d.file_low_value).unwrap();
    let mut rng = Rng(0x5eed);
    let alphabet = b"/abcdefghijklmnoprstuvwxyz._-0";
    let mut paths = paths_around(&rules, alphabet, &mut rng, 20_000);
    for p in [
        "/etc/passwd",
        "/etc/ld.so.cache",
        "/etc/ld.so.cache.d",
        "/etc/ssl/certs/ca.pem",
        "/usr/lib/python3.11/os.py",
        "/usr/local/lib/x.so",
        "/usr/share/zoneinfo/UTC",
        "/tmp/runbom-bench/files/watched/file",
        "/home/agent/.config/openai",
        "/proc/self/status",
        "/var/lib/dpkg/status",
        "/var/log/syslog",
        "/opt/app/model.bin",
        "relative/file.txt",
    ] {
        paths.push(p.as_bytes().to_vec());
    }
    let decided = assert_same_verdicts(&rules, &paths);
    // With the defaults every path of two or more bytes is decided without the trie.
    let long_enough = paths.iter().filter(|p| p.len() >= 2).count();
    assert_eq!(decided, long_enough);

    let table = rules.table();
    let head = |p: &str| table.heads[head_index(p.as_bytes()[0], p.as_bytes()[1])];
    // Under `/` nothing else starts `/t` or `/h`: those paths are decided by two bytes.
    assert_eq!(head("/tmp/x"), HEAD_INCLUDE);
    assert_eq!(head("/home/x"), HEAD_INCLUDE);
    assert_eq!(head("/root/x"), HEAD_INCLUDE);
    // Relative paths match no prefix.
    assert_eq!(head("ab"), HEAD_EXCLUDE);
    // `/proc/`, `/usr/`, `/etc/ld.so.cache`: a list of the longer rules.
    for p in [
        "/proc/1",
        "/usr/bin/x",
        "/etc/hosts",
        "/var/log/x",
        "/sys/x",
    ] {
        assert!(head(p) >= HEAD_LIST, "{p}");
    }
}

#[test]
fn the_table_agrees_with_the_trie_on_generated_rules() {
    let alphabet = b"/ab.c";
    let mut rng = Rng(0x0b5e_55ed);
    let (mut decided, mut total, mut asked) = (0, 0, 0);
    for _ in 0..300 {
        let mut lists: [Vec<String>; 3] = Default::default();
        for _ in 0..rng.below(8) {
            // Short rules (one or two bytes) often, so that the table decides from them.
            let longest = if rng.below(2) == 0 { 2 } else { 6 };
            let len = 1 + rng.below(longest);
            let mut p = rng.string(alphabet, len);
            if rng.below(5) != 0 {
                p[0] = b'/';
            }
            lists[rng.below(3)].push(String::from_utf8(p).unwrap());
        }
        // Now and then a head with more rules than a list holds, or a rule longer than a
        // list's words: the trie decides those.
        if rng.below(4) == 0 {
            for _ in 0..=runbom_common::HEAD_RULES_MAX {
                let len = 3 + rng.below(4);
                let mut p = rng.string(alphabet, len);
                p[..2].copy_from_slice(b"/a");
                lists[rng.below(3)].push(String::from_utf8(p).unwrap());
            }
        }
        if rng.below(4) == 0 {
            let len = 8 * runbom_common::HEAD_RULE_WORDS - 2 + rng.below(4);
            let mut p = rng.string(alphabet, len);
            p[0] = b'/';
            lists[rng.below(3)].push(String::from_utf8(p).unwrap());
        }
        let [include, exclude, low] = &lists;
        let rules = PrefixRules::new(include, exclude, low).unwrap();
        let paths = paths_around(&rules, alphabet, &mut rng, 200);
        decided += assert_same_verdicts(&rules, &paths);
        total += paths.len();
        asked += usize::from(rules.table().heads.contains(&HEAD_ASK_TRIE));
    }
    assert!(decided > 0 && decided < total, "{decided} of {total}");
    assert!(asked > 0, "no generated head was left to the trie");
}

#[test]
fn a_prefix_in_two_lists_keeps_the_later_class_in_both() {
    let rules = PrefixRules::new(
        &strings(&["/", "/t", "/data/"]),
        &strings(&["/t", "/data/"]),
        &strings(&["/"]),
    )
    .unwrap();
    assert_eq!(rules.trie_class(b"/tmp"), Some(PREFIX_EXCLUDE));
    assert_eq!(rules.trie_class(b"/x"), Some(PREFIX_LOW_VALUE));
    let table = rules.table();
    assert_eq!(table.heads[head_index(b'/', b't')], HEAD_EXCLUDE);
    assert_eq!(table.heads[head_index(b'/', b'x')], HEAD_LOW_VALUE);
    assert_eq!(table.heads[head_index(b'/', b'd')], HEAD_LIST);
    assert_eq!(table.lists[0].default, u32::from(HEAD_LOW_VALUE));
    assert_same_verdicts(
        &rules,
        &[b"/tmp".to_vec(), b"/data/x".to_vec(), b"/dx".to_vec()],
    );
}

#[test]
fn prefixes_must_fit_the_trie() {
    let long = "/".repeat(PATH_MAX);
    for bad in [String::new(), long] {
        let err = PrefixRules::new(std::slice::from_ref(&bad), &[], &[]).unwrap_err();
        assert!(err.contains("must be 1 to 255 bytes long"), "{err}");
    }
}
