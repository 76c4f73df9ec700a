//! A synchronous face on [`RegistryClient`] for callers without a tokio runtime (the CLI).

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::client::{BlobPush, RegistryClient, RegistryOptions};
use super::manifest::{Manifest, Platform};
use super::reference::ImageRef;
use crate::{Error, Result};

/// [`RegistryClient`] driven by its own single-threaded tokio runtime. Each method blocks until
/// the request is done; readers and writers are plain `std::io` ones, called on this thread.
///
/// Must not be used from inside an async runtime (tokio panics on nested `block_on`): async code
/// uses [`RegistryClient`] directly.
#[derive(Debug)]
pub struct BlockingRegistryClient {
    client: RegistryClient,
    runtime: tokio::runtime::Runtime,
}

impl BlockingRegistryClient {
    /// A client with these options (see [`RegistryClient::new`]).
    pub fn new(options: RegistryOptions) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("start", "the registry client's tokio runtime", e))?;
        // reqwest's client must be built inside the runtime it will run on.
        let client = runtime.block_on(async { RegistryClient::new(options) })?;
        Ok(BlockingRegistryClient { client, runtime })
    }

    /// The async client underneath.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// See [`RegistryClient::get_manifest`].
    pub fn get_manifest(&self, image: &ImageRef) -> Result<Manifest> {
        self.runtime.block_on(self.client.get_manifest(image))
    }

    /// See [`RegistryClient::get_manifest_for_platform`].
    pub fn get_manifest_for_platform(
        &self,
        image: &ImageRef,
        platform: &Platform,
    ) -> Result<Manifest> {
        self.runtime
            .block_on(self.client.get_manifest_for_platform(image, platform))
    }

    /// See [`RegistryClient::blob_exists`].
    pub fn blob_exists(&self, image: &ImageRef, digest: &str) -> Result<bool> {
        self.runtime
            .block_on(self.client.blob_exists(image, digest))
    }

    /// See [`RegistryClient::get_blob`]: streams into `writer`, verifying size and digest.
    pub fn get_blob<W: Write + ?Sized>(
        &self,
        image: &ImageRef,
        digest: &str,
        expected_size: Option<u64>,
        writer: &mut W,
    ) -> Result<u64> {
        let mut w = SyncWriter(writer);
        self.runtime
            .block_on(self.client.get_blob(image, digest, expected_size, &mut w))
    }

    /// See [`RegistryClient::put_blob`]: streams `size` bytes from `reader`, verifying them.
    pub fn put_blob<R: Read + Send + Unpin + 'static>(
        &self,
        image: &ImageRef,
        digest: &str,
        size: u64,
        reader: R,
    ) -> Result<BlobPush> {
        self.runtime.block_on(
            self.client
                .put_blob(image, digest, size, SyncReader(reader)),
        )
    }

    /// See [`RegistryClient::mount_blob`].
    pub fn mount_blob(&self, image: &ImageRef, digest: &str, from: &str) -> Result<bool> {
        self.runtime
            .block_on(self.client.mount_blob(image, digest, from))
    }

    /// See [`RegistryClient::put_manifest`].
    pub fn put_manifest(&self, image: &ImageRef, bytes: &[u8], media_type: &str) -> Result<String> {
        self.runtime
            .block_on(self.client.put_manifest(image, bytes, media_type))
    }
}

/// A `std::io::Write` as an `AsyncWrite` whose calls complete at once. Only sound on a
/// current-thread runtime owned by a blocking caller, which is what this module has.
struct SyncWriter<'a, W: ?Sized>(&'a mut W);

impl<W: Write + ?Sized> AsyncWrite for SyncWriter<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }
}

/// A `std::io::Read` as an `AsyncRead` whose reads complete at once (see [`SyncWriter`]).
struct SyncReader<R>(R);

impl<R: Read + Unpin> AsyncRead for SyncReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.0.read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}
