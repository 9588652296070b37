//! The words of a shell script (`sh -c '…'`), as far as redaction needs them: quotes and
//! backslashes decide where a word ends, so that `PGPASSWORD='my pass'` is one word.

use std::borrow::Cow;

/// One word of a script.
pub(super) struct Word<'a> {
    /// Where it is in the script (quotes included).
    pub start: usize,
    pub end: usize,
    /// Its text as the program gets it: quotes and backslash escapes removed.
    pub text: Cow<'a, str>,
    /// The quote around the whole word (`'a b'`, `"a b"`), when it is one quoted string.
    pub quote: Option<char>,
}

/// The words of `s` split the way a POSIX shell splits them: at unquoted whitespace, `'…'` and
/// `"…"` (with its `\"`, `\\`, `\$`, `` \` `` escapes) taken as they are, `\x` outside quotes as
/// `x`. `None` when a quote is not closed (the script was cut short or is not shell).
pub(super) fn words(s: &str) -> Option<Vec<Word<'_>>> {
    let mut words = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(start, _)) = chars.peek() {
        if chars.next_if(|(_, c)| c.is_whitespace()).is_some() {
            continue;
        }
        // Built from the first quote or backslash on; until then the word is `s[start..i]`.
        let mut text: Option<String> = None;
        // Where the first quoted string of the word closed, if the word started with one.
        let mut first_close = None;
        let mut end = s.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() {
                end = i;
                break;
            }
            chars.next();
            if !matches!(c, '\'' | '"' | '\\') {
                if let Some(t) = &mut text {
                    t.push(c);
                }
                continue;
            }
            let t = text.get_or_insert_with(|| s[start..i].to_owned());
            match c {
                '\'' => loop {
                    let (j, c) = chars.next()?;
                    if c == '\'' {
                        if i == start {
                            first_close = Some(j);
                        }
                        break;
                    }
                    t.push(c);
                },
                '"' => loop {
                    let (j, c) = chars.next()?;
                    match c {
                        '"' => {
                            if i == start {
                                first_close = Some(j);
                            }
                            break;
                        }
                        '\\' => match chars.next_if(|(_, c)| matches!(c, '"' | '\\' | '$' | '`')) {
                            Some((_, escaped)) => t.push(escaped),
                            None => t.push('\\'),
                        },
                        c => t.push(c),
                    }
                },
                _ => t.push(chars.next().map_or('\\', |(_, c)| c)),
            }
        }
        let raw = &s[start..end];
        let quote = first_close
            .filter(|&close| close + 1 == end)
            .and_then(|_| raw.chars().next());
        let text = text.map_or(Cow::Borrowed(raw), Cow::Owned);
        words.push(Word {
            start,
            end,
            text,
            quote,
        });
    }
    Some(words)
}

/// The words of `s` split at whitespace only, quotes being ordinary characters.
pub(super) fn blank_separated(s: &str) -> Vec<Word<'_>> {
    let mut words = Vec::new();
    for w in s.split_whitespace() {
        // `split_whitespace` yields pieces of `s`: where one starts is its distance from `s`.
        let start = w.as_ptr() as usize - s.as_ptr() as usize;
        words.push(Word {
            start,
            end: start + w.len(),
            text: Cow::Borrowed(w),
            quote: None,
        });
    }
    words
}
