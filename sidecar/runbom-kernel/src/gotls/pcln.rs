//! Go's function table (`.gopclntab`, the runtime's `pcHeader` and `functab`, Go 1.18 and
//! later on 64-bit targets): the address and size of named functions, in executables stripped
//! of their ELF symbol table. Every read is bounds-checked: a malformed table gives `None`.

/// `pcHeader.magic` of Go 1.18–1.19 and of Go 1.20 and later.
const MAGICS: [u32; 2] = [0xffff_fff0, 0xffff_fff1];

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn usize_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64_at(b, at)?).ok()
}

/// `(address, size)` of each of `names` found in `table` (the `.gopclntab` section's bytes),
/// in the order of `names`; `text` is the `.text` address, used when the header's is 0.
#[must_use]
pub fn lookup(table: &[u8], text: u64, names: &[&str]) -> Option<Vec<Option<(u64, u64)>>> {
    if !MAGICS.contains(&u32_at(table, 0)?) || table.get(7) != Some(&8) {
        return None;
    }
    let nfunc = usize_at(table, 8)?;
    let text_start = match u64_at(table, 24)? {
        0 => text,
        t => t,
    };
    let funcnames = table.get(usize_at(table, 32)?..)?;
    let pcln = table.get(usize_at(table, 64)?..)?;
    let mut found = vec![None; names.len()];
    for i in 0..nfunc {
        // functab: `nfunc + 1` pairs of (entry offset from text, _func offset from pcln).
        let entry = u32_at(pcln, 8 * i)?;
        let next = u32_at(pcln, 8 * (i + 1))?;
        let func = usize::try_from(u32_at(pcln, 8 * i + 4)?).ok()?;
        // _func: entryOff uint32, nameOff int32, ...
        let name_off = usize::try_from(u32_at(pcln, func + 4)?).ok()?;
        let name = funcnames.get(name_off..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        if let Some(k) = names.iter().position(|n| n.as_bytes() == name) {
            found[k] = Some((
                text_start + u64::from(entry),
                u64::from(next.checked_sub(entry)?),
            ));
            if found.iter().all(Option::is_some) {
                break;
            }
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of two functions, `a` at text + 0x10 (0x20 bytes) and `b` at text + 0x30.
    fn table() -> Vec<u8> {
        let mut t = vec![0_u8; 72];
        t[..4].copy_from_slice(&0xffff_fff0_u32.to_le_bytes());
        t[7] = 8;
        t[8..16].copy_from_slice(&2_u64.to_le_bytes());
        t[24..32].copy_from_slice(&0x40_1000_u64.to_le_bytes());
        let funcnames = t.len();
        t.extend_from_slice(b"a\0b\0");
        let pcln = t.len();
        t[32..40].copy_from_slice(&(funcnames as u64).to_le_bytes());
        t[64..72].copy_from_slice(&(pcln as u64).to_le_bytes());
        // functab: (0x10, 24), (0x30, 32), end 0x40; then two _funcs.
        for (entry, func) in [(0x10_u32, 24_u32), (0x30, 32), (0x40, 0)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&func.to_le_bytes());
        }
        for (entry, name) in [(0x10_u32, 0_u32), (0x30, 2)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&name.to_le_bytes());
        }
        t
    }

    #[test]
    fn finds_functions_by_name() {
        let got = lookup(&table(), 0, &["b", "a", "c"]).expect("a table");
        assert_eq!(
            got,
            [Some((0x40_1030, 0x10)), Some((0x40_1010, 0x20)), None]
        );
    }

    #[test]
    fn truncated_or_foreign_tables_are_none() {
        let t = table();
        for cut in [0, 4, 60, t.len() - 3] {
            assert_eq!(lookup(&t[..cut], 0, &["b"]), None, "cut at {cut}");
        }
        let mut other = t.clone();
        other[0] = 0xfb;
        assert_eq!(lookup(&other, 0, &["a"]), None);
    }
}
