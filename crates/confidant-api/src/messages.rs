//! Every request and answer of `/api/v1`, as the coordinator serves them and clients read
//! them. Field names, optionality and meaning are those of `docs/formats/coordinator-api.md`.

use std::collections::BTreeMap;

use confidant_attest::{Evidence, Tee};
use confidant_manifest::{Mesh, VolumePolicy};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SecretString;

/// The coordinator's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CoordinatorState {
    /// Identity created, no manifest yet.
    AcceptingManifest,
    /// A manifest is set; workloads can activate.
    Running,
    /// The state cannot be unsealed on this machine; recovery owners must send their shares.
    Recovery,
}

impl CoordinatorState {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CoordinatorState::AcceptingManifest => "accepting-manifest",
            CoordinatorState::Running => "running",
            CoordinatorState::Recovery => "recovery",
        }
    }
}

/// A manifest version and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestRef {
    /// The version, from 1.
    pub version: u64,
    /// SHA-256 of the manifest's canonical JSON, hex.
    pub hash: String,
}

/// `GET status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// The coordinator's state.
    pub state: CoordinatorState,
    /// The coordinator's own TEE.
    pub tee: Tee,
    /// Whether it runs on the SIMULATION TEE (no hardware protection).
    pub simulation: bool,
    /// The coordinator's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The current manifest (not in `recovery`; `null` before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestRef>,
    /// Activations so far, by workload (not in `recovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<BTreeMap<String, u64>>,
    /// In `recovery`: the shares received so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// In `recovery`: how many shares recover the state (absent when no `recovery.json` was
    /// kept: the state cannot be recovered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

/// The query of `GET attestation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttestationQuery {
    /// 16 to 64 bytes, hex: the client's fresh nonce.
    pub nonce: Option<String>,
}

/// `GET attestation`: the coordinator's evidence, binding the client's nonce, the current
/// manifest's hash and the root CA's key (in `recovery`: the TLS key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Attestation {
    /// The coordinator's state.
    pub state: CoordinatorState,
    /// Whether the evidence comes from the SIMULATION TEE.
    pub simulation: bool,
    /// The evidence.
    #[schemars(with = "EvidenceSchema")]
    pub evidence: Evidence,
    /// The root CA (PEM); absent in `recovery` (it is sealed away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ca: Option<String>,
    /// The intermediate CA (PEM); absent in `recovery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_ca: Option<String>,
    /// The current manifest's hash (hex), `null` without one.
    pub manifest_hash: Option<String>,
    /// SHA-256 (hex) of the SubjectPublicKeyInfo of the TLS certificate the coordinator serves.
    pub tls_spki_sha256: String,
}

/// The evidence envelope's schema (`confidant_attest::Evidence` on the wire).
#[derive(JsonSchema)]
#[schemars(rename = "Evidence")]
#[allow(dead_code)]
struct EvidenceSchema {
    /// Which TEE produced the bytes.
    tee: Tee,
    /// The raw evidence bytes, base64.
    evidence: String,
    /// Material that vouches for the evidence's signer.
    #[serde(default)]
    endorsements: Option<EndorsementsSchema>,
}

/// The endorsements of an evidence envelope.
#[derive(JsonSchema)]
#[schemars(rename = "Endorsements")]
#[allow(dead_code)]
struct EndorsementsSchema {
    /// DCAP collateral in dcap-qvl's JSON form.
    #[serde(default)]
    collateral: Option<serde_json::Value>,
    /// The SNP VCEK or VLEK certificate, base64: DER, PEM, or a PEM bundle of the VCEK, then its
    /// ASK and ARK.
    #[serde(default)]
    vcek: Option<String>,
    /// The AMD ASK (or ASVK) and ARK certificates, PEM.
    #[serde(default)]
    cert_chain: Option<String>,
}

/// `GET image-key`: the coordinator's image key (EC P-256), for
/// `confidant image encrypt --coordinator-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageKey {
    /// The public key (SPKI PEM).
    pub public_key: String,
    /// Its identifier in the `provider.confidant` annotations.
    pub key_id: String,
}

/// The query of `GET manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ManifestQuery {
    /// The version to read (default: the current one).
    pub version: Option<u64>,
}

/// `GET manifest`: one version of the manifest, signed and chained to the one before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManifestRecord {
    /// The version, from 1.
    pub version: u64,
    /// SHA-256 of the manifest's canonical JSON, hex.
    pub hash: String,
    /// The hash of the version before, `null` for the first.
    pub previous: Option<String>,
    /// When it was set (RFC 3339, UTC).
    pub time: String,
    /// The user who set it (`null`: the first manifest, set without a client certificate).
    pub set_by: Option<String>,
    /// The manifest (its canonical JSON, as an object).
    #[schemars(with = "confidant_manifest::Manifest")]
    pub manifest: serde_json::Value,
    /// ECDSA P-256 SHA-256 (ASN.1 DER, base64) by the root CA key over the record's header.
    pub signature: String,
}

/// One recovery owner's share of the state's data key, encrypted to the owner's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EncryptedShare {
    /// The owner's name in the manifest.
    pub owner: String,
    /// SHA-256 of the owner's SubjectPublicKeyInfo DER, hex.
    pub owner_key_id: String,
    /// RSA-OAEP-SHA-256 (label `confidant/v1/recovery-share`) of the share, base64.
    pub ciphertext: String,
}

/// The recovery shares of a manifest's owners (`GET recovery`, and in `POST manifest`'s answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecoveryShares {
    /// How many shares recover the state.
    pub threshold: u32,
    /// One per owner.
    pub shares: Vec<EncryptedShare>,
}

/// `POST manifest` and `POST packages/{name}/svn`: the new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ManifestSet {
    /// The new version.
    pub version: u64,
    /// Its hash.
    pub hash: String,
    /// The hash of the version before.
    pub previous: Option<String>,
    /// The record's signature (base64).
    pub signature: String,
    /// The owners' encrypted shares, when the manifest has a `recovery` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryShares>,
}

/// `POST packages/{name}/svn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SvnRequest")]
pub struct SvnUpdate {
    /// The package's new minimum SVN (never lower than the current one).
    pub min_svn: u32,
}

/// `POST nonce`: a one-time nonce for an activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nonce {
    /// 32 bytes, hex.
    pub nonce: String,
    /// How long the coordinator accepts it.
    pub expires_in_seconds: u64,
}

/// `POST activate`: a workload proves what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The workload's name in the manifest.
    pub workload: String,
    /// A nonce from `POST nonce`, hex.
    pub nonce: String,
    /// A PKCS#10 request (PEM) for the key the evidence binds.
    pub csr: String,
    /// The workload's evidence.
    #[schemars(with = "EvidenceSchema")]
    pub evidence: Evidence,
    /// The image manifest whose layer keys the workload needs, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_manifest: Option<String>,
}

/// Rendered files, environment and arguments. Values may hold secrets: they are zeroed when
/// dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// File contents by absolute path.
    #[serde(default)]
    pub files: BTreeMap<String, SecretString>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, SecretString>,
    /// Command-line arguments.
    #[serde(default)]
    pub args: Vec<SecretString>,
}

/// A layer's private ocicrypt options, as the coordinator unwrapped them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LayerKey {
    /// The AES-256 key, base64.
    pub symkey: SecretString,
    /// The digest of the layer's plaintext, `sha256:<hex>`.
    pub digest: String,
    /// Cipher options (`nonce`: the CTR nonce, base64).
    #[serde(default)]
    pub cipheroptions: BTreeMap<String, String>,
}

/// A protected volume a workload mounts, with its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeGrant {
    /// The volume's name.
    pub volume: String,
    /// Where the workload mounts it.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The volume's policy in the manifest.
    pub policy: VolumePolicy,
    /// The volume's 256-bit key, base64 (`ephemeral`: fresh for this activation).
    pub key: SecretString,
}

/// `POST activate`'s answer: the workload's certificate, parameters and keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Activation {
    /// `<workload>/<n>`: the n-th activation of the workload.
    pub activation: String,
    /// The workload's certificate for the CSR's key (PEM).
    pub certificate: String,
    /// The certificate and the intermediate CA (PEM).
    pub chain: String,
    /// The root CA (PEM).
    pub root_ca: String,
    /// Rendered files, env and args.
    pub parameters: Parameters,
    /// Each encrypted layer's private options, by layer digest.
    #[serde(default)]
    pub layer_keys: BTreeMap<String, LayerKey>,
    /// The workload's protected volumes, with their keys.
    #[serde(default)]
    pub volumes: Vec<VolumeGrant>,
    /// The workload's mesh endpoints, as the manifest says.
    #[serde(default)]
    pub mesh: Option<Mesh>,
    /// Whether the evidence came from the SIMULATION TEE.
    pub simulation: bool,
    /// Warnings from the appraisal (TCB needs hardening, simulation, …).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `GET secrets/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "SecretValue")]
pub struct SecretView {
    /// Its name.
    pub name: String,
    /// Its kind (`symmetric-key`, `cert-ecdsa`, …, `plain`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes (symmetric keys and plain secrets), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<SecretString>,
    /// Certificate (PEM), for `cert-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Private key (PKCS#8 PEM), for `cert-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretString>,
    /// Public key (PEM), for `cert-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// `PUT secrets/{name}`: a `plain` secret's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SecretPut")]
pub struct SecretPut {
    /// The bytes, base64 (at most 1 MiB).
    pub value: SecretString,
}

/// `PUT secrets/{name}`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSet {
    /// The secret's name.
    pub name: String,
}

/// `GET volumes/{name}/state`, and `POST`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeState {
    /// The volume's name.
    pub volume: String,
    /// Its policy in the current manifest.
    pub policy: VolumePolicy,
    /// The latest committed version; 0: nothing committed yet.
    pub version: u64,
    /// The root committed with `version` (64 hex digits); `null` before the first commit.
    pub root: Option<String>,
    /// How many commits were resets to an empty volume.
    pub reinitialized: u64,
    /// When the latest commit was accepted (RFC 3339, UTC); `null` before the first commit.
    pub updated: Option<String>,
}

/// `POST volumes/{name}/state`: a compare-and-swap of the volume's version and root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCommit {
    /// The version the new state descends from: must be the coordinator's current one.
    pub expected_version: u64,
    /// The new version: exactly `expected_version + 1`.
    pub version: u64,
    /// The new root, 64 hex digits.
    pub root: String,
    /// A reset to an empty volume (`reinitializable` volumes only).
    #[serde(default)]
    pub reinitialize: bool,
}

/// The query of `GET audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditQuery {
    /// Only entries after this sequence number.
    pub after: Option<u64>,
    /// At most this many entries (at most 1000).
    pub limit: Option<usize>,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Its sequence number, from 1, without gaps.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who: a user's name, `workload:<name>/<n>`, `anonymous`, `coordinator`.
    pub actor: String,
    /// What: `manifest.set`, `package.svn`, `secret.read`, `secret.write`, `activate`, …
    pub action: String,
    /// On what.
    pub target: String,
}

/// `GET audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditPage {
    /// The entries, oldest first.
    pub entries: Vec<AuditEntry>,
}

/// `POST recover`: one owner's decrypted share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// The decrypted share, base64.
    pub share: SecretString,
}

/// `POST recover`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverProgress {
    /// `recovery` until enough shares arrived, then `running`.
    pub state: CoordinatorState,
    /// Shares received so far (in `recovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// Shares needed (in `recovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}
