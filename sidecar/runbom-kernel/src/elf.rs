//! Where an ELF file defines some of its exported (dynamic) symbols, as file offsets that a
//! uprobe attaches to. Used for OpenSSL's `SSL_write`/`SSL_read`, wherever they are linked:
//! `libssl.so.3`, a wheel's bundled copy, Node's `node` executable, a `BoringSSL` build.
//!
//! Cheap and bounded: the file is mapped, not read, so only its headers and its dynamic symbol
//! and string tables are paged in (Node's are 7 MiB of its 99 MiB); files whose tables are
//! larger than [`TABLES_MAX`] are not searched. Each file is looked at once (the caller
//! deduplicates by device and inode).

use std::{fs::File, os::fd::AsRawFd as _, path::Path};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// Largest `.dynsym` + `.dynstr` searched (Node's are 7 MiB).
pub const TABLES_MAX: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot open or map the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an ELF file: {0}")]
    Parse(#[from] object::Error),
    #[error("its dynamic symbol tables are larger than {TABLES_MAX} bytes")]
    TooLarge,
}

/// The file offset of each of `wanted` that `path` defines in its dynamic symbol table, in the
/// order of `wanted` (`None` where it is not defined there).
pub fn exported_offsets(path: &Path, wanted: &[&str]) -> Result<Vec<Option<u64>>, ElfError> {
    let map = Mapped::open(path)?;
    let file = object::File::parse(map.bytes())?;
    let tables: u64 = file
        .sections()
        .filter(|s| s.name().is_ok_and(|n| n == ".dynsym" || n == ".dynstr"))
        .map(|s| s.size())
        .sum();
    if tables > TABLES_MAX {
        return Err(ElfError::TooLarge);
    }
    let mut out = vec![None; wanted.len()];
    for sym in file.dynamic_symbols() {
        if sym.is_undefined() {
            continue;
        }
        let Ok(name) = sym.name_bytes() else { continue };
        // Names are compared as bytes: most symbols fail on their length alone.
        let Some(i) = wanted.iter().position(|w| w.as_bytes() == name) else {
            continue;
        };
        out[i] = file_offset(&file, &sym);
    }
    Ok(out)
}

/// `address - section address + section file offset`, as the kernel wants a uprobe's place.
fn file_offset(file: &object::File<'_>, sym: &object::Symbol<'_, '_>) -> Option<u64> {
    let section = file.section_by_index(sym.section_index()?).ok()?;
    let (offset, _) = section.file_range()?;
    Some(sym.address().checked_sub(section.address())? + offset)
}

/// A file mapped read-only and private (unmapped on drop).
pub(crate) struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: a fresh private read-only mapping of a file we opened; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { ptr, len })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable for as long as `self` lives. A file truncated
        // while mapped would fault on access: uprobe targets are executables and libraries,
        // which are replaced (new inode), not truncated in place.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
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

    #[test]
    fn not_elf_is_an_error() {
        let dir = std::env::temp_dir().join(format!("runbom-elf-{}", std::process::id()));
        std::fs::write(&dir, b"#!/bin/sh\necho hi\n").expect("write");
        let got = exported_offsets(&dir, &["SSL_write"]);
        let _ = std::fs::remove_file(&dir);
        assert!(matches!(got, Err(ElfError::Parse(_))), "{got:?}");
    }
}
