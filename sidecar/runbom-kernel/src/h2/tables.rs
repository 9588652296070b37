//! The size of an HPACK dynamic table, read from the header blocks before they are decoded: a
//! table holds at most its maximum size (entries counted with 32 bytes of overhead each), which
//! is [`TABLE_DEFAULT`] until a dynamic table size update at the start of a block sets another
//! (RFC 7541 §4.2, §6.3). `loona-hpack` does not tell a table's size, so the tracker counts
//! these maximums over all connections.

/// A table's maximum size before any update (`SETTINGS_HEADER_TABLE_SIZE`'s initial value).
pub const TABLE_DEFAULT: usize = 4096;
/// Largest table a peer may ask for.
pub const TABLE_MAX: usize = 64 * 1024;
/// Most bytes of an HPACK integer (as `loona-hpack`: a value up to 2^28, far past any size
/// allowed).
const INT_BYTES_MAX: usize = 5;

/// The integer with a `prefix`-bit prefix (1 to 8) at the start of `bytes`, and the bytes it
/// takes (RFC 7541 §5.1); `None` when it is cut short or longer than [`INT_BYTES_MAX`] bytes.
#[must_use]
pub fn read_int(bytes: &[u8], prefix: u32) -> Option<(usize, usize)> {
    let max = (1_usize << prefix) - 1;
    let first = usize::from(*bytes.first()?) & max;
    if first < max {
        return Some((first, 1));
    }
    let mut value = first;
    for (i, &b) in bytes.iter().enumerate().skip(1).take(INT_BYTES_MAX - 1) {
        value += usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The table's maximum size once the size updates at the start of `block` are applied to
/// `size`; `None` when one is cut short, too long, or past [`TABLE_MAX`]. The decoder is then
/// allowed no larger table than this, so it refuses an update larger than the last (an encoder
/// signals the smallest size first, then the final one) and one further in (which RFC 7541
/// forbids but `loona-hpack` would apply).
#[must_use]
pub fn size_after(mut block: &[u8], mut size: usize) -> Option<usize> {
    // `001xxxxx`: a dynamic table size update, its size a 5-bit-prefix integer.
    while block.first().is_some_and(|b| b & 0xe0 == 0x20) {
        let (value, len) = read_int(block, 5)?;
        if value > TABLE_MAX {
            return None;
        }
        size = value;
        block = &block[len..];
    }
    Some(size)
}
