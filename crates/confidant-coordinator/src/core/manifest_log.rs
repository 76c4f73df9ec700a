//! The manifest history: every version content-addressed (SHA-256 of its canonical JSON),
//! chained to its predecessor and signed by the coordinator's root CA key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_manifest::Manifest;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{CoreError, CoreResult, ErrorCode, ErrorDetails};
use super::tables::{COORDINATOR, MANIFESTS, SECRETS, VOLUMES};
use super::{Coordinator, KEY_MANIFEST_VERSION, KEY_RECOVERY, Principal, audit, auth, secrets};
use crate::store::{Store, Transaction};

/// The domain separator of a manifest record's signature.
pub const RECORD_SIGNATURE_DOMAIN: &[u8] = b"confidant/v1/manifest-record\0";

/// One version of the manifest, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// The version, from 1.
    pub version: u64,
    /// SHA-256 of the manifest's canonical JSON, hex.
    pub hash: String,
    /// The hash of the version before, if any.
    pub previous: Option<String>,
    /// When it was set (RFC 3339, UTC).
    pub time: String,
    /// The user who set it (`None`: the first manifest, set without a client certificate).
    pub set_by: Option<String>,
    /// The manifest's canonical JSON.
    pub manifest: String,
    /// ECDSA P-256 SHA-256 (ASN.1 DER, base64) by the root CA key over
    /// [`RECORD_SIGNATURE_DOMAIN`] ‖ [`ManifestRecord::signed_header`].
    pub signature: String,
}

impl ManifestRecord {
    /// The signed bytes after the domain: compact JSON of `{version, hash, previous, time,
    /// set_by}` in this order.
    pub fn signed_header(&self) -> Vec<u8> {
        let v = json!({
            "version": self.version,
            "hash": self.hash,
            "previous": self.previous,
            "time": self.time,
            "set_by": self.set_by,
        });
        // serde_json keeps insertion order only with `preserve_order`; write it by hand.
        let s = format!(
            "{{\"version\":{},\"hash\":{},\"previous\":{},\"time\":{},\"set_by\":{}}}",
            v["version"], v["hash"], v["previous"], v["time"], v["set_by"]
        );
        s.into_bytes()
    }

    /// The record as the API serves it (the manifest as an object).
    pub fn to_api(&self) -> confidant_api::ManifestRecord {
        confidant_api::ManifestRecord {
            version: self.version,
            hash: self.hash.clone(),
            previous: self.previous.clone(),
            time: self.time.clone(),
            set_by: self.set_by.clone(),
            manifest: serde_json::from_str(&self.manifest).unwrap_or(Value::Null),
            signature: self.signature.clone(),
        }
    }
}

/// One recovery owner's encrypted share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    /// The owner's name in the manifest.
    pub owner: String,
    /// The share, encrypted to the owner's key.
    #[serde(flatten)]
    pub share: crate::recovery::EncryptedShare,
}

/// The recovery shares of a manifest's owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryShares {
    /// How many shares recover the state.
    pub threshold: u32,
    /// One per owner.
    pub shares: Vec<ShareRecord>,
}

impl RecoveryShares {
    /// The shares as the API serves them.
    pub fn to_api(&self) -> confidant_api::RecoveryShares {
        use base64::Engine as _;
        confidant_api::RecoveryShares {
            threshold: self.threshold,
            shares: self
                .shares
                .iter()
                .map(|s| confidant_api::EncryptedShare {
                    owner: s.owner.clone(),
                    owner_key_id: s.share.owner_key_id.clone(),
                    ciphertext: base64::engine::general_purpose::STANDARD
                        .encode(&s.share.ciphertext),
                })
                .collect(),
        }
    }
}

/// What `POST manifest` returns.
#[derive(Debug, Clone)]
pub struct ManifestSet {
    /// The new record.
    pub record: ManifestRecord,
    /// Recovery shares, when the manifest names owners.
    pub recovery: Option<RecoveryShares>,
}

/// The current manifest, parsed, with what requests need from it.
#[derive(Debug)]
pub(crate) struct Current {
    pub record: ManifestRecord,
    pub hash_bytes: [u8; 32],
    pub manifest: Manifest,
    pub users: HashMap<[u8; 32], String>,
}

impl Current {
    fn from_record(record: ManifestRecord) -> CoreResult<Current> {
        let manifest = Manifest::from_json(&record.manifest).map_err(|e| {
            CoreError::internal(format!("stored manifest version {}: {e}", record.version))
        })?;
        let hash_bytes = manifest.canonical_hash();
        if hex::encode(hash_bytes) != record.hash {
            return Err(CoreError::internal(format!(
                "stored manifest version {}: its content hashes to {}, its record says {}",
                record.version,
                hex::encode(hash_bytes),
                record.hash
            )));
        }
        let users = auth::users_by_certificate(&manifest);
        Ok(Current {
            record,
            hash_bytes,
            manifest,
            users,
        })
    }
}

fn version_key(v: u64) -> String {
    format!("{v:020}")
}

fn read_version(bytes: Option<Vec<u8>>) -> CoreResult<u64> {
    match bytes {
        None => Ok(0),
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| CoreError::internal("stored manifest version is not a number")),
    }
}

fn read_record(bytes: Vec<u8>, v: u64) -> CoreResult<ManifestRecord> {
    serde_json::from_slice(&bytes)
        .map_err(|e| CoreError::internal(format!("stored manifest record {v}: {e}")))
}

/// Fails with 409 unless the current manifest version in `tx` is `expected`.
pub(crate) fn expect_version(tx: &mut dyn Transaction, expected: u64) -> CoreResult<()> {
    let found = read_version(tx.get(COORDINATOR, KEY_MANIFEST_VERSION)?)?;
    if found == expected {
        Ok(())
    } else {
        Err(CoreError::new(
            ErrorCode::Conflict,
            None,
            format!(
                "the manifest changed while this request ran: expected version {expected}, found {found}; retry"
            ),
        ))
    }
}

/// Loads the current manifest from the store, if any.
pub(crate) fn load_current<S: Store>(store: &S) -> CoreResult<Option<Current>> {
    let v = read_version(store.get(COORDINATOR, KEY_MANIFEST_VERSION)?)?;
    if v == 0 {
        return Ok(None);
    }
    let bytes = store.get(MANIFESTS, &version_key(v))?.ok_or_else(|| {
        CoreError::internal(format!("manifest version {v} is current but not stored"))
    })?;
    Current::from_record(read_record(bytes, v)?).map(Some)
}

fn invalid_manifest(errors: Vec<String>) -> CoreError {
    let first = errors.first().cloned().unwrap_or_default();
    let field = first.split(':').next().map(str::to_owned);
    CoreError {
        code: ErrorCode::InvalidManifest,
        field,
        message: format!(
            "the manifest is invalid ({} error{}): {}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("; ")
        ),
        details: Some(Box::new(ErrorDetails {
            errors,
            ..ErrorDetails::default()
        })),
    }
}

impl<S: Store> Coordinator<S> {
    /// `POST manifest`: validates `text` (YAML or JSON), checks the caller may set it, makes
    /// the shared secrets it declares, and records it as the next version.
    pub fn set_manifest(
        &self,
        who: &Principal,
        text: &str,
        now: SystemTime,
    ) -> CoreResult<ManifestSet> {
        // Who asks first: an unauthenticated caller learns nothing about the manifest.
        let current = self.current();
        let set_by = match &current {
            None => None,
            Some(c) => {
                let user = auth::user_of(&c.users, who, "updating the manifest")?.to_string();
                if c.manifest.config.update_policy.manifest == "frozen" {
                    return Err(CoreError::forbidden(
                        "the current manifest's config.update_policy.manifest is 'frozen': it cannot be replaced (package SVN updates stay possible)",
                    ));
                }
                auth::require(&c.manifest, &user, "manifest", None, "update")?;
                Some(user)
            }
        };
        let manifest = Manifest::parse(text).map_err(|e| invalid_manifest(vec![e.to_string()]))?;
        if let Err(errors) = manifest.check() {
            return Err(invalid_manifest(
                errors.iter().map(ToString::to_string).collect(),
            ));
        }
        if manifest.config.update_policy.approvals != 1 {
            return Err(invalid_manifest(vec![format!(
                "config.update_policy.approvals: expected 1 (multi-party approval is not implemented by this coordinator), got {}",
                manifest.config.update_policy.approvals
            )]));
        }
        if manifest.recovery.is_some() && self.options.recovery_key.is_none() {
            return Err(invalid_manifest(vec![
                "recovery: this coordinator cannot split its state key (no recovery key configured)".into(),
            ]));
        }
        self.commit_manifest(current.as_deref(), manifest, set_by, "manifest.set", now)
    }

    fn commit_manifest(
        &self,
        current: Option<&Current>,
        manifest: Manifest,
        set_by: Option<String>,
        action: &str,
        now: SystemTime,
    ) -> CoreResult<ManifestSet> {
        let hash = hex::encode(manifest.canonical_hash());
        if current.is_some_and(|c| c.record.hash == hash) {
            return Err(CoreError::new(
                ErrorCode::Conflict,
                None,
                format!("the manifest is unchanged (hash {hash})"),
            ));
        }
        let expected = current.map_or(0, |c| c.record.version);
        let mut record = ManifestRecord {
            version: expected + 1,
            hash: hash.clone(),
            previous: current.map(|c| c.record.hash.clone()),
            time: super::rfc3339(now),
            set_by: set_by.clone(),
            manifest: manifest.canonical_json(),
            signature: String::new(),
        };
        let mut signed = RECORD_SIGNATURE_DOMAIN.to_vec();
        signed.extend_from_slice(&record.signed_header());
        let sig = self
            .ca
            .sign_with_root(&signed)
            .map_err(|e| CoreError::internal(format!("signing the manifest record: {e}")))?;
        record.signature = STANDARD.encode(sig);
        // Generated outside the transaction (RSA keys take a while; the closure may rerun).
        let (secret_writes, secret_deletes) = secrets::plan(
            self.options.random.as_ref(),
            &self.store,
            &self.ca,
            &manifest,
            now,
        )?;
        let volume_keys =
            secrets::new_volume_keys(self.options.random.as_ref(), &self.store, &manifest)?;
        let recovery = match (&manifest.recovery, &self.options.recovery_key) {
            (Some(r), Some(key)) => {
                let owners: Vec<&str> = r.keys.values().map(String::as_str).collect();
                let shares = crate::recovery::split_for_owners(key, &owners, r.threshold)
                    .map_err(|e| invalid_manifest(vec![format!("recovery: {e}")]))?;
                Some(RecoveryShares {
                    threshold: r.threshold,
                    shares: r
                        .keys
                        .keys()
                        .cloned()
                        .zip(shares)
                        .map(|(owner, share)| ShareRecord { owner, share })
                        .collect(),
                })
            }
            _ => None,
        };
        let record_bytes = serde_json::to_vec(&record)
            .map_err(|e| CoreError::internal(format!("manifest record: {e}")))?;
        let recovery_bytes = match &recovery {
            Some(r) => Some(
                serde_json::to_vec(r)
                    .map_err(|e| CoreError::internal(format!("recovery shares: {e}")))?,
            ),
            None => None,
        };
        let actor = audit::actor_name(set_by.as_deref());
        let target = format!("version {} ({hash})", record.version);
        self.store.transaction(|tx| {
            expect_version(tx, expected)?;
            tx.put(MANIFESTS, &version_key(record.version), &record_bytes)?;
            tx.put(
                COORDINATOR,
                KEY_MANIFEST_VERSION,
                record.version.to_string().as_bytes(),
            )?;
            for (name, s) in &secret_writes {
                secrets::write(tx, name, s)?;
            }
            for name in &secret_deletes {
                tx.delete(SECRETS, name)?;
            }
            for (name, key) in &volume_keys {
                // Never replace a volume's key: its data would be lost.
                if tx.get(VOLUMES, name)?.is_none() {
                    tx.put(VOLUMES, name, key)?;
                }
            }
            match &recovery_bytes {
                Some(b) => tx.put(COORDINATOR, KEY_RECOVERY, b)?,
                None => {
                    tx.delete(COORDINATOR, KEY_RECOVERY)?;
                }
            }
            audit::append(tx, &record.time, &actor, action, &target)
        })?;
        let new = Arc::new(Current::from_record(record.clone())?);
        if let Ok(mut slot) = self.current.write() {
            *slot = Some(new);
        }
        Ok(ManifestSet { record, recovery })
    }

    /// `GET manifest`: the current version, or `version`.
    pub fn manifest_record(&self, version: Option<u64>) -> CoreResult<ManifestRecord> {
        let current = self.running()?;
        let v = version.unwrap_or(current.record.version);
        if v == current.record.version {
            return Ok(current.record.clone());
        }
        let bytes = self.store.get(MANIFESTS, &version_key(v))?.ok_or_else(|| {
            CoreError::not_found(
                "version",
                format!(
                    "no manifest version {v}; versions are 1 to {}",
                    current.record.version
                ),
            )
        })?;
        read_record(bytes, v)
    }

    /// `POST packages/{name}/svn`: raises a package's minimum SVN, as a new manifest version.
    pub fn update_svn(
        &self,
        who: &Principal,
        package: &str,
        min_svn: u32,
        now: SystemTime,
    ) -> CoreResult<ManifestSet> {
        let current = self.running()?;
        let user = auth::user_of(&current.users, who, "updating a package's SVN")?.to_string();
        let m = &current.manifest;
        let p = m.packages.get(package).ok_or_else(|| {
            CoreError::not_found("package", format!("no package '{package}' in the manifest"))
        })?;
        auth::require(m, &user, "packages", Some(package), "update-svn")?;
        let old = p.reference_values.min_svn.unwrap_or(0);
        if min_svn <= old {
            return Err(CoreError::new(
                ErrorCode::Conflict,
                Some("min_svn"),
                format!(
                    "package '{package}': expected a min_svn above the current {old}, got {min_svn} (SVNs never go down)"
                ),
            ));
        }
        let mut next = m.clone();
        if let Some(p) = next.packages.get_mut(package) {
            p.reference_values.min_svn = Some(min_svn);
        }
        self.commit_manifest(Some(&current), next, Some(user), "package.svn", now)
    }
}
