//! `confidant verify`: attest the coordinator and pin its root CA.
//!
//! The client picks a fresh nonce, fetches `GET /api/v1/attestation?nonce=…` and checks, before
//! trusting anything the coordinator says:
//!
//! 1. the evidence is authentic (`confidant_attest` verifiers; the simulation TEE only with the
//!    platform keys of `--sim-platform-key`, else the local `$HOME/sim/platform.pub`) and
//!    matches the reference values;
//! 2. its report data binds the nonce, the manifest hash and the root CA's public key
//!    (`report_data(coordinator, nonce ‖ H, SPKI(root_ca))`), or in recovery the public key of
//!    the TLS certificate of this very connection;
//! 3. the TLS certificate the server presented chains to that root CA and names the host.
//!
//! Then the root CA (and intermediate) is saved in `$HOME/client/<address>/`, and every other
//! command pins it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use confidant_attest::sim::{self, SimPlatform};
use confidant_attest::time::rfc3339;
use confidant_attest::verify::sim::SimVerifier;
use confidant_attest::{Claims, Evidence, Mismatch, Purpose, ReferenceValues, Tee, Verifiers};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{
    self, API, Address, Client, CoordinatorArg, INFO_FILE, INTERMEDIATE_FILE, ROOT_FILE, Trust,
};
use crate::{Format, Outcome};

/// Arguments of `confidant verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// What the coordinator's evidence must match.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Reference values (YAML or JSON) the coordinator's evidence must match; they must list its
    /// accepted `measurements` unless --insecure-skip-measurement.
    #[arg(long, value_name = "FILE")]
    reference_values: Option<PathBuf>,
    /// Accept any measurement (INSECURE: any code the TEE runs passes; for tests and demos).
    #[arg(long)]
    insecure_skip_measurement: bool,
    /// Trust SIMULATION evidence signed by this platform key (hex, or a file holding hex, as
    /// `platform.pub`); repeatable. Default: the local platform's key, `$HOME/sim/platform.pub`,
    /// when it exists.
    #[arg(long, value_name = "HEX|FILE")]
    sim_platform_key: Vec<String>,
}

impl PolicyArgs {
    /// The reference values to apply: the file given, else (when `saved` is given) the TEE and
    /// measurement recorded when the coordinator was verified. Without a measurement, refuses
    /// unless --insecure-skip-measurement.
    pub fn reference_values(&self, saved: Option<&Value>) -> Result<ReferenceValues> {
        let mut refs = match &self.reference_values {
            Some(p) => crate::attest::load_reference_values(p)?,
            None => ReferenceValues::default(),
        };
        if self.reference_values.is_none()
            && !self.insecure_skip_measurement
            && let Some(info) = saved
        {
            let m = info.get("measurement").and_then(Value::as_str);
            let tee = info.get("tee").and_then(Value::as_str);
            if let Some(m) = m {
                let bytes = hex::decode(m).context("the saved measurement is not hex")?;
                refs.measurements = vec![confidant_attest::reference::HexBytes(bytes)];
            }
            if let Some(t) = tee {
                refs.tee = Some(
                    t.parse::<Tee>()
                        .map_err(|e| anyhow!("the saved TEE {t:?}: {e}"))?,
                );
            }
        }
        if refs.measurements.is_empty() && !self.insecure_skip_measurement {
            bail!(
                "the coordinator's measurement must be checked: give --reference-values FILE \
                 listing its `measurements`, or --insecure-skip-measurement to accept any code \
                 (tests and demos only)"
            );
        }
        Ok(refs)
    }

    /// The simulation platform keys to trust: --sim-platform-key, else the local platform's
    /// key when there is one (none: simulation evidence is refused).
    pub fn sim_keys(&self, home: &Path) -> Result<Vec<[u8; 32]>> {
        let mut keys = Vec::new();
        for k in &self.sim_platform_key {
            let text = if Path::new(k).is_file() {
                std::fs::read_to_string(k).with_context(|| format!("reading {k}"))?
            } else {
                k.clone()
            };
            keys.push(
                sim::parse_public_key(&text).with_context(|| format!("--sim-platform-key {k}"))?,
            );
        }
        if keys.is_empty() {
            let path = SimPlatform::dir(home).join(sim::PUB_FILE);
            if path.exists() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                keys.push(
                    sim::parse_public_key(&text)
                        .with_context(|| format!("the platform key in {}", path.display()))?,
                );
            }
        }
        Ok(keys)
    }

    /// Whether the measurement goes unchecked.
    pub fn skips_measurement(&self) -> bool {
        self.insecure_skip_measurement
    }
}

/// `GET attestation`'s answer.
#[derive(Debug, Clone, Deserialize)]
pub struct AttestationAnswer {
    /// The coordinator's state.
    pub state: String,
    /// Whether it runs on the simulation TEE.
    #[serde(default)]
    pub simulation: bool,
    /// Its evidence.
    pub evidence: Evidence,
    /// The root CA (PEM); absent in recovery.
    #[serde(default)]
    pub root_ca: Option<String>,
    /// The intermediate CA (PEM).
    #[serde(default)]
    pub intermediate_ca: Option<String>,
    /// The current manifest's hash (hex), if any.
    #[serde(default)]
    pub manifest_hash: Option<String>,
    /// SHA-256 of the TLS certificate's SubjectPublicKeyInfo (hex).
    #[serde(default)]
    pub tls_spki_sha256: Option<String>,
}

/// The outcome of attesting the coordinator.
#[derive(Debug)]
pub struct Attestation {
    /// The answer as received.
    pub answer: AttestationAnswer,
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

impl Attestation {
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

    /// The report as JSON (`verify -o json`, `recover -o json`).
    pub fn to_json(&self, address: &Address) -> Value {
        json!({
            "verdict": if self.accepted() { "accepted" } else { "rejected" },
            "coordinator": address.authority,
            "tee": self.tee(),
            "simulation": self.simulation(),
            "state": self.answer.state,
            "measurement": self.measurement(),
            "manifest_hash": self.answer.manifest_hash,
            "verified_at": rfc3339(self.verified_at),
            "claims": self.claims,
            "mismatches": self.mismatches,
            "reasons": self.reasons,
            "warnings": self.warnings,
        })
    }

    /// The report for people; `extra` lines (`key  value`, indented) follow the fields.
    pub fn print_human(&self, address: &Address, extra: &[String]) {
        if self.simulation() {
            crate::outln!(
                "*** SIMULATION: the coordinator's evidence is software-signed, no hardware protection ***"
            );
        }
        let verdict = if self.accepted() {
            "ACCEPTED"
        } else {
            "REJECTED"
        };
        crate::outln!("coordinator {}: {verdict}", address.authority);
        crate::outln!("  tee          {}", self.tee());
        if let Some(m) = self.measurement() {
            crate::outln!("  measurement  {m}");
        }
        crate::outln!("  state        {}", self.answer.state);
        crate::outln!(
            "  manifest     {}",
            self.answer.manifest_hash.as_deref().unwrap_or("none")
        );
        for line in extra {
            crate::outln!("  {line}");
        }
        for w in &self.warnings {
            crate::outln!("warning: {w}");
        }
        for r in &self.reasons {
            crate::outln!("  - {r}");
        }
    }
}

/// Fetches the coordinator's evidence for a fresh nonce on `client` and checks it (see the
/// module documentation). Errors are transport or API errors; a judged, failed check is an
/// [`Attestation`] that is not [`Attestation::accepted`].
pub fn attest(
    client: &Client,
    address: &Address,
    home: &Path,
    refs: &ReferenceValues,
    sim_keys: &[[u8; 32]],
) -> Result<Attestation> {
    let nonce = client::random_bytes::<32>()?;
    let answer = client.get(&format!("{API}/attestation?nonce={}", hex::encode(nonce)))?;
    let leaf = answer
        .peer_leaf
        .clone()
        .or_else(|| client.peer_chain().leaf)
        .ok_or_else(|| anyhow!("the TLS connection did not show the server's certificate"))?;
    let presented = client.peer_chain().intermediates;
    let parsed: AttestationAnswer = serde_json::from_value(answer.body)
        .context("the coordinator's attestation answer is malformed")?;

    let mut att = Attestation {
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
        .map(|p| client::one_certificate("root_ca", p))
        .transpose()?;
    let intermediate = a
        .intermediate_ca
        .as_deref()
        .map(|p| client::one_certificate("intermediate_ca", p))
        .transpose()?;
    let manifest_hash = match &a.manifest_hash {
        Some(h) => client::digest_bytes("manifest_hash", h)?,
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
                    "; SIMULATION evidence is trusted only with --sim-platform-key or the local \
                     platform key in {}",
                    SimPlatform::dir(home).join(sim::PUB_FILE).display()
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
    let leaf_spki = client::spki_der(&att.leaf)?;
    let key = match (&root, a.state.as_str()) {
        (Some(r), _) => Some(client::spki_der(r)?),
        (None, "recovery") => Some(leaf_spki.clone()),
        (None, state) => {
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
    let leaf_digest = client::spki_sha256(&att.leaf)?;
    if let Some(claimed) = &a.tls_spki_sha256 {
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
        && let Err(e) =
            client::check_chain(r, intermediate.as_ref(), &att.leaf, &presented, address)
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

/// Runs `confidant verify`.
pub fn run(args: VerifyArgs, home: &Path, format: Format) -> Result<Outcome> {
    let address = args.coordinator.address()?;
    let refs = args.policy.reference_values(None)?;
    let sim_keys = args.policy.sim_keys(home)?;
    let client = Client::new(&address, &Trust::FirstContact, None)?;
    let mut att = attest(&client, &address, home, &refs, &sim_keys)?;
    if args.policy.skips_measurement() {
        att.warnings.push(
            "the measurement was NOT checked (--insecure-skip-measurement): any code passes".into(),
        );
    }
    let saved = if att.accepted() {
        save(home, &address, &att)?
    } else {
        None
    };
    if let (Some(dir), Some(root), Some(hash)) = (&saved, &att.root, &att.answer.manifest_hash) {
        save_manifest(&client, dir, root, hash)?;
    }
    match format {
        Format::Json => {
            let mut doc = att.to_json(&address);
            doc["saved"] = json!(saved);
            crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Human => {
            let mut extra: Vec<String> = saved
                .iter()
                .map(|dir| format!("root CA      saved in {}", dir.display()))
                .collect();
            if let (Some(dir), Some(_)) = (&saved, &att.answer.manifest_hash) {
                extra.push(format!(
                    "manifest     saved in {}",
                    dir.join(MANIFEST_FILE).display()
                ));
            }
            att.print_human(&address, &extra);
            match &saved {
                Some(_) => {}
                None if att.accepted() => crate::outln!(
                    "the coordinator is in recovery: its root CA is sealed and nothing was saved; \
                     recovery owners run `confidant recover`"
                ),
                None => {}
            }
        }
    }
    Ok(if att.accepted() {
        Outcome::Ok
    } else {
        Outcome::Rejected
    })
}

/// Saves an accepted coordinator's root CA, intermediate and record; `None` without a root CA
/// (recovery).
fn save(home: &Path, address: &Address, att: &Attestation) -> Result<Option<PathBuf>> {
    let Some(root) = &att.root else {
        return Ok(None);
    };
    let dir = client::saved_dir(home, address);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write(&dir.join(ROOT_FILE), &client::to_pem(root))?;
    let inter = dir.join(INTERMEDIATE_FILE);
    match &att.intermediate {
        Some(i) => write(&inter, &client::to_pem(i))?,
        None if inter.exists() => std::fs::remove_file(&inter)
            .with_context(|| format!("removing the stale {}", inter.display()))?,
        None => {}
    }
    let info = json!({
        "address": address.authority,
        "manifest_hash": att.answer.manifest_hash,
        "state": att.answer.state,
        "simulation": att.simulation(),
        "tee": att.tee(),
        "measurement": att.measurement(),
        "verified_at": rfc3339(att.verified_at),
    });
    write(
        &dir.join(INFO_FILE),
        &format!("{}\n", serde_json::to_string_pretty(&info)?),
    )?;
    Ok(Some(dir))
}

/// Fetches the current manifest record over the attested connection, checks that it is the
/// manifest the evidence binds and that the root CA signed it, and saves it as `manifest.json`.
fn save_manifest(
    client: &Client,
    dir: &Path,
    root: &rustls_pki_types::CertificateDer<'_>,
    attested_hash: &str,
) -> Result<()> {
    let body = client
        .get(&format!("{API}/manifest"))
        .context("reading the attested manifest")?
        .body;
    let record = crate::manifest::check_record(&body, root)?;
    if record.hash != attested_hash {
        anyhow::bail!(
            "the coordinator's current manifest has hash {}, but its evidence binds {attested_hash} (it changed in between; verify again)",
            record.hash
        );
    }
    write(
        &dir.join(MANIFEST_FILE),
        &format!("{}\n", serde_json::to_string_pretty(&body)?),
    )
}

/// The attested manifest record, saved next to the root CA.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Writes a file through a temporary one, so a reader never sees half of it.
fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
