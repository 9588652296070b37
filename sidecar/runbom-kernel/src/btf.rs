//! The few struct member offsets the probes need from the running kernel's BTF (the kernel's
//! `Documentation/bpf/btf.rst` format): `process.exec` reads the new image's argv at
//! `current->mm->arg_start .. arg_end`, and the eBPF programs cannot be relocated (no CO-RE in
//! Rust programs), so userspace finds the offsets here and passes them in `ProbeConfig`.
//!
//! A reader of its own: aya 0.14 parses BTF but keeps struct members private, and the
//! maintained BTF crates are either LGPL or need libbpf. It reads only what offsets need: the
//! type section's records (to step over each kind), struct names and members, and the
//! modifiers (`typedef`, `const`, ...) between an anonymous member and its struct.

use std::path::Path;

const MAGIC: u16 = 0xeb9f;
/// `btf_header`: magic, version, flags, `hdr_len`, then `type_off`, `type_len`, `str_off`,
/// `str_len` (offsets from the header's end).
const HEADER_LEN: usize = 24;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
/// The last kind this reader knows how to step over.
const KIND_MAX: u32 = 19;

/// Deepest nesting of anonymous structs and unions searched for a member.
const NESTING_MAX: usize = 8;

/// Where `process.exec` finds the new image's argv, in bytes from the start of each struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecOffsets {
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `mm_struct.arg_start`.
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`.
    pub mm_arg_end: u32,
}

impl ExecOffsets {
    /// Reads the offsets from the BTF file at `path` (the kernel's is `/sys/kernel/btf/vmlinux`).
    ///
    /// # Errors
    /// The file cannot be read, is not BTF, or lacks one of the members; the message names
    /// the file and what is missing.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_btf(&data).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The offsets in the BTF blob `data`.
    ///
    /// # Errors
    /// As [`ExecOffsets::from_file`], without the file's name.
    pub fn from_btf(data: &[u8]) -> Result<Self, String> {
        let btf = Btf::parse(data)?;
        Ok(Self {
            task_mm: btf.member_offset("task_struct", "mm")?,
            mm_arg_start: btf.member_offset("mm_struct", "arg_start")?,
            mm_arg_end: btf.member_offset("mm_struct", "arg_end")?,
        })
    }
}

/// A parsed BTF blob: where each type's record starts, by type id (id 0 is `void`).
struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// `starts[id - 1]`: offset of type `id`'s record in `types`.
    starts: Vec<usize>,
}

/// One type record's common part.
#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type` (a type id), by kind.
    size_or_id: u32,
    /// Offset of the kind's trailing data (members, ...) in the type section.
    tail: usize,
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, String> {
        let u16_at = |at: usize| {
            data.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        match u16_at(0) {
            Some(MAGIC) => {}
            Some(m) if m == MAGIC.swap_bytes() => {
                return Err("BTF of the other byte order is not supported".into());
            }
            _ => return Err("not BTF (no magic 0xeb9f at the start)".into()),
        }
        let word = |at: usize| read_u32(data, at).ok_or("BTF header truncated");
        let hdr_len = word(4)? as usize;
        if hdr_len < HEADER_LEN {
            return Err(format!("BTF header length {hdr_len} is below {HEADER_LEN}"));
        }
        let section = |off: usize, len: usize, what: &str| {
            let start = hdr_len.checked_add(off);
            start
                .and_then(|s| data.get(s..s.checked_add(len)?))
                .ok_or_else(|| format!("BTF {what} section lies outside the file"))
        };
        let types = section(word(8)? as usize, word(12)? as usize, "type")?;
        let strings = section(word(16)? as usize, word(20)? as usize, "string")?;
        let mut starts = Vec::new();
        let mut at = 0;
        while at < types.len() {
            starts.push(at);
            let t = type_at(types, at)?;
            at = t.tail + tail_len(&t)?;
        }
        if at != types.len() {
            return Err("BTF type section ends inside a type".into());
        }
        Ok(Self {
            types,
            strings,
            starts,
        })
    }

    fn get(&self, id: u32) -> Result<Type, String> {
        let at = (id as usize)
            .checked_sub(1)
            .and_then(|i| self.starts.get(i))
            .ok_or_else(|| format!("BTF type id {id} does not exist"))?;
        type_at(self.types, *at)
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// Byte offset of `member` in the struct named `name`, looking into anonymous structs and
    /// unions the way C does.
    fn member_offset(&self, name: &str, member: &str) -> Result<u32, String> {
        let mut found_struct = false;
        for id in 1..=self.starts.len() as u32 {
            let t = self.get(id)?;
            if t.kind != KIND_STRUCT || t.vlen == 0 || self.name(t.name_off) != name.as_bytes() {
                continue;
            }
            found_struct = true;
            if let Some(bits) = self.find_member(&t, member.as_bytes(), 0)? {
                if bits % 8 != 0 {
                    return Err(format!("struct {name} member {member} is a bit field"));
                }
                return u32::try_from(bits / 8)
                    .map_err(|_| format!("struct {name} member {member}: offset too large"));
            }
        }
        Err(if found_struct {
            format!("struct {name} has no member {member}")
        } else {
            format!("no struct {name}")
        })
    }

    /// The bit offset of `member` in the struct or union `t`.
    fn find_member(&self, t: &Type, member: &[u8], depth: usize) -> Result<Option<u64>, String> {
        for i in 0..t.vlen {
            let at = t.tail + 12 * i;
            let (name_off, type_id, offset) = (
                word(self.types, at)?,
                word(self.types, at + 4)?,
                word(self.types, at + 8)?,
            );
            // With `kind_flag`, the upper 8 bits hold a bit field's size.
            let bits = u64::from(if t.kind_flag {
                offset & 0x00ff_ffff
            } else {
                offset
            });
            if name_off != 0 {
                if self.name(name_off) == member {
                    return Ok(Some(bits));
                }
                continue;
            }
            if depth >= NESTING_MAX {
                continue;
            }
            let inner = self.resolve(type_id)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some(found) = self.find_member(&inner, member, depth + 1)?
            {
                return Ok(Some(bits + found));
            }
        }
        Ok(None)
    }

    /// The type `id` names, through typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Result<Type, String> {
        for _ in 0..NESTING_MAX {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_id;
                }
                _ => return Ok(t),
            }
        }
        Err(format!("BTF type id {id}: qualifiers nested too deeply"))
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn word(types: &[u8], at: usize) -> Result<u32, String> {
    read_u32(types, at).ok_or_else(|| format!("BTF type section truncated at byte {at}"))
}

fn type_at(types: &[u8], at: usize) -> Result<Type, String> {
    let info = word(types, at + 4)?;
    Ok(Type {
        name_off: word(types, at)?,
        kind: (info >> 24) & 0x1f,
        vlen: (info & 0xffff) as usize,
        kind_flag: info >> 31 != 0,
        size_or_id: word(types, at + 8)?,
        tail: at + 12,
    })
}

/// Bytes of kind-specific data after a type's common part.
fn tail_len(t: &Type) -> Result<usize, String> {
    Ok(match t.kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen,
        k if k == 0 || k > KIND_MAX => {
            return Err(format!("BTF kind {k} is unknown to this reader"));
        }
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob of `types` (each type's words: common part and tail) over `strings`.
    fn blob(types: &[Vec<u32>], strings: &[u8]) -> Vec<u8> {
        let section: Vec<u8> = types
            .iter()
            .flatten()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [24, 0, section.len() as u32, section.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&section);
        out.extend_from_slice(strings);
        out
    }

    /// The offset of `name` in `strings`.
    fn at(strings: &[u8], name: &str) -> u32 {
        let pat = format!("\0{name}\0");
        strings
            .windows(pat.len())
            .position(|w| w == pat.as_bytes())
            .unwrap() as u32
            + 1
    }

    const STRUCT: u32 = KIND_STRUCT << 24;

    #[test]
    fn members_inside_anonymous_structs_add_their_offsets() {
        let strings = b"\0int\0mm_struct\0x\0arg_start\0arg_end\0task_struct\0pad\0mm\0";
        let s = |name| at(strings, name);
        let types = [
            // 1: int (4 bytes of encoding follow).
            vec![s("int"), KIND_INT << 24, 4, 32],
            // 2: struct mm_struct { struct { int x, arg_start, arg_end; } at bit 64 }.
            vec![s("mm_struct"), STRUCT | 1, 20, 0, 5, 64],
            // 3: `const` of 4, to be looked through.
            vec![0, KIND_CONST << 24, 4],
            // 4: the anonymous struct.
            vec![
                0,
                STRUCT | 3,
                12, //
                s("x"),
                1,
                0, //
                s("arg_start"),
                1,
                32, //
                s("arg_end"),
                1,
                64,
            ],
            // 5: typedef of 3.
            vec![0, KIND_TYPEDEF << 24, 3],
            // 6: struct task_struct { int pad; int mm at byte 32 }.
            vec![
                s("task_struct"),
                STRUCT | 2,
                40,
                s("pad"),
                1,
                0,
                s("mm"),
                1,
                256,
            ],
        ];
        assert_eq!(
            ExecOffsets::from_btf(&blob(&types, strings)).unwrap(),
            ExecOffsets {
                task_mm: 32,
                mm_arg_start: 12,
                mm_arg_end: 16
            }
        );
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        let err = |data: &[u8]| ExecOffsets::from_btf(data).unwrap_err();
        assert!(err(b"nonsense").contains("magic"));
        let strings = b"\0task_struct\0mm\0";
        let (name, mm) = (at(strings, "task_struct"), at(strings, "mm"));
        let data = blob(&[vec![name, STRUCT | 1, 8, mm, 0, 0]], strings);
        assert_eq!(err(&data), "no struct mm_struct");
        let data = blob(&[vec![name, STRUCT | 1, 8, name, 0, 0]], strings);
        assert_eq!(err(&data), "struct task_struct has no member mm");
        let data = blob(&[vec![name, STRUCT | (1 << 31) | 1, 8, mm, 0, 3]], strings);
        assert_eq!(err(&data), "struct task_struct member mm is a bit field");
        let data = blob(&[vec![name, 30 << 24, 8]], strings);
        assert!(err(&data).contains("kind 30 is unknown"));
        let mut outside = blob(&[vec![name, STRUCT | 1, 8, mm, 0, 0]], strings);
        outside[20] += 100;
        assert!(err(&outside).contains("string section lies outside the file"));
        let cut = blob(&[vec![name, STRUCT | 2, 8, mm, 0, 0]], strings);
        assert_eq!(err(&cut), "BTF type section ends inside a type");
    }

    #[test]
    fn the_running_kernels_btf_has_the_exec_offsets() {
        let got = ExecOffsets::from_file(Path::new(crate::probes::KERNEL_BTF)).unwrap();
        // `arg_end` follows `arg_start` in every kernel that has them.
        assert_eq!(got.mm_arg_end, got.mm_arg_start + 8);
        assert!(got.task_mm > 0);
    }
}
