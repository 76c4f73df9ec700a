//! Registry images (`docker://`) as an [`ImageSource`] and [`ImageDestination`].
//!
//! Blobs are staged in temporary files: pulls are verified by the client as they stream, pushes
//! need the digest and size before the upload starts. Memory use stays constant.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use crate::digest::{Digest, copy_verified};
use crate::error::{Error, Result};
use crate::registry::{
    BlockingRegistryClient, Credentials, ImageRef, RegistryOptions, default_auth_files,
};
use crate::source::{ImageDestination, ImageSource};
use crate::transport::TransportOptions;

fn client_for(image: &ImageRef, opts: &TransportOptions) -> Result<BlockingRegistryClient> {
    let mut credentials = BTreeMap::new();
    if let Some((user, password)) = &opts.credentials {
        credentials.insert(
            image.registry().to_string(),
            Credentials::basic(user, password),
        );
    }
    BlockingRegistryClient::new(RegistryOptions {
        plain_http: opts.plain_http,
        ca_file: opts.ca_file.clone(),
        credentials,
        auth_files: default_auth_files(),
    })
}

fn staging_file() -> Result<std::fs::File> {
    tempfile::tempfile()
        .map_err(|e| Error::io("creating a staging file in", std::env::temp_dir(), e))
}

/// Reads an image from a registry.
pub struct RemoteSource {
    image: ImageRef,
    client: BlockingRegistryClient,
}

impl RemoteSource {
    /// The image named `reference` (`HOST/REPO[:TAG|@DIGEST]`).
    pub fn open(reference: &str, opts: &TransportOptions) -> Result<RemoteSource> {
        let image = ImageRef::parse(reference)?;
        let client = client_for(&image, opts)?;
        Ok(RemoteSource { image, client })
    }
}

impl ImageSource for RemoteSource {
    fn manifest(&mut self) -> Result<(Vec<u8>, String)> {
        let m = self.client.get_manifest(&self.image)?;
        Ok((m.bytes, m.media_type))
    }

    fn manifest_by_digest(&mut self, digest: &Digest) -> Result<Vec<u8>> {
        Ok(self
            .client
            .get_manifest(&self.image.with_digest(digest.as_str())?)?
            .bytes)
    }

    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let mut f = staging_file()?;
        self.client
            .get_blob(&self.image, digest.as_str(), None, &mut f)?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("rewinding", "staging file", e))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    }
}

/// Writes an image to a registry under the reference's tag (or by digest).
pub struct RemoteDestination {
    image: ImageRef,
    client: BlockingRegistryClient,
}

impl RemoteDestination {
    /// The destination `reference` (`HOST/REPO[:TAG]`).
    pub fn open(reference: &str, opts: &TransportOptions) -> Result<RemoteDestination> {
        let image = ImageRef::parse(reference)?;
        let client = client_for(&image, opts)?;
        Ok(RemoteDestination { image, client })
    }
}

impl ImageDestination for RemoteDestination {
    fn has_blob(&mut self, digest: &Digest) -> Result<bool> {
        self.client.blob_exists(&self.image, digest.as_str())
    }

    fn put_blob(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let place = std::path::Path::new(self.image.registry());
        let (digest, size, mut f) = copy_verified(reader, staging_file()?, expected, place)?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("rewinding", "staging file", e))?;
        self.client.put_blob(
            &self.image,
            digest.as_str(),
            size,
            std::io::BufReader::with_capacity(1 << 20, f),
        )?;
        Ok((digest, size))
    }

    fn put_manifest(&mut self, bytes: &[u8], media_type: &str) -> Result<Digest> {
        Digest::parse(&self.client.put_manifest(&self.image, bytes, media_type)?)
    }
}
