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

use super::error::{CoreError, CoreResult, ErrorCode, ErrorDetails};
use super::{Coordinator, secrets};
use crate::ca::WorkloadIdentity;
use crate::store::Store;

/// How long a workload's mesh certificate is valid.
pub(crate) const WORKLOAD_CERT_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// The largest image manifest an activation may carry.
pub(crate) const MAX_IMAGE_MANIFEST: usize = 4 << 20;

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

pub use confidant_api::{Activation, VolumeGrant};
use confidant_api::{LayerKey, Parameters};

fn wire_parameters(p: RenderedParameters) -> Parameters {
    Parameters {
        files: p.files.into_iter().map(|(k, v)| (k, v.into())).collect(),
        env: p.env.into_iter().map(|(k, v)| (k, v.into())).collect(),
        args: p.args.into_iter().map(Into::into).collect(),
    }
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

fn rejected(code: ErrorCode, field: &str, message: impl Into<String>) -> CoreError {
    CoreError::new(code, Some(field), message)
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
                ErrorCode::EvidenceRejected,
                "evidence.tee",
                "expected hardware evidence: simulation evidence is refused because the manifest does not set config.allow_simulation",
            ));
        }
        if tee != package.tee {
            return Err(rejected(
                ErrorCode::EvidenceRejected,
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
                // Evidence that does not parse was not judged: the request is malformed (400),
                // as `confidant attest verify` says with exit 2.
                let code = match e {
                    confidant_attest::Error::Malformed { .. } => ErrorCode::Malformed,
                    _ => ErrorCode::EvidenceRejected,
                };
                rejected(code, "evidence", format!("evidence did not verify: {e}"))
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
                ErrorCode::EvidenceRejected,
                &format!("evidence.{}", first.field),
                format!(
                    "evidence does not match package '{}': {}",
                    workload.package,
                    all.join("; ")
                ),
            )
            .with_details(ErrorDetails {
                mismatches: appraisal.mismatches.iter().map(Into::into).collect(),
                ..ErrorDetails::default()
            }));
        }
        // The CSR, parsed and its self-signature checked once, as the CA will sign it.
        let csr = self
            .ca
            .check_csr(&req.csr)
            .map_err(|e| CoreError::new(ErrorCode::Malformed, Some("csr"), e.to_string()))?;
        let spki_sha256 = csr.spki_sha256();
        let want = report_data_for_key_digest(Purpose::Activate, &req.nonce, &spki_sha256);
        if want[..] != claims.report_data[..] {
            return Err(rejected(
                ErrorCode::Binding,
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
                    .unwrap_or_default(),
                key: base64::engine::general_purpose::STANDARD
                    .encode(&*key)
                    .into(),
            });
        }
        // Everything else that can refuse the activation, before it is counted: the templates,
        // rendered once with a stand-in for the certificate (a `plain` secret they name may
        // not be set yet). The CSR was checked above.
        let mut values = self.shared_secret_values(m)?;
        let mut unset = Vec::new();
        for (name, secret) in &m.secrets {
            if secret.per_activation() {
                if let Some(v) =
                    secrets::generate(self.options.random.as_ref(), &self.ca, secret, now)?
                {
                    values.insert(
                        name.clone(),
                        v.to_public(matches!(secret, Secret::Plain {}))?,
                    );
                }
            } else if !values.contains_key(name) {
                unset.push(name.clone());
            }
        }
        let render = |cert: String| {
            let builtins = Builtins {
                cert,
                root_ca: self.ca.root_pem(),
                coordinator: self.options.address.clone(),
            };
            render_parameters(w, workload, &values, &builtins).map_err(|e| {
                let hint = if unset.is_empty() {
                    String::new()
                } else {
                    format!(" (plain secrets not set yet: {})", unset.join(", "))
                };
                CoreError::new(
                    ErrorCode::Template,
                    Some(&format!("workloads.{w}.{}", e.location)),
                    format!("{e}{hint}"),
                )
            })
        };
        render(String::new())?;
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
            .sign_checked(&csr, &identity, now, WORKLOAD_CERT_VALIDITY)
            .map_err(|e| CoreError::internal(format!("signing the workload certificate: {e}")))?;
        let parameters = render(issued.cert_pem.clone())?;
        Ok(Activation {
            activation: format!("{w}/{n}"),
            volumes,
            mesh: workload.mesh.clone(),
            certificate: issued.cert_pem,
            chain: issued.chain_pem,
            root_ca: self.ca.root_pem(),
            parameters: wire_parameters(parameters),
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
            super::random::fill(self.options.random.as_ref(), &mut k)?;
            return Ok(k);
        }
        if let Some(secret) = &volume.key_secret {
            let unset = || {
                CoreError::new(
                    ErrorCode::VolumeKeyUnset,
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
                    ErrorCode::VolumeKeyUnset,
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
    ) -> CoreResult<BTreeMap<String, LayerKey>> {
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
                        ErrorCode::ImageKey,
                        Some(&format!("image_manifest.layers[{i}]")),
                        format!("cannot unwrap the layer key: {e}"),
                    )
                })?;
            let json: LayerKey = serde_json::from_slice(&options.to_json())
                .map_err(|e| CoreError::internal(format!("layer options: {e}")))?;
            out.insert(digest, json);
        }
        Ok(out)
    }
}
