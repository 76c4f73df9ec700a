//! Secrets: generated when a manifest declares them (shared) or at each activation
//! (`per_activation`), or set by users (`plain`).

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_manifest::{Manifest, Secret, SecretValue, SecretValues};
use serde::{Deserialize, Serialize};

use super::error::{CoreError, CoreResult, ErrorCode};
use super::tables::SECRETS;
use super::{Coordinator, Principal, audit, auth};
use crate::ca::{CoordinatorCa, SecretKeyKind};
use crate::store::{Store, Transaction};

/// The largest value a user may set for a `plain` secret.
pub(crate) const MAX_PLAIN_SECRET: usize = 1 << 20;

/// A secret as stored: the definition it was made for, and its value (absent: a `plain`
/// secret nobody set yet).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSecret {
    /// SHA-256 (hex) of the secret's definition in canonical JSON: a changed definition makes a
    /// new value.
    pub definition: String,
    pub value: Option<StoredValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(crate) enum StoredValue {
    Bytes {
        b64: String,
    },
    Certificate {
        cert: String,
        key: String,
        public_key: String,
    },
}

impl StoredValue {
    pub(crate) fn to_public(&self, plain: bool) -> CoreResult<SecretValue> {
        Ok(match self {
            StoredValue::Bytes { b64 } => {
                let bytes = STANDARD
                    .decode(b64)
                    .map_err(|e| CoreError::internal(format!("stored secret: {e}")))?;
                if plain {
                    SecretValue::Plain(bytes)
                } else {
                    SecretValue::SymmetricKey(bytes)
                }
            }
            StoredValue::Certificate {
                cert,
                key,
                public_key,
            } => SecretValue::Certificate {
                cert: cert.clone(),
                key: key.clone(),
                public_key: public_key.clone(),
            },
        })
    }
}

/// A secret as `GET secrets/{name}` returns it.
pub use confidant_api::SecretView;

/// SHA-256 of a secret definition's canonical JSON, hex.
pub(crate) fn definition_hash(secret: &Secret) -> String {
    let json = serde_json::to_vec(secret).unwrap_or_default();
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &json))
}

/// Generates a value for a non-plain secret.
pub(crate) fn generate(
    random: &dyn super::RandomSource,
    ca: &CoordinatorCa,
    secret: &Secret,
    now: SystemTime,
) -> CoreResult<Option<StoredValue>> {
    let cert = |kind: SecretKeyKind, sans: &[String], days: Option<u32>| {
        let issued = ca
            .issue_secret_cert(kind, sans, days.unwrap_or(365), now)
            .map_err(|e| CoreError::internal(format!("issuing a certificate secret: {e}")))?;
        let public_key = crate::ca::public_key_pem_of(&issued.cert_pem)
            .map_err(|e| CoreError::internal(format!("issued certificate: {e}")))?;
        // `cert` is the chain a TLS peer presents: the leaf, then the intermediate (the root
        // is what the other side trusts).
        Ok::<_, CoreError>(Some(StoredValue::Certificate {
            cert: issued.chain_pem,
            key: issued.key_pem.to_string(),
            public_key,
        }))
    };
    match secret {
        Secret::SymmetricKey { size, .. } => {
            let mut bytes = vec![0u8; (*size as usize).div_ceil(8)];
            super::random::fill(random, &mut bytes)?;
            Ok(Some(StoredValue::Bytes {
                b64: STANDARD.encode(&bytes),
            }))
        }
        Secret::CertEcdsa {
            size,
            sans,
            validity_days,
            ..
        } => cert(
            SecretKeyKind::Ecdsa {
                size: size.unwrap_or(256),
            },
            sans,
            *validity_days,
        ),
        Secret::CertEd25519 {
            sans,
            validity_days,
            ..
        } => cert(SecretKeyKind::Ed25519, sans, *validity_days),
        Secret::CertRsa {
            size,
            sans,
            validity_days,
            ..
        } => cert(
            SecretKeyKind::Rsa {
                size: size.unwrap_or(3072),
            },
            sans,
            *validity_days,
        ),
        Secret::Plain {} => Ok(None),
    }
}

/// Secrets to write (name, value) and names to delete.
pub(crate) type SecretPlan = (Vec<(String, StoredSecret)>, Vec<String>);

/// The shared secrets `new` needs, reusing stored values whose definition did not change.
/// Returns what to write (name → stored secret) and which stored names to delete.
pub(crate) fn plan<S: Store>(
    random: &dyn super::RandomSource,
    store: &S,
    ca: &CoordinatorCa,
    new: &Manifest,
    now: SystemTime,
) -> CoreResult<SecretPlan> {
    let mut writes = Vec::new();
    for (name, secret) in &new.secrets {
        if secret.per_activation() {
            continue;
        }
        let def = definition_hash(secret);
        if let Some(stored) = read(store.get(SECRETS, name)?, name)?
            && stored.definition == def
        {
            continue;
        }
        writes.push((
            name.clone(),
            StoredSecret {
                definition: def,
                value: generate(random, ca, secret, now)?,
            },
        ));
    }
    let deletes = store
        .keys(SECRETS, "")?
        .into_iter()
        .filter(|n| {
            new.secrets
                .get(n.as_str())
                .is_none_or(Secret::per_activation)
        })
        .collect();
    Ok((writes, deletes))
}

/// Fresh 256-bit keys for the manifest's volumes that have none yet, except those whose key is
/// a user's secret (`key_secret`: sealed on the host with it, the coordinator never makes one).
/// Keys are never deleted or replaced (a volume removed and added again keeps its data readable).
pub(crate) fn new_volume_keys<S: Store>(
    random: &dyn super::RandomSource,
    store: &S,
    m: &Manifest,
) -> CoreResult<Vec<(String, zeroize::Zeroizing<Vec<u8>>)>> {
    let mut out = Vec::new();
    for (name, volume) in &m.volumes {
        if volume.key_secret.is_some() || store.get(super::tables::VOLUMES, name)?.is_some() {
            continue;
        }
        let mut key = zeroize::Zeroizing::new(vec![0u8; 32]);
        super::random::fill(random, &mut key)?;
        out.push((name.clone(), key));
    }
    Ok(out)
}

pub(crate) fn read(tx_get: Option<Vec<u8>>, name: &str) -> CoreResult<Option<StoredSecret>> {
    match tx_get {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| CoreError::internal(format!("stored secret '{name}': {e}"))),
    }
}

pub(crate) fn write(tx: &mut dyn Transaction, name: &str, s: &StoredSecret) -> CoreResult<()> {
    let bytes =
        serde_json::to_vec(s).map_err(|e| CoreError::internal(format!("secret '{name}': {e}")))?;
    tx.put(SECRETS, name, &bytes)?;
    Ok(())
}

impl<S: Store> Coordinator<S> {
    /// The values of every shared secret that has one (unset `plain` secrets are absent).
    pub(crate) fn shared_secret_values(&self, m: &Manifest) -> CoreResult<SecretValues> {
        let mut out = SecretValues::new();
        for (name, secret) in &m.secrets {
            if secret.per_activation() {
                continue;
            }
            if let Some(stored) = read(self.store.get(SECRETS, name)?, name)?
                && let Some(v) = stored.value
            {
                out.insert(
                    name.clone(),
                    v.to_public(matches!(secret, Secret::Plain {}))?,
                );
            }
        }
        Ok(out)
    }

    /// `GET secrets/{name}`: a shared secret's value, for users whose role allows `read`.
    pub fn secret_get(
        &self,
        who: &Principal,
        name: &str,
        now: SystemTime,
    ) -> CoreResult<SecretView> {
        let current = self.running()?;
        let user = auth::user_of(&current.users, who, "reading a secret")?.to_string();
        let m = &current.manifest;
        let secret = m.secrets.get(name).ok_or_else(|| {
            CoreError::not_found("name", format!("no secret '{name}' in the manifest"))
        })?;
        auth::require(m, &user, "secrets", Some(name), "read")?;
        if secret.per_activation() {
            return Err(CoreError::not_found(
                "name",
                format!(
                    "secret '{name}' is per_activation: each activation has its own value, there is none to read"
                ),
            ));
        }
        let stored = read(self.store.get(SECRETS, name)?, name)?
            .and_then(|s| s.value)
            .ok_or_else(|| {
                CoreError::not_found("name", format!("plain secret '{name}' has not been set"))
            })?;
        let time = super::rfc3339(now);
        self.store
            .transaction(|tx| audit::append(tx, &time, &user, "secret.read", name))?;
        let mut view = SecretView {
            name: name.to_string(),
            kind: secret.type_name().to_string(),
            value: None,
            cert: None,
            key: None,
            public_key: None,
        };
        match stored {
            StoredValue::Bytes { b64 } => view.value = Some(b64.into()),
            StoredValue::Certificate {
                cert,
                key,
                public_key,
            } => {
                view.cert = Some(cert);
                view.key = Some(key.into());
                view.public_key = Some(public_key);
            }
        }
        Ok(view)
    }

    /// `PUT secrets/{name}`: sets a `plain` secret, for users whose role allows `write`.
    pub fn secret_put(
        &self,
        who: &Principal,
        name: &str,
        value: &[u8],
        now: SystemTime,
    ) -> CoreResult<()> {
        let current = self.running()?;
        let user = auth::user_of(&current.users, who, "writing a secret")?.to_string();
        let m = &current.manifest;
        let secret = m.secrets.get(name).ok_or_else(|| {
            CoreError::not_found("name", format!("no secret '{name}' in the manifest"))
        })?;
        auth::require(m, &user, "secrets", Some(name), "write")?;
        if !matches!(secret, Secret::Plain {}) {
            return Err(CoreError::new(
                ErrorCode::Conflict,
                Some("name"),
                format!(
                    "secret '{name}' is {}: the coordinator generates it; only plain secrets can be set",
                    secret.type_name()
                ),
            ));
        }
        if value.len() > MAX_PLAIN_SECRET {
            return Err(CoreError::malformed(
                "value",
                format!(
                    "expected at most {MAX_PLAIN_SECRET} bytes, got {}",
                    value.len()
                ),
            ));
        }
        if let Some((volume, _)) = m
            .volumes
            .iter()
            .find(|(_, v)| v.key_secret.as_deref() == Some(name))
            && value.len() != confidant_manifest::VOLUME_KEY_BYTES
        {
            return Err(CoreError::malformed(
                "value",
                format!(
                    "secret '{name}' is the key of volume '{volume}': expected exactly {} bytes, got {}",
                    confidant_manifest::VOLUME_KEY_BYTES,
                    value.len()
                ),
            ));
        }
        let stored = StoredSecret {
            definition: definition_hash(secret),
            value: Some(StoredValue::Bytes {
                b64: STANDARD.encode(value),
            }),
        };
        let time = super::rfc3339(now);
        let version = current.record.version;
        self.store.transaction(|tx| {
            // The manifest may have changed since we looked: write only under the version
            // whose roles allowed it.
            super::manifest_log::expect_version(tx, version)?;
            write(tx, name, &stored)?;
            audit::append(tx, &time, &user, "secret.write", name)
        })
    }
}
