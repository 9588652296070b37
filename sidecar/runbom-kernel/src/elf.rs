//! Where an ELF file defines some of its exported (dynamic) symbols, as file offsets that a
//! uprobe attaches to. Used for OpenSSL's `SSL_write`/`SSL_read`, wherever they are linked:
//! `libssl.so.3`, a wheel's bundled copy, Node's `node` executable, a `BoringSSL` build; and,
//! through [`defined_symbols`] on `.symtab`, for Go's `crypto/tls` functions ([`crate::gotls`]).
//!
//! Cheap and bounded: only the file's headers and its dynamic symbol and string tables are
//! read, each table in one piece (Node's are 7 MiB of its 99 MiB); files whose tables are larger
//! than [`TABLES_MAX`] are not searched. Each file is looked at once (the caller deduplicates by device and inode).
//!
//! The file is read (`pread`, through `object`'s [`ReadCache`]), never mapped: the files are any
//! process's executables and libraries, some owned by unprivileged users, and one truncated
//! while runbom reads it would kill a mapping's reader with `SIGBUS`; a read just fails. It is
//! opened without blocking and must be a regular file, as the opened file says (a FIFO put in
//! its place after the caller looked would otherwise block the open).

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use object::{
    Endianness, Object as _, ObjectSection as _, ReadCache, ReadRef, SectionIndex, StringTable,
    elf, read::elf::Sym,
};

/// Largest `.dynsym` + `.dynstr` searched (Node's are 7 MiB).
pub const TABLES_MAX: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot open or read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an ELF file: {0}")]
    Parse(#[from] object::Error),
    #[error("its dynamic symbol tables are larger than {TABLES_MAX} bytes")]
    TooLarge,
}

/// The file offset of each of `wanted` that `path` defines in its dynamic symbol table, in the
/// order of `wanted` (`None` where it is not defined there).
pub fn exported_offsets(path: &Path, wanted: &[&str]) -> Result<Vec<Option<u64>>, ElfError> {
    exported_in(&open(path)?, wanted)
}

/// [`exported_offsets`] of a file [`open`]ed.
fn exported_in(data: &ReadCache<File>, wanted: &[&str]) -> Result<Vec<Option<u64>>, ElfError> {
    let file = object::File::parse(data)?;
    let Some(found) = defined_symbols(&file, ".dynsym", ".dynstr", wanted)? else {
        return Ok(vec![None; wanted.len()]);
    };
    Ok(found
        .into_iter()
        .map(|f| f.and_then(|f| file_offset(&file, f.section, f.value)))
        .collect())
}

/// A symbol that a file defines.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Defined {
    pub section: u16,
    /// Its address (`st_value`).
    pub value: u64,
    pub size: u64,
}

/// Each of `wanted` (in its order) as the symbol table `table` defines it (`.dynsym` or
/// `.symtab`, its names in `strings`; an undefined symbol is an import, not a definition).
/// `None` when the file has no such table or it holds no symbol.
///
/// Each table is read in one piece and searched in memory: read through the file's cache, each
/// name would be a read of its own (Node has about 80 000 of them).
pub(crate) fn defined_symbols<'d, R: ReadRef<'d>>(
    file: &object::File<'d, R>,
    table: &str,
    strings: &str,
    wanted: &[&str],
) -> Result<Option<Vec<Option<Defined>>>, ElfError> {
    let (Some(symbols), Some(strings)) =
        (file.section_by_name(table), file.section_by_name(strings))
    else {
        return Ok(None);
    };
    if symbols.size().saturating_add(strings.size()) > TABLES_MAX {
        return Err(ElfError::TooLarge);
    }
    let (symbols, strings) = (symbols.data()?, strings.data()?);
    let strings = StringTable::new(strings, 0, strings.len() as u64);
    let endian = if file.is_little_endian() {
        Endianness::Little
    } else {
        Endianness::Big
    };
    if file.is_64() {
        Ok(search::<elf::Sym64<Endianness>>(
            symbols, strings, endian, wanted,
        ))
    } else {
        Ok(search::<elf::Sym32<Endianness>>(
            symbols, strings, endian, wanted,
        ))
    }
}

/// [`defined_symbols`] in the table's bytes.
fn search<'d, S: Sym<Endian = Endianness>>(
    symbols: &[u8],
    strings: StringTable<'d, &'d [u8]>,
    endian: Endianness,
    wanted: &[&str],
) -> Option<Vec<Option<Defined>>> {
    let count = symbols.len() / std::mem::size_of::<S>();
    // The first entry is the null symbol.
    let (symbols, _) = object::pod::slice_from_bytes::<S>(symbols, count).ok()?;
    if symbols.len() < 2 {
        return None;
    }
    let mut out = vec![None; wanted.len()];
    for sym in symbols {
        let section = sym.st_shndx(endian);
        if section == elf::SHN_UNDEF || section >= elf::SHN_LORESERVE {
            continue;
        }
        let Ok(name) = sym.name(endian, strings) else {
            continue;
        };
        // Names are compared as bytes: most symbols fail on their length alone.
        if let Some(i) = wanted.iter().position(|w| w.as_bytes() == name) {
            out[i] = Some(Defined {
                section,
                value: sym.st_value(endian).into(),
                size: sym.st_size(endian).into(),
            });
        }
    }
    Some(out)
}

/// `address - section address + section file offset`, as the kernel wants a uprobe's place.
fn file_offset<'d, R: ReadRef<'d>>(
    file: &object::File<'d, R>,
    section: u16,
    address: u64,
) -> Option<u64> {
    let section = file
        .section_by_index(SectionIndex(usize::from(section)))
        .ok()?;
    let (offset, _) = section.file_range()?;
    Some(address.checked_sub(section.address())? + offset)
}

/// `path` opened for reading its ELF structures: a non-empty regular file (see the module).
pub(crate) fn open(path: &Path) -> io::Result<ReadCache<File>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() == 0 {
        return Err(io::Error::other("empty file"));
    }
    Ok(ReadCache::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_defined_exports_only() {
        let libssl = Path::new("/lib/x86_64-linux-gnu/libssl.so.3");
        if !libssl.exists() {
            return;
        }
        let got = exported_offsets(libssl, &["SSL_write", "SSL_read_ex", "no_such_symbol"])
            .expect("libssl parses");
        assert!(got[0].is_some() && got[1].is_some(), "{got:?}");
        assert_eq!(got[2], None);
        // libcurl imports SSL_write from libssl (undefined there): not an export.
        let curl = Path::new("/lib/x86_64-linux-gnu/libcurl.so.4");
        if curl.exists() {
            let got = exported_offsets(curl, &["SSL_write"]).expect("libcurl parses");
            assert_eq!(got, [None]);
        }
    }

    /// The tables searched in memory give what `object`'s own symbol reader gives, on the
    /// files runbom meets: Node (OpenSSL linked in), libssl, libcrypto, and a file that only
    /// imports (`libcurl`).
    #[test]
    fn offsets_are_those_of_objects_symbol_reader() {
        use object::ObjectSymbol as _;
        let wanted = [
            "SSL_write",
            "SSL_read",
            "SSL_write_ex",
            "SSL_read_ex",
            "SSL_free",
        ];
        let mut checked = 0;
        for path in [
            "/usr/bin/node",
            "/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libcrypto.so.3",
            "/lib/x86_64-linux-gnu/libcurl.so.4",
        ] {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let file = object::File::parse(&*bytes).expect("parses");
            let reference: Vec<Option<u64>> = wanted
                .iter()
                .map(|w| {
                    let sym = file
                        .dynamic_symbols()
                        .find(|s| !s.is_undefined() && s.name_bytes() == Ok(w.as_bytes()))?;
                    let section = file.section_by_index(sym.section_index()?).ok()?;
                    Some(sym.address() - section.address() + section.file_range()?.0)
                })
                .collect();
            let got = exported_offsets(Path::new(path), &wanted).expect("reads");
            assert_eq!(got, reference, "{path}");
            checked += 1;
        }
        assert!(checked > 0, "no ELF file to compare on this machine");
    }

    #[test]
    fn not_elf_is_an_error() {
        let dir = std::env::temp_dir().join(format!("runbom-elf-{}", std::process::id()));
        std::fs::write(&dir, b"#!/bin/sh\necho hi\n").expect("write");
        let got = exported_offsets(&dir, &["SSL_write"]);
        let _ = std::fs::remove_file(&dir);
        assert!(matches!(got, Err(ElfError::Parse(_))), "{got:?}");
    }

    #[test]
    fn a_file_truncated_while_it_is_read_is_an_error_not_a_crash() {
        // As an unprivileged user can do to its own executable while runbom reads it: with the
        // file mapped, reading past its new end was SIGBUS for the whole process.
        let copy = std::env::temp_dir().join(format!("runbom-elf-cut-{}", std::process::id()));
        std::fs::copy("/proc/self/exe", &copy).expect("copy this test binary");
        let data = open(&copy).expect("open");
        File::options()
            .write(true)
            .open(&copy)
            .and_then(|f| f.set_len(64))
            .expect("truncate");
        let got = exported_in(&data, &["SSL_write"]);
        let _ = std::fs::remove_file(&copy);
        assert!(got.is_err(), "{got:?}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let fifo = std::env::temp_dir().join(format!("runbom-elf-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a NUL-terminated path; creates a FIFO there.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let got = exported_offsets(&fifo, &["SSL_write"]);
        let _ = std::fs::remove_file(&fifo);
        assert!(matches!(got, Err(ElfError::Io(_))), "{got:?}");
    }
}
