//! Attributes a processor gives the items of a request (spans, log records), kept beside the
//! request instead of added to the items: each distinct set once ([`AttributeSet`], encoded
//! once as protobuf and as OTLP/JSON) and each item's set ([`Added`]). The writers put a set's
//! bytes after the item's own attributes, the bytes of the item with the set added to it: an
//! aibom verdict shared by most of a batch is encoded once per batch, not once per item.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;

/// Attributes added to items, held once for all the items that get them. A copy shares them
/// (the processor keeps the sets it made and gives copies to later requests).
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeSet(Arc<Parts>);

#[derive(Debug, PartialEq)]
struct Parts {
    attributes: Vec<KeyValue>,
    /// The attributes as an item's `attributes` fields (protobuf; a span's unless made by
    /// [`AttributeSet::of_log_records`]).
    protobuf: Vec<u8>,
    /// The attributes as `KeyValue` objects, comma-separated (OTLP/JSON).
    json: Vec<u8>,
}

/// The `attributes` field of a `Span` and of a `LogRecord`.
const SPAN_ATTRIBUTES: u32 = 9;
const LOG_RECORD_ATTRIBUTES: u32 = 6;

impl AttributeSet {
    /// Attributes added to spans.
    #[must_use]
    pub fn new(attributes: Vec<KeyValue>) -> Self {
        Self::encoded(attributes, SPAN_ATTRIBUTES)
    }

    /// Attributes added to log records.
    #[must_use]
    pub fn of_log_records(attributes: Vec<KeyValue>) -> Self {
        Self::encoded(attributes, LOG_RECORD_ATTRIBUTES)
    }

    fn encoded(attributes: Vec<KeyValue>, field: u32) -> Self {
        Self(Arc::new(Parts {
            protobuf: crate::encode::attributes_field(field, &attributes),
            json: crate::json::write::key_values(&attributes),
            attributes,
        }))
    }

    #[must_use]
    pub fn attributes(&self) -> &[KeyValue] {
        &self.0.attributes
    }

    /// The protobuf to write after an item's own attributes.
    pub(crate) fn protobuf(&self) -> &[u8] {
        &self.0.protobuf
    }

    /// The OTLP/JSON to write after an item's own attributes (a comma between them).
    pub(crate) fn json(&self) -> &[u8] {
        &self.0.json
    }
}

/// The sets given to the items of one request, and which one each item gets.
#[derive(Clone, Debug, Default)]
pub(crate) struct Added {
    sets: Vec<AttributeSet>,
    /// `at[i]`: item `i`'s set; empty when no item gets one, else one entry per item.
    at: Vec<Option<u32>>,
}

impl Added {
    /// Item `i` (of `items`) getting `sets[at[i]]`: none for `None`, an index past the end of
    /// `sets`, or an item past the end of `at`.
    ///
    /// # Panics
    /// If `sets` holds `u32::MAX` sets or more.
    pub(crate) fn new(
        sets: Vec<AttributeSet>,
        at: impl IntoIterator<Item = Option<u32>>,
        items: usize,
    ) -> Self {
        assert!(u32::try_from(sets.len()).is_ok(), "too many attribute sets");
        let n = sets.len();
        let mut at: Vec<Option<u32>> = at
            .into_iter()
            .take(items)
            .map(|a| a.filter(|a| (*a as usize) < n))
            .collect();
        fit(&mut at, items);
        Self { sets, at }
    }

    /// Whether no item gets a set.
    pub(crate) fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The set item `i` gets.
    pub(crate) fn of(&self, i: usize) -> Option<&AttributeSet> {
        let set = self.at.get(i).copied().flatten()?;
        self.sets.get(set as usize)
    }

    /// The sets, and each item's (empty when no item gets one).
    pub(crate) fn parts(&self) -> (&[AttributeSet], &[Option<u32>]) {
        (&self.sets, &self.at)
    }

    /// The attributes item `i` gets (empty for none).
    pub(crate) fn attributes(&self, i: usize) -> &[KeyValue] {
        self.of(i).map_or(&[], |s| s.0.attributes.as_slice())
    }

    /// Each item's attributes (`items` in order, an index for each) added to it.
    pub(crate) fn add_to<'a>(&self, items: impl Iterator<Item = (&'a mut Vec<KeyValue>, usize)>) {
        if self.is_empty() {
            return;
        }
        for (attributes, i) in items {
            attributes.extend_from_slice(self.attributes(i));
        }
    }

    /// `other`'s (for `other_len` items) after these (for `len`).
    ///
    /// # Panics
    /// If both together hold `u32::MAX` sets or more.
    pub(crate) fn append(&mut self, len: usize, other: Added, other_len: usize) {
        if other.is_empty() {
            append_column(&mut self.at, len, Vec::new(), other_len);
            return;
        }
        let offset = u32::try_from(self.sets.len()).expect("too many attribute sets");
        let at = other
            .at
            .into_iter()
            .map(|a| a.map(|a| offset.checked_add(a).expect("too many attribute sets")))
            .collect();
        self.sets.extend(other.sets);
        append_column(&mut self.at, len, at, other_len);
    }

    /// The items from `at` on, with the sets (`self` keeps the first `at`).
    pub(crate) fn split_off(&mut self, at: usize) -> Added {
        let tail = split_column(&mut self.at, at);
        Added {
            sets: if tail.is_empty() {
                Vec::new()
            } else {
                self.sets.clone()
            },
            at: tail,
        }
    }
}

/// A per-item column (`None` for most items) as kept: empty when every entry is `None`, else
/// one entry per item.
pub(crate) fn fit<T>(column: &mut Vec<Option<T>>, items: usize) {
    if column.iter().all(Option::is_none) {
        column.clear();
    } else {
        column.resize_with(items, || None);
    }
}

/// `other`'s column (for `other_len` items) after `column`'s (for `len`).
pub(crate) fn append_column<T>(
    column: &mut Vec<Option<T>>,
    len: usize,
    mut other: Vec<Option<T>>,
    other_len: usize,
) {
    if column.is_empty() && other.is_empty() {
        return;
    }
    column.resize_with(len, || None);
    other.resize_with(other_len, || None);
    column.append(&mut other);
}

/// The column's entries from `at` on (empty stays empty).
pub(crate) fn split_column<T>(column: &mut Vec<Option<T>>, at: usize) -> Vec<Option<T>> {
    if column.is_empty() {
        Vec::new()
    } else {
        column.split_off(at)
    }
}
