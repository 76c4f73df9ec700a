//! [`RegistryClient`]: the distribution v2 requests and their digest checks. Authentication is in
//! `session`, upload bodies in `upload`, HTTP plumbing in `transport`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::auth::Credentials;
use super::manifest::{
    ACCEPTED_MEDIA_TYPES, MAX_MANIFEST_SIZE, Manifest, Platform, manifest_media_type,
    resolve_platform,
};
use super::reference::{ImageRef, Reference, validate_digest};
use super::session::{Access, AuthState};
use super::transport::{
    self, ReadLimit, header_str, read_limited, same_origin, status_error, transport_error,
    url_is_loopback, without_query,
};
use super::upload::{UploadBody, take_failure};
use crate::{Error, Result};

/// How a [`RegistryClient`] reaches registries and authenticates.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Talk plain HTTP instead of HTTPS. Allowed only to loopback registries (`127.0.0.0/8`,
    /// `::1`, `localhost`): for any other host every request is refused before a connection is
    /// made. Without it, loopback registries are reached over HTTPS like any other.
    pub plain_http: bool,
    /// A PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// Credentials by registry, as written in references (`docker.io`, `host:5000`), consulted
    /// before the auth files. Never sent to another registry.
    pub credentials: BTreeMap<String, Credentials>,
    /// Auth files (docker's `config.json`, containers' `auth.json`) to look credentials up in,
    /// in order; [`default_auth_files`](super::default_auth_files) gives skopeo's list. Empty
    /// (the default) means anonymous unless `credentials` has an entry.
    pub auth_files: Vec<PathBuf>,
}

/// What [`RegistryClient::put_blob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository already had the blob (HEAD answered 200); nothing was read or sent.
    AlreadyExists,
    /// The blob was streamed to the registry, which verified its digest.
    Uploaded,
}

pub(crate) struct Inner {
    pub(crate) options: RegistryOptions,
    /// For remote registries: honours the `HTTPS_PROXY`/`NO_PROXY` environment.
    remote: reqwest::Client,
    /// For loopback hosts: never through a proxy.
    direct: reqwest::Client,
    pub(crate) auth: Mutex<AuthState>,
}

/// An OCI distribution (registry v2) client: manifests and blobs, pulled and pushed by tag or
/// digest, with Basic or Bearer-token authentication, streaming blobs in constant memory.
///
/// Cheap to clone; clones share connections and tokens. Every method is async (tokio); see
/// [`BlockingRegistryClient`](super::BlockingRegistryClient) for synchronous callers.
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client with these options. Reads `ca_file` now (a bad file is an error here, not at the
    /// first request); credentials are looked up per registry when a registry asks for them.
    pub fn new(options: RegistryOptions) -> Result<Self> {
        let tls = transport::tls_config(options.ca_file.as_deref())?;
        let remote = transport::http_client(tls.clone(), false)?;
        let direct = transport::http_client(tls, true)?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                options,
                remote,
                direct,
                auth: Mutex::new(AuthState::default()),
            }),
        })
    }

    /// Fetches the manifest `image` names: an OCI or Docker image manifest, or an OCI index or
    /// Docker manifest list. The bytes are checked against the digest when `image` is by digest,
    /// and against the registry's `Docker-Content-Digest` when it sends one ([`Error::Integrity`]).
    /// Manifests larger than [`MAX_MANIFEST_SIZE`] are refused ([`Error::Limit`]).
    pub async fn get_manifest(&self, image: &ImageRef) -> Result<Manifest> {
        let url = self.manifest_url(image)?;
        let what = format!("GET {}", url.path());
        let accept = ACCEPTED_MEDIA_TYPES.join(", ");
        let response = self
            .send(image, Access::Pull, Method::GET, &url, &what, |r| {
                r.header(ACCEPT, accept.as_str())
            })
            .await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(image, &what, response).await);
        }
        let header_digest = header_str(response.headers(), "docker-content-digest");
        let content_type = header_str(response.headers(), CONTENT_TYPE.as_str())
            .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_owned());
        let bytes = self.read_manifest_body(image, &what, response).await?;
        let digest = sha256_digest(&bytes);
        if let Reference::Digest(want) = image.reference()
            && *want != digest
        {
            return Err(Error::integrity(format!("manifest {image}"), want, &digest));
        }
        if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:"))
            && h != digest
        {
            return Err(Error::integrity(
                format!("manifest {image} (registry's Docker-Content-Digest)"),
                h,
                &digest,
            ));
        }
        let media_type = manifest_media_type(image, &bytes, content_type)?;
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Fetches the image manifest for `platform`: if `image` names an index, the matching entry's
    /// manifest (pulled by digest, so verified); if it names a single manifest, that manifest.
    pub async fn get_manifest_for_platform(
        &self,
        image: &ImageRef,
        platform: &Platform,
    ) -> Result<Manifest> {
        let top = self.get_manifest(image).await?;
        if !top.is_index() {
            return Ok(top);
        }
        let entry = resolve_platform(&top.bytes, platform)?;
        let child = self
            .get_manifest(&image.with_digest(&entry.digest)?)
            .await?;
        if child.is_index() {
            return Err(Error::Unsupported(format!(
                "{image}: the {platform} entry of the index is itself an index ({}); nested indexes are not followed",
                child.digest
            )));
        }
        if child.bytes.len() as u64 != entry.size {
            return Err(Error::integrity(
                format!("manifest {} size", child.digest),
                entry.size.to_string(),
                child.bytes.len().to_string(),
            ));
        }
        Ok(child)
    }

    /// Whether the repository has the blob (`HEAD`): 200 is yes, 404 is no, anything else an
    /// error.
    pub async fn blob_exists(&self, image: &ImageRef, digest: &str) -> Result<bool> {
        self.blob_exists_as(image, digest, Access::Pull).await
    }

    /// Streams the blob `digest` of `image`'s repository into `writer`, hashing as it goes, and
    /// returns its size. Fails with [`Error::Integrity`] if the bytes do not hash to `digest`, or
    /// if `expected_size` is given and the blob is longer (as soon as it is) or shorter. On any
    /// error `writer` has received part or all of a bad blob: write to a staging file and commit
    /// only on `Ok`. Memory use is one network chunk whatever the blob's size.
    pub async fn get_blob<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        image: &ImageRef,
        digest: &str,
        expected_size: Option<u64>,
        writer: &mut W,
    ) -> Result<u64> {
        let url = self.blob_url(image, digest)?;
        let what = format!("GET {}", url.path());
        let mut response = self
            .send(image, Access::Pull, Method::GET, &url, &what, |r| r)
            .await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(image, &what, response).await);
        }
        let blob = || {
            format!(
                "blob {digest} of {}/{}",
                image.registry(),
                image.repository()
            )
        };
        if let (Some(want), Some(len)) = (expected_size, response.content_length())
            && want != len
        {
            return Err(Error::integrity(
                format!("{} size (Content-Length)", blob()),
                want.to_string(),
                len.to_string(),
            ));
        }
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(transport_error(image.registry(), &what, &e)),
            };
            size += chunk.len() as u64;
            if let Some(want) = expected_size.filter(|w| size > *w) {
                return Err(Error::integrity(
                    format!("{} size", blob()),
                    want.to_string(),
                    format!("more than {want} bytes"),
                ));
            }
            hasher.update(&chunk);
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| Error::io("write blob", digest, e))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| Error::io("write blob", digest, e))?;
        if let Some(want) = expected_size.filter(|w| *w != size) {
            return Err(Error::integrity(
                format!("{} size", blob()),
                want.to_string(),
                size.to_string(),
            ));
        }
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != digest {
            return Err(Error::integrity(blob(), digest, got));
        }
        Ok(size)
    }

    /// Uploads a blob of `size` bytes read from `reader`, unless the repository already has it.
    ///
    /// The upload is one streamed `PUT` (`POST /v2/<name>/blobs/uploads/`, then `PUT <location>
    /// ?digest=`): memory use is one read chunk whatever the size. The first `size` bytes of the
    /// reader are sent (it is not read to its end) and hashed as they go; if the reader ends
    /// sooner, or the bytes do not hash to `digest`, the request is aborted before the registry
    /// has the whole blob and the error is [`Error::Integrity`] (read errors are [`Error::Io`]).
    /// The upload session is cancelled on any failure.
    pub async fn put_blob<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        image: &ImageRef,
        digest: &str,
        size: u64,
        reader: R,
    ) -> Result<BlobPush> {
        validate_digest(digest).map_err(|r| Error::malformed("blob digest", r))?;
        if size == 0 && digest != sha256_digest(b"") {
            // No body to withhold: check before sending.
            let what = format!(
                "empty blob to push to {}/{}",
                image.registry(),
                image.repository()
            );
            return Err(Error::integrity(what, digest, sha256_digest(b"")));
        }
        if self.blob_exists_as(image, digest, Access::Push).await? {
            return Ok(BlobPush::AlreadyExists);
        }
        let location = self
            .start_upload(image, None, digest)
            .await?
            .ok_or_else(|| Error::Registry {
                registry: image.registry().to_owned(),
                reason: "upload start answered 201 without a mount request".into(),
            })?;
        let result = self
            .stream_upload(image, &location, digest, size, reader)
            .await;
        if result.is_err() {
            self.cancel_upload(image, &location).await;
        }
        result.map(|()| BlobPush::Uploaded)
    }

    /// Asks the registry to link blob `digest` from repository `from` (same registry) into
    /// `image`'s repository without uploading it. Returns `true` if it did; `false` if it
    /// declined (the source lacks the blob or the registry does not mount), in which case the
    /// blob must be uploaded with [`put_blob`](Self::put_blob).
    pub async fn mount_blob(&self, image: &ImageRef, digest: &str, from: &str) -> Result<bool> {
        let from_ref = ImageRef::new(image.registry(), from, Reference::Tag("latest".into()))?;
        match self
            .start_upload(image, Some(from_ref.repository()), digest)
            .await?
        {
            None => Ok(true),
            Some(location) => {
                self.cancel_upload(image, &location).await;
                Ok(false)
            }
        }
    }

    /// Uploads a manifest under `image`'s tag (or digest) with its media type, and returns its
    /// digest. When `image` is by digest the bytes must hash to it ([`Error::Integrity`]); the
    /// blobs it references must have been pushed first.
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(Error::Limit(format!(
                "manifest for {image} is {} bytes, at most {MAX_MANIFEST_SIZE} allowed",
                bytes.len()
            )));
        }
        let digest = sha256_digest(bytes);
        if let Reference::Digest(want) = image.reference()
            && *want != digest
        {
            return Err(Error::integrity(
                format!("manifest to push as {image}"),
                want,
                &digest,
            ));
        }
        let url = self.manifest_url(image)?;
        let what = format!("PUT {}", url.path());
        let body = Bytes::copy_from_slice(bytes);
        let response = self
            .send(image, Access::Push, Method::PUT, &url, &what, |r| {
                r.header(CONTENT_TYPE, media_type).body(body.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_error(image, &what, response).await);
        }
        if let Some(h) = header_str(response.headers(), "docker-content-digest")
            && h.starts_with("sha256:")
            && h != digest
        {
            return Err(Error::integrity(
                format!("manifest pushed as {image} (registry's Docker-Content-Digest)"),
                &digest,
                h,
            ));
        }
        Ok(digest)
    }

    // ---- requests -------------------------------------------------------------------------

    /// `https://host/` (or `http://` for an allowed loopback registry).
    pub(crate) fn base_url(&self, image: &ImageRef) -> Result<Url> {
        let scheme = if self.inner.options.plain_http {
            if !image.is_loopback() {
                return Err(Error::Registry {
                    registry: image.registry().to_owned(),
                    reason: format!(
                        "plain HTTP refused: {} is not a loopback host; only 127.0.0.0/8, ::1 and \
                         localhost may be reached without TLS (no connection was made)",
                        image.host()
                    ),
                });
            }
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{}/", image.api_host()))
            .map_err(|e| Error::malformed(format!("registry {}", image.registry()), e.to_string()))
    }

    fn manifest_url(&self, image: &ImageRef) -> Result<Url> {
        let path = format!(
            "v2/{}/manifests/{}",
            image.repository(),
            image.reference().as_str()
        );
        self.join(image, &path)
    }

    fn blob_url(&self, image: &ImageRef, digest: &str) -> Result<Url> {
        validate_digest(digest).map_err(|r| Error::malformed("blob digest", r))?;
        self.join(image, &format!("v2/{}/blobs/{digest}", image.repository()))
    }

    fn join(&self, image: &ImageRef, path: &str) -> Result<Url> {
        self.base_url(image)?
            .join(path)
            .map_err(|e| Error::malformed(format!("URL path {path}"), e.to_string()))
    }

    pub(crate) fn client_for(&self, url: &Url) -> &reqwest::Client {
        if url_is_loopback(url) {
            &self.inner.direct
        } else {
            &self.inner.remote
        }
    }

    /// Sends a request that can be rebuilt (no streamed body), answering one 401 challenge by
    /// authenticating and sending it again. Returns the response whatever its status.
    async fn send<F>(
        &self,
        image: &ImageRef,
        access: Access<'_>,
        method: Method,
        url: &Url,
        what: &str,
        make: F,
    ) -> Result<Response>
    where
        F: Fn(RequestBuilder) -> RequestBuilder,
    {
        let base = self.base_url(image)?;
        let same_origin = same_origin(url, &base);
        let mut authorization = match same_origin {
            true => self.authorization(image, access).await?,
            false => None,
        };
        let mut retried = false;
        loop {
            let mut request = make(self.client_for(url).request(method.clone(), url.clone()));
            if let Some(a) = &authorization {
                request = request.header(AUTHORIZATION, a);
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(image.registry(), what, &e))?;
            if response.status() != StatusCode::UNAUTHORIZED || retried || !same_origin {
                return Ok(response);
            }
            match self
                .answer_challenge(image, access, response.headers(), authorization.as_deref())
                .await?
            {
                Some(a) => {
                    authorization = Some(a);
                    retried = true;
                }
                None => return Ok(response),
            }
        }
    }

    pub(crate) async fn status_error(
        &self,
        image: &ImageRef,
        what: &str,
        response: Response,
    ) -> Error {
        let origin = self.credentials(image).ok().map(|f| match f.credentials {
            Some(_) => format!("sent, {}", f.origin),
            None => f.origin,
        });
        status_error(image.registry(), what, response, origin.as_deref()).await
    }

    async fn blob_exists_as(
        &self,
        image: &ImageRef,
        digest: &str,
        access: Access<'_>,
    ) -> Result<bool> {
        let url = self.blob_url(image, digest)?;
        let what = format!("HEAD {}", url.path());
        let response = self
            .send(image, access, Method::HEAD, &url, &what, |r| r)
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(image, &what, response).await),
        }
    }

    /// `POST /v2/<name>/blobs/uploads/` (with `mount`/`from` if mounting): `Some(location)` for
    /// a started upload (202), `None` for a completed mount (201).
    async fn start_upload(
        &self,
        image: &ImageRef,
        mount_from: Option<&str>,
        digest: &str,
    ) -> Result<Option<Url>> {
        validate_digest(digest).map_err(|r| Error::malformed("blob digest", r))?;
        let mut url = self.join(image, &format!("v2/{}/blobs/uploads/", image.repository()))?;
        let access = match mount_from {
            Some(from) => {
                url.query_pairs_mut()
                    .append_pair("mount", digest)
                    .append_pair("from", from);
                Access::Mount { from }
            }
            None => Access::Push,
        };
        let what = format!("POST {}", url.path());
        let response = self
            .send(image, access, Method::POST, &url, &what, |r| {
                r.header(CONTENT_LENGTH, "0")
            })
            .await?;
        match response.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(None),
            StatusCode::ACCEPTED => {
                let Some(loc) = header_str(response.headers(), LOCATION.as_str()) else {
                    return Err(Error::Registry {
                        registry: image.registry().to_owned(),
                        reason: format!("{what}: 202 without a Location header"),
                    });
                };
                let location = url.join(&loc).map_err(|e| Error::Registry {
                    registry: image.registry().to_owned(),
                    reason: format!("{what}: Location is not a URL: {e}"),
                })?;
                // The blob goes where the registry says: never in the clear off loopback, and
                // never from HTTPS down to HTTP.
                let plain_ok = url.scheme() == "http" && url_is_loopback(&location);
                if location.scheme() != "https" && !(location.scheme() == "http" && plain_ok) {
                    return Err(Error::Registry {
                        registry: image.registry().to_owned(),
                        reason: format!(
                            "{what}: refused upload location {}: plain HTTP is only for loopback registries",
                            without_query(&location)
                        ),
                    });
                }
                Ok(Some(location))
            }
            _ => Err(self.status_error(image, &what, response).await),
        }
    }

    /// `PUT <location>?digest=` with the reader's bytes as a streamed body.
    async fn stream_upload<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        image: &ImageRef,
        location: &Url,
        digest: &str,
        size: u64,
        reader: R,
    ) -> Result<()> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let what = format!("PUT {}", url.path());
        let (body, verdict) = UploadBody::new(reader, size, digest);
        let mut request = self
            .client_for(&url)
            .put(url.clone())
            .header(CONTENT_LENGTH, size)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        if same_origin(&url, &self.base_url(image)?)
            && let Some(a) = self.authorization(image, Access::Push).await?
        {
            request = request.header(AUTHORIZATION, a);
        }
        let sent = request.send().await;
        // The body's own verdict (short, long, wrong digest, read error) explains an aborted
        // request better than the transport error it caused.
        if let Some(e) = take_failure(&verdict) {
            return Err(e);
        }
        let response = sent.map_err(|e| transport_error(image.registry(), &what, &e))?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_error(image, &what, response).await);
        }
        if let Some(h) = header_str(response.headers(), "docker-content-digest")
            && h != digest
        {
            return Err(Error::integrity(
                format!("blob pushed to {}/{}", image.registry(), image.repository()),
                digest,
                h,
            ));
        }
        Ok(())
    }

    /// Best effort `DELETE` of an unfinished upload session.
    async fn cancel_upload(&self, image: &ImageRef, location: &Url) {
        let mut request = self.client_for(location).delete(location.clone());
        if let Ok(base) = self.base_url(image)
            && same_origin(location, &base)
            && let Ok(Some(a)) = self.authorization(image, Access::Push).await
        {
            request = request.header(AUTHORIZATION, a);
        }
        let _ = request.send().await;
    }

    async fn read_manifest_body(
        &self,
        image: &ImageRef,
        what: &str,
        response: Response,
    ) -> Result<Vec<u8>> {
        read_limited(response, MAX_MANIFEST_SIZE)
            .await
            .map_err(|e| match e {
                ReadLimit::Transport(e) => transport_error(image.registry(), what, &e),
                ReadLimit::TooLarge => Error::Limit(format!(
                    "manifest {image} is larger than {MAX_MANIFEST_SIZE} bytes"
                )),
            })
    }
}

/// `sha256:` and the hex SHA-256 of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send_so_they_can_be_spawned() {
        let client = RegistryClient::new(RegistryOptions::default()).unwrap();
        let image = ImageRef::parse("localhost:5000/a:b").unwrap();
        let mut sink = Vec::new();
        let f = client.get_blob(&image, "sha256:00", None, &mut sink);
        assert_send(&f);
        let f = client.put_blob(&image, "sha256:00", 0, tokio::io::empty());
        assert_send(&f);
        let f = client.get_manifest(&image);
        assert_send(&f);
    }

    #[test]
    fn plain_http_is_refused_off_loopback_before_any_connection() {
        let client = RegistryClient::new(RegistryOptions {
            plain_http: true,
            ..Default::default()
        })
        .unwrap();
        let remote = ImageRef::parse("example.invalid:5000/a:b").unwrap();
        let e = client.base_url(&remote).unwrap_err().to_string();
        assert!(
            e.contains("plain HTTP refused") && e.contains("example.invalid"),
            "{e}"
        );
        for ok in ["localhost:5000/a", "127.0.0.1:5000/a", "[::1]:5000/a"] {
            let u = client.base_url(&ImageRef::parse(ok).unwrap()).unwrap();
            assert_eq!(u.scheme(), "http", "{ok}");
        }
        let https = RegistryClient::new(RegistryOptions::default()).unwrap();
        assert_eq!(
            https.base_url(&remote).unwrap().as_str(),
            "https://example.invalid:5000/"
        );
        let hub = ImageRef::parse("busybox").unwrap();
        assert_eq!(
            https.base_url(&hub).unwrap().as_str(),
            "https://registry-1.docker.io/"
        );
    }
}
