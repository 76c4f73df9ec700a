//! SHA-256 content digests, computed while bytes stream through.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A content digest of the form `sha256:<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<hex>`; other algorithms are refused (OCI allows sha512 too, which no
    /// image we have met uses).
    pub fn parse(s: &str) -> Result<Digest> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            Error::malformed("digest", format!("expected sha256:<hex>, got {s:?}"))
        })?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::malformed(
                "digest",
                format!("expected 64 lowercase hex digits after sha256:, got {s:?}"),
            ));
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest(format!("sha256:{}", hex::encode(self.hasher.finalize()))),
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and length of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (
            Digest(format!("sha256:{}", hex::encode(self.hasher.finalize()))),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `reader` into `file` (buffered), returning the digest and length of the bytes and the
/// file. With `expected`, a different digest is an [`Error::Integrity`] and the file is dropped
/// (a `NamedTempFile` then disappears), so nothing unverified is kept.
pub fn copy_verified<F: Write>(
    reader: &mut dyn Read,
    file: F,
    expected: Option<&Digest>,
    place: &std::path::Path,
) -> Result<(Digest, u64, F)> {
    let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
    io::copy(reader, &mut w).map_err(|e| unwrap_io(e, "writing a blob into", place))?;
    let (digest, size, buf) = w.finish();
    let file = buf
        .into_inner()
        .map_err(|e| Error::io("writing a blob into", place, e.into_error()))?;
    if let Some(want) = expected
        && want != &digest
    {
        return Err(Error::integrity(
            "blob",
            want.to_string(),
            digest.to_string(),
        ));
    }
    Ok((digest, size, file))
}

/// A reader that fails at end of stream unless the bytes had the expected digest and size.
///
/// Consumers that stage what they read (a temporary file renamed only on success) thereby never
/// commit content that differs from its descriptor.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    what: String,
    expected: Digest,
    expected_size: Option<u64>,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which must yield `expected` (and `expected_size` bytes, when given).
    pub fn new(
        inner: R,
        what: impl Into<String>,
        expected: Digest,
        expected_size: Option<u64>,
    ) -> Self {
        VerifyingReader {
            inner: HashingReader::new(inner),
            what: what.into(),
            expected,
            expected_size,
            done: false,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if let Some(size) = self.expected_size
            && self.inner.count > size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Error::integrity(
                    &self.what,
                    format!("{size} bytes"),
                    format!("more than {size} bytes"),
                ),
            ));
        }
        if n == 0 && !buf.is_empty() {
            self.done = true;
            let hasher = self.inner.hasher.clone();
            let got = Digest(format!("sha256:{}", hex::encode(hasher.finalize())));
            if let Some(size) = self.expected_size
                && self.inner.count != size
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Error::integrity(
                        &self.what,
                        format!("{size} bytes"),
                        format!("{} bytes", self.inner.count),
                    ),
                ));
            }
            if got != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Error::integrity(&self.what, self.expected.to_string(), got.to_string()),
                ));
            }
        }
        Ok(n)
    }
}

/// Turns an I/O error that carries one of our errors (as [`VerifyingReader`] makes) back into it.
pub fn unwrap_io(e: io::Error, action: &'static str, path: &std::path::Path) -> Error {
    match e.downcast::<Error>() {
        Ok(inner) => inner,
        Err(e) => Error::io(action, path, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_reader_accepts_matching_content_and_refuses_other() {
        let d = Digest::of(b"hello");
        let mut ok = VerifyingReader::new(&b"hello"[..], "blob", d.clone(), Some(5));
        let mut out = Vec::new();
        ok.read_to_end(&mut out).unwrap();
        let mut bad = VerifyingReader::new(&b"hellO"[..], "blob", d.clone(), Some(5));
        let err = bad.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("integrity check failed for blob"),
            "{err}"
        );
        let mut short = VerifyingReader::new(&b"hell"[..], "blob", d, Some(5));
        assert!(short.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn digest_parse_refuses_other_shapes() {
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("md5:00").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(Digest::of(b"").as_str()).is_ok());
    }
}
