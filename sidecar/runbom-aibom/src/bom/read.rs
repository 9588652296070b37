//! Reading a BOM file so that a replaced path cannot hang or exhaust runbom: the open does not
//! wait (`O_NONBLOCK`, so a FIFO without a writer returns at once), the opened file must be a
//! regular file (checked on the descriptor, so a swap between check and read cannot slip a
//! device in), and at most `limit` bytes are read.

use std::{
    fs::OpenOptions,
    io::Read,
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

use super::json::BomError;

/// The file's text, or why it is not read.
pub(super) fn bounded(path: &Path, limit: u64) -> Result<String, BomError> {
    let source_name = || path.display().to_string();
    let read_err = |error| BomError::Read {
        source_name: source_name(),
        error,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(BomError::NotRegularFile {
            source_name: source_name(),
            kind,
        });
    }
    if meta.len() > limit {
        return Err(BomError::TooLarge {
            source_name: source_name(),
            limit,
        });
    }
    // The file may grow between the stat and the read: read one byte past the limit to see it.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limit {
        return Err(BomError::TooLarge {
            source_name: source_name(),
            limit,
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| read_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("runbom-bom-read-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let d = dir("fifo");
        let p = d.join("bom.cdx.json");
        let c = std::ffi::CString::new(p.to_str().expect("utf-8")).expect("no NUL");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = bounded(&p, 1024)
            .expect_err("a FIFO is refused")
            .to_string();
        assert!(
            err.contains("bom.cdx.json: not a regular file (a FIFO)"),
            "{err}"
        );
        std::fs::remove_dir_all(&d).expect("clean up");
    }

    #[test]
    fn a_symlink_to_dev_zero_is_refused() {
        let d = dir("zero");
        let p = d.join("bom.cdx.json");
        std::os::unix::fs::symlink("/dev/zero", &p).expect("symlink");
        let err = bounded(&p, 1024)
            .expect_err("a device is refused")
            .to_string();
        assert!(
            err.contains("not a regular file (a character device)"),
            "{err}"
        );
        std::fs::remove_dir_all(&d).expect("clean up");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_at_it_is_read() {
        let d = dir("size");
        let p = d.join("bom.cdx.json");
        std::fs::write(&p, vec![b' '; 1025]).expect("write");
        let err = bounded(&p, 1024).expect_err("too large").to_string();
        assert!(err.contains("larger than 1024 bytes"), "{err}");
        std::fs::write(&p, vec![b' '; 1024]).expect("write");
        assert_eq!(bounded(&p, 1024).expect("at the limit").len(), 1024);
        std::fs::remove_dir_all(&d).expect("clean up");
    }

    #[test]
    fn a_directory_is_refused() {
        let d = dir("dir");
        let err = bounded(&d, 1024).expect_err("a directory").to_string();
        assert!(err.contains("not a regular file (a directory)"), "{err}");
        std::fs::remove_dir_all(&d).expect("clean up");
    }
}
