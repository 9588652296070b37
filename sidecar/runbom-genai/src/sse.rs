//! `text/event-stream` bodies (Server-Sent Events): the `data` of each event, in order. An
//! event ends at a blank line; its `data:` lines are joined with `\n`; comments (`:`) and other
//! fields are skipped. A last event cut short by the capture is still returned (its JSON then
//! fails to parse and is skipped by the reader).

/// The data of each event of `body`.
pub fn events(body: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut lines = body.split(|&b| b == b'\n').peekable();
    std::iter::from_fn(move || {
        let mut data: Option<Vec<u8>> = None;
        loop {
            let Some(line) = lines.next() else {
                return data;
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if data.is_some() {
                    return data;
                }
                continue;
            }
            if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                match &mut data {
                    Some(d) => {
                        d.push(b'\n');
                        d.extend_from_slice(value);
                    }
                    None => data = Some(value.to_vec()),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_and_joined() {
        let body = b": comment\r\nevent: a\r\ndata: {\"x\":1}\r\n\r\ndata:two\ndata: lines\n\n\n\
                     data: [DONE]\n\ndata: {\"cut";
        let got: Vec<_> = events(body)
            .map(|d| String::from_utf8(d).unwrap())
            .collect();
        assert_eq!(got, ["{\"x\":1}", "two\nlines", "[DONE]", "{\"cut"]);
    }
}
