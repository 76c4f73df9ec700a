//! [`Read`] and [`Write`] adapters around the layer cipher, for callers that need a stream
//! rather than [`encrypt_to`](super::encrypt_to) / [`decrypt_to`](super::decrypt_to). The
//! decrypting ones report the HMAC verdict where it cannot be missed: instead of end-of-file
//! ([`DecryptingReader`]) or in the only way to finish ([`DecryptingWriter::finish`]).

use std::io::{self, Read, Write};

use aws_lc_rs::constant_time;

use super::{CHUNK_LEN, CtrStream, LayerHmac, LayerKey, LayerMac, stream_error};
use crate::{Error, Result};

/// A [`Read`] adapter that encrypts: reading from it yields the ciphertext of what it reads from
/// the inner reader. [`finish`](Self::finish) gives the HMAC once the end was reached.
pub struct EncryptingReader<R> {
    inner: R,
    ctr: CtrStream,
    mac: LayerMac,
    size: u64,
    at_end: bool,
}

impl<R: Read> EncryptingReader<R> {
    /// Wraps a plaintext reader.
    pub fn new(inner: R, key: &LayerKey) -> Result<Self> {
        Ok(EncryptingReader {
            inner,
            ctr: CtrStream::new(key)?,
            mac: LayerMac::new(key),
            size: 0,
            at_end: false,
        })
    }

    /// The inner reader, the HMAC of the ciphertext and its length; an error if the end of the
    /// plaintext has not been reached yet (the HMAC would cover only part of the layer).
    pub fn finish(self) -> Result<(R, LayerHmac, u64)> {
        if !self.at_end {
            return Err(Error::malformed(
                "layer encryption",
                format!(
                    "expected the plaintext to be read to its end before finishing, stopped after {} bytes",
                    self.size
                ),
            ));
        }
        Ok((self.inner, self.mac.finish(), self.size))
    }
}

impl<R: Read> Read for EncryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at_end || out.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(out)?;
        if n == 0 {
            self.at_end = true;
            return Ok(0);
        }
        self.ctr.apply(&mut out[..n]).map_err(io::Error::other)?;
        self.mac.update(&out[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// A [`Read`] adapter that decrypts: reading from it yields plaintext, and where the inner reader
/// ends it returns an [`io::ErrorKind::InvalidData`] error wrapping [`Error::Integrity`] instead
/// of end-of-file if the HMAC does not match. A consumer that reads to the end (`io::copy`,
/// `read_to_end`, a tar reader) cannot miss the verdict.
pub struct DecryptingReader<R> {
    inner: R,
    ctr: CtrStream,
    mac: Option<LayerMac>,
    expected: LayerHmac,
    size: u64,
    verdict: Option<std::result::Result<(), (String, String)>>,
}

impl<R: Read> DecryptingReader<R> {
    /// Wraps a ciphertext reader.
    pub fn new(inner: R, key: &LayerKey, expected_hmac: &LayerHmac) -> Result<Self> {
        Ok(DecryptingReader {
            inner,
            ctr: CtrStream::new(key)?,
            mac: Some(LayerMac::new(key)),
            expected: *expected_hmac,
            size: 0,
            verdict: None,
        })
    }

    /// Whether the whole ciphertext was read and its HMAC matched.
    pub fn verified(&self) -> bool {
        matches!(self.verdict, Some(Ok(())))
    }

    /// Bytes decrypted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn failure(&self, expected: &str, got: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Error::integrity(
                format!("layer ciphertext ({} bytes) HMAC-SHA256", self.size),
                expected,
                got,
            ),
        )
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &self.verdict {
            Some(Ok(())) => return Ok(0),
            Some(Err((expected, got))) => return Err(self.failure(expected, got)),
            None => {}
        }
        if out.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(out)?;
        if n == 0 {
            let got = self.mac.take().map(LayerMac::finish).unwrap_or_default();
            if constant_time::verify_slices_are_equal(&got, &self.expected).is_ok() {
                self.verdict = Some(Ok(()));
                return Ok(0);
            }
            let verdict = (hex::encode(self.expected), hex::encode(got));
            let err = self.failure(&verdict.0, &verdict.1);
            self.verdict = Some(Err(verdict));
            return Err(err);
        }
        if let Some(mac) = self.mac.as_mut() {
            mac.update(&out[..n]);
        }
        self.ctr.apply(&mut out[..n]).map_err(io::Error::other)?;
        self.size += n as u64;
        Ok(n)
    }
}

/// A [`Write`] adapter that encrypts: plaintext written to it goes to the inner writer as
/// ciphertext. Call [`finish`](Self::finish) for the HMAC.
#[must_use = "the HMAC is only available from finish()"]
pub struct EncryptingWriter<W: Write> {
    inner: W,
    ctr: CtrStream,
    mac: LayerMac,
    scratch: Vec<u8>,
    size: u64,
    poisoned: bool,
}

impl<W: Write> EncryptingWriter<W> {
    /// Wraps a ciphertext writer.
    pub fn new(inner: W, key: &LayerKey) -> Result<Self> {
        Ok(EncryptingWriter {
            inner,
            ctr: CtrStream::new(key)?,
            mac: LayerMac::new(key),
            scratch: Vec::new(),
            size: 0,
            poisoned: false,
        })
    }

    /// Flushes and returns the inner writer, the HMAC of the ciphertext and its length.
    pub fn finish(mut self) -> Result<(W, LayerHmac, u64)> {
        if self.poisoned {
            return Err(Error::malformed(
                "layer encryption",
                "an earlier write failed; the ciphertext is incomplete",
            ));
        }
        self.inner
            .flush()
            .map_err(stream_error("writing", "layer ciphertext"))?;
        Ok((self.inner, self.mac.finish(), self.size))
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.poisoned {
            return Err(io::Error::other("an earlier write failed"));
        }
        let take = buf.len().min(CHUNK_LEN);
        self.scratch.clear();
        self.scratch.extend_from_slice(&buf[..take]);
        self.ctr
            .apply(&mut self.scratch)
            .map_err(io::Error::other)?;
        self.mac.update(&self.scratch);
        if let Err(e) = self.inner.write_all(&self.scratch) {
            self.poisoned = true;
            return Err(e);
        }
        self.size += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A [`Write`] adapter that decrypts: ciphertext written to it goes to the inner writer as
/// plaintext. [`finish`](Self::finish) takes the expected HMAC and fails with
/// [`Error::Integrity`] if it does not match; until then the plaintext is unverified.
#[must_use = "the plaintext is unverified until finish() checks the HMAC"]
pub struct DecryptingWriter<W: Write> {
    inner: W,
    ctr: CtrStream,
    mac: LayerMac,
    scratch: Vec<u8>,
    size: u64,
    poisoned: bool,
}

impl<W: Write> DecryptingWriter<W> {
    /// Wraps a plaintext writer.
    pub fn new(inner: W, key: &LayerKey) -> Result<Self> {
        Ok(DecryptingWriter {
            inner,
            ctr: CtrStream::new(key)?,
            mac: LayerMac::new(key),
            scratch: Vec::new(),
            size: 0,
            poisoned: false,
        })
    }

    /// Flushes, checks the HMAC over all ciphertext written, and returns the inner writer and
    /// the length.
    pub fn finish(mut self, expected_hmac: &LayerHmac) -> Result<(W, u64)> {
        if self.poisoned {
            return Err(Error::malformed(
                "layer decryption",
                "an earlier write failed; the plaintext is incomplete",
            ));
        }
        self.inner
            .flush()
            .map_err(stream_error("writing", "layer plaintext"))?;
        self.mac.verify(expected_hmac, self.size)?;
        Ok((self.inner, self.size))
    }
}

impl<W: Write> Write for DecryptingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.poisoned {
            return Err(io::Error::other("an earlier write failed"));
        }
        let take = buf.len().min(CHUNK_LEN);
        self.mac.update(&buf[..take]);
        self.scratch.clear();
        self.scratch.extend_from_slice(&buf[..take]);
        self.ctr
            .apply(&mut self.scratch)
            .map_err(io::Error::other)?;
        if let Err(e) = self.inner.write_all(&self.scratch) {
            self.poisoned = true;
            return Err(e);
        }
        self.size += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
