//! Activation: a workload proves what it runs, and receives its certificate, parameters and
//! image keys.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use confidant_attest::binding::{Purpose, report_data_for_key_digest};
use confidant_attest::{Evidence, Tee};
use confidant_image::crypt::provider::{self, WrappedLayerKeysError};
use confidant_manifest::{
    Builtins, Manifest, RenderedParameters, Secret, SecretValue, VOLUME_KEY_BYTES, VolumePolicy,
    render_parameters,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::{CoreError, CoreResult, ErrorKind};
use super::{Coordinator, secrets};
use crate::ca::WorkloadIdentity;
use crate::store::Store;

/// How long a workload's mesh certificate is valid.
pub const WORKLOAD_CERT_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// The largest image manifest an activation may carry.
pub const MAX_IMAGE_MANIFEST: usize = 4 << 20;

/// What a workload sends to activate.
#[derive(Debug, Clone)]
pub struct ActivateRequest {
    /// The workload's name in the manifest.
    pub workload: String,
    /// A nonce from [`Coordinator::issue_nonce`].
    pub nonce: Vec<u8>,
    /// A PKCS#10 request (PEM or DER) for the key the evidence binds.
    pub csr: Vec<u8>,
    /// The workload's evidence.
    pub evidence: Evidence,
    /// The raw image manifest whose layer keys the workload needs, if any.
    pub image_manifest: Option<Vec<u8>>,
}

/// What an activated workload receives.
#[derive(Debug, Clone, Serialize)]
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
    #[serde(serialize_with = "ser_params")]
    pub parameters: RenderedParameters,
    /// Each encrypted layer's private options (ocicrypt JSON), by layer digest.
    pub layer_keys: BTreeMap<String, Value>,
    /// The workload's protected volumes, with their keys.
    pub volumes: Vec<VolumeGrant>,
    /// The workload's mesh endpoints (ingress ports, egress peers), as the manifest says.
    pub mesh: Option<confidant_manifest::Mesh>,
    /// Whether the evidence came from the simulation TEE.
    pub simulation: bool,
    /// Warnings from the appraisal (TCB needs hardening, simulation, …).
    pub warnings: Vec<String>,
}

/// A protected volume a workload mounts, with its key.
#[derive(Clone, Serialize)]
pub struct VolumeGrant {
    /// The volume's name.
    pub volume: String,
    /// Where the workload mounts it.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The volume's policy in the manifest: `rollback_protected`, `reinitializable` or
    /// `ephemeral`.
    pub policy: String,
    /// The volume's 256-bit key, base64: the stored key, or for `ephemeral` volumes a fresh
    /// one for this activation only.
    pub key: String,
}

impl std::fmt::Debug for VolumeGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeGrant")
            .field("volume", &self.volume)
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn ser_params<Ser: serde::Serializer>(
    p: &RenderedParameters,
    s: Ser,
) -> Result<Ser::Ok, Ser::Error> {
    json!({"files": p.files, "env": p.env, "args": p.args}).serialize(s)
}

/// The `provider.confidant` wrapped keys of the image manifest (untrusted bytes), its parse
/// errors as `malformed` errors of the request field `image_manifest`.
fn wrapped_layer_keys(manifest: &[u8]) -> CoreResult<Vec<(usize, String, String)>> {
    provider::wrapped_layer_keys(manifest).map_err(|e| match e {
        WrappedLayerKeysError::Digest { index, found } => CoreError::malformed(
            &format!("image_manifest.layers[{index}].digest"),
            format!("expected a digest string, found {found}"),
        ),
        e => CoreError::malformed("image_manifest", e.to_string()),
    })
}

pub(crate) fn read_count(bytes: Option<Vec<u8>>) -> CoreResult<u64> {
    match bytes {
        None => Ok(0),
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| CoreError::internal("stored activation count is not a number")),
    }
}

fn rejected(code: &'static str, field: &str, message: impl Into<String>) -> CoreError {
    CoreError::new(ErrorKind::Rejected, code, Some(field), message)
}

impl<S: Store> Coordinator<S> {
    /// `POST activate`: verifies the workload's evidence against its package and, only then,
    /// counts the activation and hands out certificate, parameters and layer keys.
    pub fn activate(&self, req: &ActivateRequest, now: SystemTime) -> CoreResult<Activation> {
        let current = self.running()?;
        let m = &current.manifest;
        let w = &req.workload;
        let workload = m.workloads.get(w).ok_or_else(|| {
            CoreError::not_found("workload", format!("no workload '{w}' in the manifest"))
        })?;
        let package = m.packages.get(&workload.package).ok_or_else(|| {
            CoreError::internal(format!("workload '{w}' names a missing package"))
        })?;
        // The nonce is spent whatever happens next: evidence is judged once.
        self.nonces.consume(&req.nonce, now)?;
        let tee = req.evidence.tee;
        if tee == Tee::Sim && !m.config.allow_simulation {
            return Err(rejected(
                "evidence_rejected",
                "evidence.tee",
                "expected hardware evidence: simulation evidence is refused because the manifest does not set config.allow_simulation",
            ));
        }
        if tee != package.tee {
            return Err(rejected(
                "evidence_rejected",
                "evidence.tee",
                format!(
                    "expected {} evidence for package '{}', got {}",
                    package.tee.as_str(),
                    workload.package,
                    tee.as_str()
                ),
            ));
        }
        let claims = self
            .options
            .verifiers
            .verify(&req.evidence, now)
            .map_err(|e| {
                rejected(
                    "evidence_rejected",
                    "evidence",
                    format!("evidence did not verify: {e}"),
                )
            })?;
        let appraisal = package.reference_values.appraise(&claims);
        if !appraisal.accepted() {
            let first = &appraisal.mismatches[0];
            let all: Vec<String> = appraisal
                .mismatches
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(rejected(
                "evidence_rejected",
                &format!("evidence.{}", first.field),
                format!(
                    "evidence does not match package '{}': {}",
                    workload.package,
                    all.join("; ")
                ),
            )
            .with_details(json!({ "mismatches": appraisal.mismatches })));
        }
        let spki_sha256 = crate::ca::csr_spki_sha256(&req.csr).map_err(|e| {
            CoreError::new(
                ErrorKind::Malformed,
                "malformed",
                Some("csr"),
                e.to_string(),
            )
        })?;
        let want = report_data_for_key_digest(Purpose::Activate, &req.nonce, &spki_sha256);
        if want[..] != claims.report_data[..] {
            return Err(rejected(
                "binding",
                "csr",
                format!(
                    "expected report data binding the nonce and the CSR's public key ({}), got {}: the evidence was made for another key or nonce",
                    hex::encode(want),
                    hex::encode(claims.report_data)
                ),
            ));
        }
        let layer_keys = match &req.image_manifest {
            None => BTreeMap::new(),
            Some(bytes) => self.layer_keys(&workload.package, &package.image_digests, bytes)?,
        };
        // Volume keys before the count: an activation refused for a missing key spends nothing.
        let mut volumes = Vec::new();
        for mount in &workload.volumes {
            let key = self.volume_key(m, &mount.volume)?;
            volumes.push(VolumeGrant {
                volume: mount.volume.clone(),
                path: mount.path.clone(),
                read_only: mount.read_only,
                policy: m
                    .volumes
                    .get(&mount.volume)
                    .map(|v| v.policy)
                    .unwrap_or_default()
                    .as_str()
                    .to_string(),
                key: base64::engine::general_purpose::STANDARD.encode(&*key),
            });
        }
        // Count it; the count, and its audit entry, are durable before anything is handed out.
        let time = super::rfc3339(now);
        let n = self.activations.count(
            &self.store,
            super::group_commit::CountRequest {
                workload: w.clone(),
                max: workload.max_activations,
                time,
            },
        )?;
        let identity = WorkloadIdentity {
            workload: w.clone(),
            activation: n.to_string(),
            sans: workload
                .mesh
                .as_ref()
                .map(|m| m.sans.clone())
                .unwrap_or_default(),
        };
        let issued = self
            .ca
            .sign_csr(&req.csr, &identity, now, WORKLOAD_CERT_VALIDITY)
            .map_err(|e| {
                CoreError::new(
                    ErrorKind::Malformed,
                    "malformed",
                    Some("csr"),
                    e.to_string(),
                )
            })?;
        let mut values = self.shared_secret_values(m)?;
        let mut unset = Vec::new();
        for (name, secret) in &m.secrets {
            if secret.per_activation() {
                if let Some(v) = secrets::generate(&self.ca, secret, now)? {
                    values.insert(
                        name.clone(),
                        v.to_public(matches!(secret, Secret::Plain {}))?,
                    );
                }
            } else if !values.contains_key(name) {
                unset.push(name.clone());
            }
        }
        let builtins = Builtins {
            cert: issued.cert_pem.clone(),
            root_ca: self.ca.root_pem(),
            coordinator: self.options.address.clone(),
        };
        let parameters = render_parameters(w, workload, &values, &builtins).map_err(|e| {
            let hint = if unset.is_empty() {
                String::new()
            } else {
                format!(" (plain secrets not set yet: {})", unset.join(", "))
            };
            CoreError::new(
                ErrorKind::Conflict,
                "template",
                Some(&format!("workloads.{w}.{}", e.location)),
                format!("{e}{hint}"),
            )
        })?;
        Ok(Activation {
            activation: format!("{w}/{n}"),
            volumes,
            mesh: workload.mesh.clone(),
            certificate: issued.cert_pem,
            chain: issued.chain_pem,
            root_ca: self.ca.root_pem(),
            parameters,
            layer_keys,
            simulation: tee.is_simulation(),
            warnings: appraisal.warnings,
        })
    }

    /// The key of volume `name` for an activation: a fresh one for `ephemeral` volumes, the
    /// value of its `key_secret` (a `plain` secret users set to the key they sealed it with),
    /// or the key the coordinator generated for it.
    fn volume_key(&self, m: &Manifest, name: &str) -> CoreResult<zeroize::Zeroizing<Vec<u8>>> {
        let volume = m.volumes.get(name).ok_or_else(|| {
            CoreError::internal(format!("a mount names a missing volume '{name}'"))
        })?;
        if volume.policy == VolumePolicy::Ephemeral {
            // Nothing outlives the activation: not even the key.
            let mut k = zeroize::Zeroizing::new(vec![0u8; 32]);
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
                .map_err(|_| CoreError::internal("no randomness for an ephemeral volume key"))?;
            return Ok(k);
        }
        if let Some(secret) = &volume.key_secret {
            let unset = || {
                CoreError::new(
                    ErrorKind::Conflict,
                    "volume_key_unset",
                    Some(&format!("volumes.{name}.key_secret")),
                    format!(
                        "volume '{name}' takes its key from secret '{secret}', which is not set yet: the volume's owner sets it to the {VOLUME_KEY_BYTES}-byte key the volume was sealed with (`confidant volume seal … --coordinator ADDR --volume {name}` does, as a user with 'write' on the secret)"
                    ),
                )
            };
            let stored = secrets::read(self.store.get(super::tables::SECRETS, secret)?, secret)?
                .and_then(|s| s.value)
                .ok_or_else(unset)?;
            let bytes = match stored.to_public(true)? {
                SecretValue::Plain(b) => zeroize::Zeroizing::new(b),
                _ => return Err(unset()),
            };
            if bytes.len() != VOLUME_KEY_BYTES {
                return Err(CoreError::new(
                    ErrorKind::Conflict,
                    "volume_key_unset",
                    Some(&format!("volumes.{name}.key_secret")),
                    format!(
                        "volume '{name}' takes its key from secret '{secret}', whose value is {} bytes, not a {VOLUME_KEY_BYTES}-byte key: set it again",
                        bytes.len()
                    ),
                ));
            }
            return Ok(bytes);
        }
        Ok(zeroize::Zeroizing::new(
            self.store
                .get(super::tables::VOLUMES, name)?
                .ok_or_else(|| CoreError::internal(format!("volume '{name}' has no key")))?,
        ))
    }

    fn layer_keys(
        &self,
        package: &str,
        allowed: &[String],
        manifest: &[u8],
    ) -> CoreResult<BTreeMap<String, Value>> {
        if manifest.len() > MAX_IMAGE_MANIFEST {
            return Err(CoreError::malformed(
                "image_manifest",
                format!(
                    "expected at most {MAX_IMAGE_MANIFEST} bytes, got {}",
                    manifest.len()
                ),
            ));
        }
        let digest = format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, manifest))
        );
        if !allowed.iter().any(|d| d == &digest) {
            return Err(CoreError::forbidden(format!(
                "image {digest} is not in package '{package}''s image_digests"
            ))
            .with_field("image_manifest"));
        }
        let mut out = BTreeMap::new();
        for (i, digest, wrapped) in wrapped_layer_keys(manifest)? {
            let options =
                provider::unwrap_as_coordinator(&self.image_key, &wrapped).map_err(|e| {
                    CoreError::new(
                        ErrorKind::Rejected,
                        "image_key",
                        Some(&format!("image_manifest.layers[{i}]")),
                        format!("cannot unwrap the layer key: {e}"),
                    )
                })?;
            let json: Value = serde_json::from_slice(&options.to_json())
                .map_err(|e| CoreError::internal(format!("layer options: {e}")))?;
            out.insert(digest, json);
        }
        Ok(out)
    }
}
