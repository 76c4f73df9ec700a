//! The coordinator's logic, without I/O: states, manifest history, secrets, activation, roles,
//! audit. Generic over the [`Store`], so it runs against redb, etcd later, or memory in tests.
//!
//! Protected volumes: the latest committed version and root of each, which workloads move
//! forward with a compare-and-swap ([`Coordinator::commit_volume_state`]): rollback protection.
//!
//! States: `uninitialized` lasts only inside [`Coordinator::open`], which creates the
//! coordinator's identity (CA, image key) on first start; then `accepting-manifest` until the
//! first manifest is set, then `running`. Recovery (a state that cannot be unsealed) happens
//! before a store exists and is handled by the server with [`crate::recovery`].
//!
//! Every method takes `now` so verdicts (evidence, certificates, nonces) are reproducible.

mod activation;
mod audit;
mod auth;
mod error;
mod group_commit;
mod manifest_log;
mod nonce;
mod random;
mod recovery;
mod secrets;
mod volumes;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use confidant_attest::attester::Attester;
use confidant_attest::binding::{Purpose, report_data};
use confidant_attest::{Evidence, Tee, Verifiers};
use confidant_image::crypt::keys::{Curve, PrivateKey};
use serde::Serialize;

use crate::ca::CoordinatorCa;
use crate::store::{DataKey, Store};

pub use self::activation::{ActivateRequest, Activation, VolumeGrant};
pub use self::audit::{AuditEntry, MAX_AUDIT_PAGE};
pub use self::auth::Principal;
pub use self::error::{CoreError, CoreResult, ErrorCode, ErrorDetails, ErrorKind};
pub use self::manifest_log::{
    ManifestRecord, ManifestSet, RECORD_SIGNATURE_DOMAIN, RecoveryShares, ShareRecord,
};
pub use self::nonce::{NONCE_LEN, NONCE_LIFETIME, NonceBook};
pub use self::random::{Random, RandomError, RandomSource, SystemRandom, system_random};
pub use self::recovery::{Collected, RecoverError, ShareCollector};
pub use self::secrets::SecretView;
pub use self::volumes::{CommitVolume, VolumeState};

use self::manifest_log::Current;

/// Store tables the coordinator uses.
pub mod tables {
    /// The coordinator's identity and counters.
    pub const COORDINATOR: &str = "coordinator";
    /// Manifest records by zero-padded version.
    pub const MANIFESTS: &str = "manifests";
    /// Secret values by name.
    pub const SECRETS: &str = "secrets";
    /// Activation counts by workload.
    pub const ACTIVATIONS: &str = "activations";
    /// Audit entries by zero-padded sequence number.
    pub const AUDIT: &str = "audit";
    /// Protected volumes' keys by volume name.
    pub const VOLUMES: &str = "volumes";
    /// Protected volumes' latest committed version and root by volume name.
    pub const VOLUME_STATES: &str = "volume-states";
}

const KEY_CA: &str = "ca";
const KEY_IMAGE_KEY: &str = "image-key";
const KEY_MANIFEST_VERSION: &str = "manifest-version";
const KEY_RECOVERY: &str = "recovery";

/// The coordinator's state, as `GET status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Identity created, no manifest yet.
    AcceptingManifest,
    /// A manifest is set; workloads can activate.
    Running,
}

impl State {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::AcceptingManifest => "accepting-manifest",
            State::Running => "running",
        }
    }
}

/// What the coordinator needs besides its store.
pub struct Options {
    /// Its own evidence producer (sim here; configfs-tsm or Gramine on hardware).
    pub attester: Box<dyn Attester>,
    /// Verifiers for workloads' evidence (sim only when configured with trusted platform keys).
    pub verifiers: Verifiers,
    /// Its address as workloads reach it (`{{ confidant.coordinator }}`).
    pub address: String,
    /// The state's data key, to split into recovery shares when a manifest names owners.
    /// `None`: manifests with a `recovery` section are refused.
    pub recovery_key: Option<DataKey>,
    /// Where nonces, generated secrets and volume keys come from ([`system_random`]).
    pub random: Random,
}

/// The coordinator's public status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `accepting-manifest` or `running`.
    pub state: State,
    /// The coordinator's own TEE.
    pub tee: Tee,
    /// Whether it runs on the simulation TEE (no hardware protection).
    pub simulation: bool,
    /// The current manifest's version and hash.
    pub manifest: Option<ManifestRef>,
    /// Activations so far, by workload.
    pub activations: BTreeMap<String, u64>,
}

/// A manifest version and its hash.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestRef {
    /// The version, from 1.
    pub version: u64,
    /// SHA-256 of the canonical JSON, hex.
    pub hash: String,
}

/// The coordinator's answer to `GET attestation`.
#[derive(Debug, Clone, Serialize)]
pub struct Attestation {
    /// `accepting-manifest` or `running`.
    pub state: State,
    /// Whether the evidence comes from the simulation TEE.
    pub simulation: bool,
    /// Evidence whose report data binds the nonce, the manifest hash and the root CA's key.
    pub evidence: Evidence,
    /// The root CA (PEM).
    pub root_ca: String,
    /// The intermediate CA (PEM).
    pub intermediate_ca: String,
    /// The current manifest's hash (hex), if any.
    pub manifest_hash: Option<String>,
}

/// The coordinator: identity, current manifest and store.
pub struct Coordinator<S: Store> {
    store: S,
    options: Options,
    ca: CoordinatorCa,
    image_key: PrivateKey,
    nonces: NonceBook,
    activations: group_commit::GroupCommit,
    current: RwLock<Option<Arc<Current>>>,
}

impl<S: Store> std::fmt::Debug for Coordinator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

fn ca_error(e: crate::ca::CaError) -> CoreError {
    CoreError::internal(format!("coordinator CA: {e}"))
}

impl<S: Store> Coordinator<S> {
    /// Opens the coordinator on `store`: loads its identity and current manifest, or creates
    /// the identity (root and intermediate CA, image key) on first start.
    pub fn open(store: S, options: Options, now: SystemTime) -> CoreResult<Coordinator<S>> {
        let (ca, image_key) = Self::load_or_create_identity(&store, now)?;
        let current = manifest_log::load_current(&store)?;
        let nonces = NonceBook::new(options.random.clone())?;
        Ok(Coordinator {
            store,
            options,
            ca,
            image_key,
            nonces,
            activations: group_commit::GroupCommit::default(),
            current: RwLock::new(current.map(Arc::new)),
        })
    }

    fn load_or_create_identity(
        store: &S,
        now: SystemTime,
    ) -> CoreResult<(CoordinatorCa, PrivateKey)> {
        use crate::core::tables::COORDINATOR;
        if let (Some(ca), Some(key)) = (
            store.get(COORDINATOR, KEY_CA)?,
            store.get(COORDINATOR, KEY_IMAGE_KEY)?,
        ) {
            let ca = CoordinatorCa::from_sealed_bytes(&ca).map_err(ca_error)?;
            let key = PrivateKey::from_der(&key)
                .map_err(|e| CoreError::internal(format!("stored image key: {e}")))?;
            return Ok((ca, key));
        }
        // Uninitialized: create the identity; a concurrent first start (etcd) loses the race
        // on the compare-and-swap and loads the winner's identity instead.
        let ca = CoordinatorCa::generate("Confidant Coordinator", now).map_err(ca_error)?;
        let key = PrivateKey::generate_ec(Curve::P256)
            .map_err(|e| CoreError::internal(format!("generating the image key: {e}")))?;
        let ca_bytes = ca.to_sealed_bytes();
        let key_der = key.to_pkcs8_der().to_vec();
        let created = store.transaction(|tx| {
            if tx.get(COORDINATOR, KEY_CA)?.is_some() {
                return Ok::<bool, CoreError>(false);
            }
            tx.put(COORDINATOR, KEY_CA, &ca_bytes)?;
            tx.put(COORDINATOR, KEY_IMAGE_KEY, &key_der)?;
            Ok(true)
        })?;
        if created {
            Ok((ca, key))
        } else {
            Self::load_or_create_identity(store, now)
        }
    }

    /// The store (for the server's recovery export and tests).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The coordinator's CA.
    pub fn ca(&self) -> &CoordinatorCa {
        &self.ca
    }

    /// The coordinator's image public key (PEM) and its key id.
    pub fn image_key(&self) -> (String, String) {
        let public = self.image_key.public_key();
        (public.to_pem(), public.key_id())
    }

    fn current(&self) -> Option<Arc<Current>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    fn running(&self) -> CoreResult<Arc<Current>> {
        self.current()
            .ok_or_else(|| CoreError::wrong_state("accepting a manifest", "running"))
    }

    /// Whether the current manifest names workload `name` (metrics label only known names).
    pub fn has_workload(&self, name: &str) -> bool {
        self.current()
            .is_some_and(|c| c.manifest.workloads.contains_key(name))
    }

    /// The current state.
    pub fn state(&self) -> State {
        if self.current().is_some() {
            State::Running
        } else {
            State::AcceptingManifest
        }
    }

    fn simulation(&self) -> bool {
        self.options.attester.tee().is_simulation()
    }

    /// The public status.
    pub fn status(&self) -> CoreResult<Status> {
        let mut activations = BTreeMap::new();
        for w in self.store.keys(tables::ACTIVATIONS, "")? {
            let n = activation::read_count(self.store.get(tables::ACTIVATIONS, &w)?)?;
            activations.insert(w, n);
        }
        Ok(Status {
            state: self.state(),
            tee: self.options.attester.tee(),
            simulation: self.simulation(),
            manifest: self.current().map(|c| ManifestRef {
                version: c.record.version,
                hash: c.record.hash.clone(),
            }),
            activations,
        })
    }

    /// The coordinator's evidence for `nonce` (16 to 64 bytes).
    pub fn attestation(&self, nonce: &[u8]) -> CoreResult<Attestation> {
        if !(16..=64).contains(&nonce.len()) {
            return Err(CoreError::malformed(
                "nonce",
                format!("expected 16 to 64 bytes, got {}", nonce.len()),
            ));
        }
        let current = self.current();
        let hash = current.as_ref().map(|c| c.hash_bytes).unwrap_or([0u8; 32]);
        let evidence = self.evidence_for(nonce, &hash, &self.ca.root_spki_der())?;
        Ok(Attestation {
            state: self.state(),
            simulation: self.simulation(),
            evidence,
            root_ca: self.ca.root_pem(),
            intermediate_ca: self.ca.intermediate_pem(),
            manifest_hash: current.map(|c| c.record.hash.clone()),
        })
    }

    fn evidence_for(
        &self,
        nonce: &[u8],
        manifest_hash: &[u8; 32],
        spki: &[u8],
    ) -> CoreResult<Evidence> {
        let mut bound = nonce.to_vec();
        bound.extend_from_slice(manifest_hash);
        let rd = report_data(Purpose::Coordinator, &bound, spki);
        self.options
            .attester
            .attest(&rd)
            .map_err(|e| CoreError::internal(format!("producing the coordinator's evidence: {e}")))
    }

    /// A one-time nonce for an activation.
    pub fn issue_nonce(&self, now: SystemTime) -> CoreResult<[u8; NONCE_LEN]> {
        self.running()?;
        self.nonces.issue(now)
    }

    /// The recovery shares of the current manifest's owners, if any.
    pub fn recovery_shares(&self) -> CoreResult<Option<RecoveryShares>> {
        match self.store.get(tables::COORDINATOR, KEY_RECOVERY)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| CoreError::internal(format!("stored recovery shares: {e}"))),
        }
    }
}

/// RFC 3339 UTC time with seconds, as the workspace prints times; a clock before 1970 counts
/// as 1970 (as the records always have).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    confidant_attest::time::rfc3339(t.max(std::time::UNIX_EPOCH))
}
