//! The body of a blob upload: the reader's bytes, counted and hashed on their way out.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use crate::{Error, Result};

/// Bytes read from a blob source per body chunk.
const UPLOAD_CHUNK: usize = 256 << 10;

/// Where an upload body leaves the reason it aborted the request.
pub(crate) type Verdict = Arc<Mutex<Option<Error>>>;

/// Takes the reason an upload body aborted, if it did.
pub(crate) fn take_failure(verdict: &Verdict) -> Option<Error> {
    verdict.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// A blob upload body: the reader's chunks, counted and hashed; ends with an error (aborting the
/// request) if the bytes are not `size` long or do not hash to `digest`.
pub(crate) struct UploadBody<R> {
    reader: ReaderStream<R>,
    hasher: Option<Sha256>,
    sent: u64,
    size: u64,
    digest: String,
    done: bool,
    failure: Verdict,
}

impl<R: AsyncRead> UploadBody<R> {
    /// A body of the first `size` bytes of `reader`, which must hash to `digest`.
    pub(crate) fn new(reader: R, size: u64, digest: &str) -> (Self, Verdict) {
        let failure = Verdict::default();
        let body = UploadBody {
            reader: ReaderStream::with_capacity(reader, UPLOAD_CHUNK),
            hasher: Some(Sha256::new()),
            sent: 0,
            size,
            digest: digest.to_owned(),
            done: false,
            failure: failure.clone(),
        };
        (body, failure)
    }
}

impl<R> UploadBody<R> {
    /// Checks the digest once all `size` bytes are hashed (a no-op if already checked).
    fn finish(&mut self) -> Result<()> {
        let Some(h) = self.hasher.take() else {
            return Ok(());
        };
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if got != self.digest {
            return Err(Error::integrity(
                format!("blob {} being pushed", self.digest),
                &self.digest,
                got,
            ));
        }
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Poll<Option<std::io::Result<Bytes>>> {
        let msg = e.to_string();
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        self.done = true;
        Poll::Ready(Some(Err(std::io::Error::other(msg))))
    }
}

impl<R: AsyncRead + Unpin> futures_util::Stream for UploadBody<R> {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.sent == this.size && this.hasher.is_none() {
            // All bytes sent and verified; bytes past `size` are not read.
            this.done = true;
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.reader).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                let digest = this.digest.clone();
                this.fail(Error::io("read blob", digest, e))
            }
            Poll::Ready(Some(Ok(mut chunk))) => {
                let room = this.size - this.sent;
                if chunk.len() as u64 > room {
                    chunk.truncate(room as usize);
                }
                this.sent += chunk.len() as u64;
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&chunk);
                }
                if this.sent == this.size {
                    // The last chunk: hyper stops polling once Content-Length bytes are out, so
                    // the digest is checked now, and a wrong one withholds the chunk, aborting
                    // the request before the registry has the whole blob.
                    if let Err(e) = this.finish() {
                        return this.fail(e);
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                if this.sent != this.size {
                    let what = format!("blob {} being pushed: size", this.digest);
                    let (size, sent) = (this.size.to_string(), this.sent.to_string());
                    return this.fail(Error::integrity(what, size, sent));
                }
                if let Err(e) = this.finish() {
                    return this.fail(e);
                }
                Poll::Ready(None)
            }
        }
    }
}
