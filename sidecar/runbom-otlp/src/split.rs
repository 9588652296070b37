//! An encoded export request cut into requests of at most a given size, on the wire format,
//! without decoding it: for a receiver that takes requests up to a limit (gRPC servers take
//! 4 MiB by default) when a batch came out larger.
//!
//! The three export requests have the same shape: field 1 repeats a resource group
//! (`ResourceSpans`, `ResourceLogs`, `ResourceMetrics`); in a group, field 2 repeats a scope group
//! and every other field (the resource, `schema_url`) describes it; in a scope group, field 2
//! repeats the items (spans, log records, metrics) and the other fields (the scope, `schema_url`)
//! describe them. A part is the items it carries under copies of their groups' other fields,
//! with the groups' lengths written anew; the items' bytes are copied as they are. A cut falls
//! between items only: an item larger than the limit goes alone, in a part larger than the limit.

use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

/// Field 1, length-delimited: a resource group in a request.
const RESOURCE_GROUP: u8 = 0x0a;
/// Field 2, length-delimited: a scope group in a resource group.
const SCOPE_GROUP: u8 = 0x12;

/// `request` (an encoded trace, log or metrics export request) in parts of at most `max` bytes
/// each, in order, every item once; `None` when it is not larger than `max`, holds a single
/// item, or is not a well-formed request (then it goes as it is, and the receiver judges it).
#[must_use]
pub fn split_encoded(request: &[u8], max: usize) -> Option<Vec<Vec<u8>>> {
    if request.len() <= max {
        return None;
    }
    let request = Request::parse(request)?;
    let items: usize = request
        .resources
        .iter()
        .flat_map(|r| &r.scopes)
        .map(|s| s.items.len())
        .sum();
    if items < 2 {
        return None;
    }
    Some(request.parts(max))
}

/// A message's fields, raw (tag and value), as its part of a request.
#[derive(Default)]
struct Fields<'a> {
    /// Every field but the repeated one, each as it is on the wire.
    about: Vec<&'a [u8]>,
    about_len: usize,
}

impl<'a> Fields<'a> {
    fn push(&mut self, field: &'a [u8]) {
        self.about_len += field.len();
        self.about.push(field);
    }
}

struct Scope<'a> {
    fields: Fields<'a>,
    /// The items, each with its tag and length.
    items: Vec<&'a [u8]>,
}

struct Resource<'a> {
    fields: Fields<'a>,
    scopes: Vec<Scope<'a>>,
}

struct Request<'a> {
    fields: Fields<'a>,
    resources: Vec<Resource<'a>>,
}

/// One field of a message: its number, its bytes on the wire (tag included), and for a
/// length-delimited field its value.
struct Field<'a> {
    number: u64,
    raw: &'a [u8],
    value: Option<&'a [u8]>,
}

/// The fields of `message`, or `None` if it is not well formed.
fn fields(mut message: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    while !message.is_empty() {
        let start = message;
        let mut rest = message;
        let tag = decode_varint(&mut rest).ok()?;
        let value = match tag & 7 {
            0 => {
                decode_varint(&mut rest).ok()?;
                None
            }
            1 => {
                rest = rest.get(8..)?;
                None
            }
            5 => {
                rest = rest.get(4..)?;
                None
            }
            2 => {
                let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
                let value = rest.get(..len)?;
                rest = &rest[len..];
                Some(value)
            }
            _ => return None,
        };
        let used = start.len() - rest.len();
        out.push(Field {
            number: tag >> 3,
            raw: &start[..used],
            value,
        });
        message = rest;
    }
    Some(out)
}

/// A message whose field `repeated` repeats what `each` reads from its value: its other fields
/// and those.
fn group<'a, T>(
    bytes: &'a [u8],
    repeated: u64,
    each: impl Fn(&'a [u8], &'a [u8]) -> Option<T>,
) -> Option<(Fields<'a>, Vec<T>)> {
    let mut other = Fields::default();
    let mut children = Vec::new();
    for f in fields(bytes)? {
        match f.value {
            Some(value) if f.number == repeated => children.push(each(f.raw, value)?),
            _ => other.push(f.raw),
        }
    }
    Some((other, children))
}

impl<'a> Request<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (fields, resources) = group(bytes, 1, |_, value| Resource::parse(value))?;
        Some(Self { fields, resources })
    }

    /// The parts, each as full as `max` allows.
    fn parts(&self, max: usize) -> Vec<Vec<u8>> {
        let mut parts = Vec::new();
        let mut part = Part::new(self);
        for (r, resource) in self.resources.iter().enumerate() {
            for (s, scope) in resource.scopes.iter().enumerate() {
                for (i, item) in scope.items.iter().enumerate() {
                    if !part.is_empty() && part.len_with(self, r, s, item.len()) > max {
                        parts.push(part.write(self));
                        part = Part::new(self);
                    }
                    part.add(self, r, s, i);
                }
            }
        }
        if !part.is_empty() {
            parts.push(part.write(self));
        }
        parts
    }
}

impl<'a> Resource<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (fields, scopes) = group(bytes, 2, |_, value| Scope::parse(value))?;
        Some(Self { fields, scopes })
    }
}

impl<'a> Scope<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (fields, items) = group(bytes, 2, |raw, _| Some(raw))?;
        Some(Self { fields, items })
    }
}

/// The bytes of a length-delimited field of one-byte tag around `len` bytes.
fn framed(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The items a part carries from one scope group: `count` from `first`, `bytes` in all.
#[derive(Clone, Copy)]
struct Taken {
    scope: usize,
    first: usize,
    count: usize,
    bytes: usize,
}

/// A part being filled: which items of which scopes of which resources it carries, and its
/// length kept as items are added.
struct Part {
    /// Per resource group it carries (by index), what it carries of each of its scope groups.
    resources: Vec<(usize, Vec<Taken>)>,
    /// The bytes of the request's own fields and of the resource groups before the last.
    closed: usize,
    /// The bytes of the last resource group's scope groups before its last.
    closed_scopes: usize,
}

impl Part {
    fn new(request: &Request<'_>) -> Self {
        Self {
            resources: Vec::new(),
            closed: request.fields.about_len,
            closed_scopes: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The part's length with one more item of `bytes` from scope `s` of resource `r`.
    fn len_with(&self, request: &Request<'_>, r: usize, s: usize, bytes: usize) -> usize {
        let resource = &request.resources[r];
        let scope = &resource.scopes[s];
        let (closed, closed_scopes, items) = match self.resources.last() {
            Some((lr, scopes)) if *lr == r => match scopes.last() {
                Some(t) if t.scope == s => (self.closed, self.closed_scopes, t.bytes),
                Some(t) => {
                    let done = framed(resource.scopes[t.scope].fields.about_len + t.bytes);
                    (self.closed, self.closed_scopes + done, 0)
                }
                None => (self.closed, self.closed_scopes, 0),
            },
            Some(_) => (self.closed + self.last_resource_len(request), 0, 0),
            None => (self.closed, 0, 0),
        };
        let scope_len = framed(scope.fields.about_len + items + bytes);
        closed + framed(resource.fields.about_len + closed_scopes + scope_len)
    }

    /// The bytes of the last resource group as it stands.
    fn last_resource_len(&self, request: &Request<'_>) -> usize {
        let Some((r, scopes)) = self.resources.last() else {
            return 0;
        };
        let resource = &request.resources[*r];
        let last_scope = scopes.last().map_or(0, |t| {
            framed(resource.scopes[t.scope].fields.about_len + t.bytes)
        });
        framed(resource.fields.about_len + self.closed_scopes + last_scope)
    }

    /// Adds item `i` of scope `s` of resource `r` (the next one in the request's order).
    fn add(&mut self, request: &Request<'_>, r: usize, s: usize, i: usize) {
        let bytes = request.resources[r].scopes[s].items[i].len();
        if self.resources.last().is_none_or(|(lr, _)| *lr != r) {
            self.closed += self.last_resource_len(request);
            self.closed_scopes = 0;
            self.resources.push((r, Vec::new()));
        }
        let resource = &request.resources[r];
        let (_, scopes) = self.resources.last_mut().expect("pushed above");
        match scopes.last_mut() {
            Some(t) if t.scope == s => {
                t.count += 1;
                t.bytes += bytes;
            }
            last => {
                if let Some(t) = last {
                    self.closed_scopes +=
                        framed(resource.scopes[t.scope].fields.about_len + t.bytes);
                }
                scopes.push(Taken {
                    scope: s,
                    first: i,
                    count: 1,
                    bytes,
                });
            }
        }
    }

    fn write(&self, request: &Request<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.closed + self.last_resource_len(request));
        for field in &request.fields.about {
            out.extend_from_slice(field);
        }
        for (r, scopes) in &self.resources {
            let resource = &request.resources[*r];
            let inner: usize = scopes
                .iter()
                .map(|t| framed(resource.scopes[t.scope].fields.about_len + t.bytes))
                .sum::<usize>()
                + resource.fields.about_len;
            out.push(RESOURCE_GROUP);
            encode_varint(inner as u64, &mut out);
            for field in &resource.fields.about {
                out.extend_from_slice(field);
            }
            for t in scopes {
                let scope = &resource.scopes[t.scope];
                out.push(SCOPE_GROUP);
                encode_varint((scope.fields.about_len + t.bytes) as u64, &mut out);
                for field in &scope.fields.about {
                    out.extend_from_slice(field);
                }
                for item in &scope.items[t.first..t.first + t.count] {
                    out.extend_from_slice(item);
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
