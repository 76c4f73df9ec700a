//! Attesting a coordinator before trusting it (`confidant verify`, `confidant recover`).
//!
//! The client picks a fresh nonce, fetches `GET /api/v1/attestation?nonce=…` and checks, before
//! trusting anything the coordinator says:
//!
//! 1. the evidence is authentic (`confidant_attest` verifiers; the simulation TEE only with the
//!    platform keys given) and matches the reference values;
//! 2. its report data binds the nonce, the manifest hash and the root CA's public key
//!    (`report_data(coordinator, nonce ‖ H, SPKI(root_ca))`), or in recovery the public key of
//!    the TLS certificate of this very connection;
//! 3. the TLS certificate the server presented chains to that root CA and names the host.
//!
//! An accepted attestation is saved with [`crate::Saved::save`] and every later client pins it.

use std::time::SystemTime;

use confidant_api::CoordinatorState;
use confidant_attest::verify::sim::SimVerifier;
use confidant_attest::{Claims, Mismatch, Purpose, ReferenceValues, Tee, Verifiers};
use rustls::pki_types::CertificateDer;

use crate::{
    Client, ClientError, Result, check_chain, one_certificate, random_bytes, spki_der, spki_sha256,
};

/// Strips an optional `sha256:` from a digest and checks it is 32 bytes of hex.
pub fn digest_bytes(what: &str, text: &str) -> Result<[u8; 32]> {
    let hexpart = text.strip_prefix("sha256:").unwrap_or(text);
    let bytes = hex::decode(hexpart)
        .map_err(|e| ClientError::Config(format!("{what} is not hex: {text:?}: {e}")))?;
    bytes.try_into().map_err(|v: Vec<u8>| {
        ClientError::Config(format!("{what}: expected 32 bytes, got {}", v.len()))
    })
}

/// The outcome of attesting the coordinator.
#[derive(Debug)]
pub struct CoordinatorAttestation {
    /// The answer as received.
    pub answer: confidant_api::Attestation,
    /// The claims, when the evidence verified.
    pub claims: Option<Claims>,
    /// Reference values, binding or certificate checks that failed.
    pub mismatches: Vec<Mismatch>,
    /// Why the evidence was not accepted (verification failures and mismatches).
    pub reasons: Vec<String>,
    /// Accepted, but worth telling.
    pub warnings: Vec<String>,
    /// The root CA, parsed.
    pub root: Option<CertificateDer<'static>>,
    /// The intermediate CA, parsed.
    pub intermediate: Option<CertificateDer<'static>>,
    /// The server's TLS certificate on the connection that answered.
    pub leaf: CertificateDer<'static>,
    /// When the evidence was verified.
    pub verified_at: SystemTime,
}

impl CoordinatorAttestation {
    /// True when the evidence verified and every check passed.
    pub fn accepted(&self) -> bool {
        self.claims.is_some() && self.reasons.is_empty()
    }

    /// The TEE of the evidence.
    pub fn tee(&self) -> Tee {
        self.answer.evidence.tee
    }

    /// Whether the coordinator runs on (or claims) the simulation TEE.
    pub fn simulation(&self) -> bool {
        self.tee().is_simulation() || self.answer.simulation
    }

    /// The launch measurement (hex), when the evidence verified.
    pub fn measurement(&self) -> Option<String> {
        self.claims.as_ref().map(|c| hex::encode(&c.measurement))
    }
}

/// Fetches the coordinator's evidence for a fresh nonce on `client` and checks it (see the
/// module documentation). Errors are transport or API errors; a judged, failed check is a
/// [`CoordinatorAttestation`] that is not [`CoordinatorAttestation::accepted`]. `sim_hint`
/// names where trusted simulation platform keys come from, for the reason given when none is.
pub fn attest(
    client: &Client,
    refs: &ReferenceValues,
    sim_keys: &[[u8; 32]],
    sim_hint: &str,
) -> Result<CoordinatorAttestation> {
    let address = client.address();
    let nonce = random_bytes::<32>()?;
    let answer = client.attestation(&nonce)?;
    let leaf = answer
        .peer_leaf
        .clone()
        .or_else(|| client.peer_chain().leaf)
        .ok_or_else(|| {
            ClientError::Config("the TLS connection did not show the server's certificate".into())
        })?;
    let presented = client.peer_chain().intermediates;
    let parsed = answer.body;

    let mut att = CoordinatorAttestation {
        answer: parsed,
        claims: None,
        mismatches: Vec::new(),
        reasons: Vec::new(),
        warnings: Vec::new(),
        root: None,
        intermediate: None,
        leaf,
        verified_at: SystemTime::now(),
    };
    let a = &att.answer;
    let root = a
        .root_ca
        .as_deref()
        .map(|p| one_certificate("root_ca", p))
        .transpose()?;
    let intermediate = a
        .intermediate_ca
        .as_deref()
        .map(|p| one_certificate("intermediate_ca", p))
        .transpose()?;
    let manifest_hash = match &a.manifest_hash {
        Some(h) => digest_bytes("manifest_hash", h)?,
        None => [0u8; 32],
    };

    // 1. Authenticity and reference values.
    let mut verifiers = Verifiers::new();
    if !sim_keys.is_empty() {
        verifiers = verifiers.with_sim(SimVerifier::new(sim_keys.to_vec()));
    }
    match verifiers.verify(&a.evidence, att.verified_at) {
        Ok(claims) => {
            let appraisal = refs.appraise(&claims);
            att.mismatches.extend(appraisal.mismatches);
            att.warnings.extend(appraisal.warnings);
            att.claims = Some(claims);
        }
        Err(e) => {
            let mut reason = e.to_string();
            if a.evidence.tee == Tee::Sim && sim_keys.is_empty() {
                reason.push_str(&format!(
                    "; SIMULATION evidence is trusted only with {sim_hint}"
                ));
            }
            att.reasons.push(reason);
        }
    }
    if a.simulation != a.evidence.tee.is_simulation() {
        att.mismatches.push(Mismatch::new(
            "simulation",
            a.evidence.tee.is_simulation().to_string(),
            a.simulation.to_string(),
        ));
    }

    // 2. The binding of the nonce, the manifest and the key.
    let leaf_spki = spki_der(&att.leaf)?;
    let key = match (&root, a.state) {
        (Some(r), _) => Some(spki_der(r)?),
        (None, CoordinatorState::Recovery) => Some(leaf_spki.clone()),
        (None, state) => {
            let state = state.as_str();
            att.reasons.push(format!(
                "the answer has no root_ca although the coordinator is in state {state} \
                 (only recovery seals it away)"
            ));
            None
        }
    };
    if let (Some(claims), Some(key)) = (&att.claims, &key) {
        let mut bound = nonce.to_vec();
        bound.extend_from_slice(&manifest_hash);
        if let Err(m) =
            confidant_attest::check_binding(&claims.report_data, Purpose::Coordinator, &bound, key)
        {
            att.mismatches.push(m);
        }
    }
    let leaf_digest = spki_sha256(&att.leaf)?;
    {
        let claimed = &a.tls_spki_sha256;
        let claimed = claimed.strip_prefix("sha256:").unwrap_or(claimed);
        if !claimed.eq_ignore_ascii_case(&leaf_digest) {
            att.mismatches.push(Mismatch::new(
                "tls_spki_sha256",
                format!("{leaf_digest} (the certificate of this connection)"),
                claimed.to_string(),
            ));
        }
    }

    // 3. The TLS certificate chains to the attested root.
    if let Some(r) = &root
        && let Err(e) = check_chain(r, intermediate.as_ref(), &att.leaf, &presented, address)
    {
        att.mismatches.push(Mismatch::new(
            "tls_certificate",
            format!(
                "a certificate for {} issued under the attested root CA",
                address.host
            ),
            e.to_string(),
        ));
    }
    let reasons: Vec<String> = att.mismatches.iter().map(ToString::to_string).collect();
    att.reasons.extend(reasons);
    att.root = root;
    att.intermediate = intermediate;
    Ok(att)
}
