//! Where a Go executable's `crypto/tls.(*Conn).Write` and `Read` start and return, as file
//! offsets for uprobes. Go functions are not hooked with return probes (they rewrite the
//! return address, which Go's stack copying does not expect): every `RET` instruction of the
//! function gets a probe instead, found by decoding its machine code (x86-64).
//!
//! Functions are found in the static symbol table (`.symtab`), or, in executables stripped of
//! it (`go build -ldflags="-s -w"`), in Go's own function table (`.gopclntab`, [`pcln`]).

use std::path::Path;

use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use object::{Object as _, ObjectSection as _, ReadRef};

use crate::elf::{self, ElfError};

mod pcln;

pub const WRITE: &str = "crypto/tls.(*Conn).Write";
pub const READ: &str = "crypto/tls.(*Conn).Read";

/// Largest function decoded (Go's `(*Conn).Write`/`Read` are a few hundred bytes).
const FUNCTION_MAX: u64 = 64 << 10;

/// A function's entry and the `RET` instructions where it returns, as file offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Function {
    pub entry: u64,
    pub returns: Vec<u64>,
}

/// `crypto/tls` in one Go executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoTls {
    pub write: Function,
    pub read: Function,
}

#[derive(Debug, thiserror::Error)]
pub enum GoTlsError {
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("its .gopclntab is not one runbom reads (Go 1.18 or later, 64-bit)")]
    Pclntab,
    #[error("{0}: not where its symbol says, or longer than {FUNCTION_MAX} bytes")]
    BadFunction(&'static str),
    #[error("{0}: no RET instruction found")]
    NoReturn(&'static str),
}

/// `crypto/tls` of `path` when it is a Go executable that links it; `None` for anything else.
///
/// # Errors
/// The file cannot be read, or it is a Go executable runbom cannot hook (say why).
pub fn find(path: &Path) -> Result<Option<GoTls>, GoTlsError> {
    let data = elf::open(path).map_err(ElfError::Io)?;
    let file = object::File::parse(&data).map_err(ElfError::Parse)?;
    let Some(pclntab) = file.section_by_name(".gopclntab") else {
        return Ok(None);
    };
    let (write, read) =
        if let Some(found) = elf::defined_symbols(&file, ".symtab", ".strtab", &[WRITE, READ])? {
            let place = |f: Option<elf::Defined>| f.map(|f| (f.value, f.size));
            (place(found[0]), place(found[1]))
        } else {
            // Stripped (`-ldflags=-s -w`): Go's own function table still names every function.
            let table = pclntab.data().map_err(ElfError::Parse)?;
            let text = file.section_by_name(".text").map_or(0, |t| t.address());
            let found = pcln::lookup(table, text, &[WRITE, READ]).ok_or(GoTlsError::Pclntab)?;
            (found[0], found[1])
        };
    let (Some(write), Some(read)) = (write, read) else {
        return Ok(None);
    };
    Ok(Some(GoTls {
        write: function(&file, &data, write, WRITE)?,
        read: function(&file, &data, read, READ)?,
    }))
}

/// The entry and `RET`s of the function at `address` (`size` bytes), decoded from the file.
fn function<'d, R: ReadRef<'d>>(
    file: &object::File<'d, R>,
    data: R,
    (address, size): (u64, u64),
    name: &'static str,
) -> Result<Function, GoTlsError> {
    let bad = || GoTlsError::BadFunction(name);
    let section = file
        .sections()
        .find(|s| (s.address()..s.address() + s.size()).contains(&address))
        .ok_or_else(bad)?;
    let (section_offset, section_size) = section.file_range().ok_or_else(bad)?;
    let start = address - section.address();
    if size == 0 || size > FUNCTION_MAX || start + size > section_size {
        return Err(bad());
    }
    let entry = section_offset + start;
    let code = data.read_bytes_at(entry, size).map_err(|()| bad())?;
    let returns = returns(code, address)
        .into_iter()
        .map(|ret| entry + ret)
        .collect::<Vec<_>>();
    if returns.is_empty() {
        return Err(GoTlsError::NoReturn(name));
    }
    Ok(Function { entry, returns })
}

/// Offsets (from the function's start) of the `RET` instructions in `code`, decoded from the
/// start at `address` (Go pads functions with `INT3`, which decodes as itself).
fn returns(code: &[u8], address: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    decoder
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Ret)
        .map(|i| i.ip() - address)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_are_instructions_not_bytes() {
        // mov eax, 0xc3 (a 0xc3 byte inside an instruction); ret; int3; lea rax,[rip+0]; ret
        let code = [
            0xb8, 0xc3, 0, 0, 0, 0xc3, 0xcc, 0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xc3,
        ];
        assert_eq!(returns(&code, 0x40_1000), [5, 14]);
    }

    #[test]
    fn other_files_are_not_go() {
        let libssl = Path::new("/lib/x86_64-linux-gnu/libssl.so.3");
        if libssl.exists() {
            assert_eq!(find(libssl).expect("libssl parses"), None);
        }
    }
}
