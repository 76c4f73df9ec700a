//! An OCI distribution (registry v2) client: pull and push manifests and blobs, by tag or digest.
//!
//! - [`ImageRef`]: `[HOST[:PORT]/]REPO[:TAG|@sha256:…]`, normalised like docker (`busybox` is
//!   `docker.io/library/busybox:latest`, served by `registry-1.docker.io`).
//! - [`RegistryClient`] (async, tokio) and [`BlockingRegistryClient`] (for synchronous callers):
//!   - [`get_manifest`](RegistryClient::get_manifest): OCI or Docker v2 manifest or index,
//!     checked against the digest it was pulled by; [`resolve_platform`] picks a platform's
//!     entry out of an index, [`get_manifest_for_platform`](RegistryClient::get_manifest_for_platform)
//!     does both.
//!   - [`get_blob`](RegistryClient::get_blob) and [`put_blob`](RegistryClient::put_blob) stream
//!     in constant memory, hashing as they go: a blob whose bytes do not match its digest is an
//!     [`Error::Integrity`](crate::Error::Integrity), on pull and on push. `put_blob` skips blobs
//!     the repository has (`HEAD`); [`mount_blob`](RegistryClient::mount_blob) links one from
//!     another repository.
//!   - [`put_manifest`](RegistryClient::put_manifest) returns the digest it was stored under.
//!
//! # Transport security
//! HTTPS with the system's CAs plus an optional PEM [`ca_file`](RegistryOptions::ca_file) (rustls,
//! no OpenSSL). Plain HTTP only when asked ([`plain_http`](RegistryOptions::plain_http)) and only
//! to loopback hosts (`127.0.0.0/8`, `::1`, `localhost`, which is pinned to those addresses):
//! for any other host the request is refused before a connection is made. Redirects are followed
//! (blob downloads go to CDNs) but never to plain HTTP off loopback nor from HTTPS to HTTP, and
//! `Authorization` is only ever sent to the registry's own origin.
//!
//! # Authentication
//! A request goes out anonymously until the registry answers 401 with a `WWW-Authenticate`
//! challenge; the client then learns the registry's scheme and retries once: with Basic
//! credentials, or with a token fetched from the Bearer challenge's realm for the scope
//! `repository:<name>:pull` (or `pull,push`), sending Basic credentials to the realm if there are
//! any. Tokens are cached per registry and scope until shortly before they expire. Credentials
//! come from [`RegistryOptions::credentials`] or the auth files the container tools write (see
//! [`default_auth_files`]). A 401 error says where credentials were looked for.
//!
//! # Not done
//! Credential helpers (`credsStore`, `credHelpers`) and identity (OAuth refresh) tokens;
//! resuming interrupted transfers; chunked (multi-`PATCH`) uploads, for registries that cap the
//! size of one request; digests other than sha256; docker schema 1 manifests.

mod auth;
mod blocking;
mod client;
mod manifest;
mod reference;
mod session;
mod transport;
mod upload;

pub use auth::{Credentials, default_auth_files};
pub use blocking::BlockingRegistryClient;
pub use client::{BlobPush, RegistryClient, RegistryOptions};
pub use manifest::{
    ACCEPTED_MEDIA_TYPES, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, MAX_MANIFEST_SIZE,
    Manifest, OCI_INDEX, OCI_MANIFEST, Platform, is_index_media_type, resolve_platform,
};
pub use reference::{DOCKER_HUB, DOCKER_HUB_API_HOST, ImageRef, Reference};

/// `sha256:` and the hex SHA-256 of `bytes`: the digest a blob or manifest is stored under.
pub fn sha256_digest(bytes: &[u8]) -> String {
    client::sha256_digest(bytes)
}
