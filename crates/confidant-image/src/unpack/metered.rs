//! A bound on how much of the tar stream the parser may read between two entries.
//!
//! The `tar` crate reads PAX headers and GNU long names into memory whole. Their size comes from
//! the archive, so a compressed layer of a few megabytes could declare a PAX header of many
//! gigabytes of zeros and have it all allocated before any entry reaches the unpack budget.
//! [`MeteredReader`] sits under the parser and lets it read, past the start of each entry's
//! data, that entry's (padded) data plus `max_header_bytes` for the headers of the next entry;
//! reading beyond that fails, and the unpack reports [`crate::Error::Limit`].

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Tar block size: entry data is padded to a multiple of it.
const BLOCK: u64 = 512;

/// The shared state of a [`MeteredReader`]: bytes read, bytes allowed.
#[derive(Debug)]
pub(crate) struct Meter {
    consumed: Cell<u64>,
    allowed: Cell<u64>,
    max_header_bytes: u64,
    tripped: Cell<bool>,
}

impl Meter {
    /// A meter that first allows `max_header_bytes` for the headers of the first entry.
    pub(crate) fn new(max_header_bytes: u64) -> Rc<Self> {
        Rc::new(Self {
            consumed: Cell::new(0),
            allowed: Cell::new(max_header_bytes),
            max_header_bytes,
            tripped: Cell::new(false),
        })
    }

    /// Called when the parser has yielded an entry with `size` bytes of data: allows that data,
    /// padded to the block size, and the headers of the next entry.
    pub(crate) fn allow_entry(&self, size: u64) {
        let padded = size.div_ceil(BLOCK).saturating_mul(BLOCK);
        self.allowed.set(
            self.consumed
                .get()
                .saturating_add(padded)
                .saturating_add(self.max_header_bytes),
        );
    }

    /// Whether a read was refused for going past the allowance.
    pub(crate) fn tripped(&self) -> bool {
        self.tripped.get()
    }

    /// Bytes of the stream read so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed.get()
    }
}

/// A reader that refuses to read past what its [`Meter`] allows.
pub(crate) struct MeteredReader<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R> MeteredReader<R> {
    pub(crate) fn new(inner: R, meter: Rc<Meter>) -> Self {
        Self { inner, meter }
    }
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let consumed = self.meter.consumed.get();
        let left = self.meter.allowed.get().saturating_sub(consumed);
        if left == 0 {
            self.meter.tripped.set(true);
            return Err(io::Error::other(format!(
                "tar headers longer than max_header_bytes ({}) at stream offset {consumed}",
                self.meter.max_header_bytes
            )));
        }
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let read = self.inner.read(&mut buf[..n])?;
        self.meter.consumed.set(consumed + read as u64);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_reads_past_the_allowance() {
        let meter = Meter::new(1024);
        let mut reader = MeteredReader::new(io::repeat(0), meter.clone());
        let mut buf = vec![0; 4096];
        assert_eq!(reader.read(&mut buf).unwrap(), 1024);
        assert!(reader.read(&mut buf).is_err());
        assert!(meter.tripped());
        meter.allow_entry(10);
        assert_eq!(reader.read(&mut buf).unwrap(), 512 + 1024);
        assert_eq!(meter.consumed(), 1024 + 512 + 1024);
    }
}
