//! `confidant attest …`: produce, inspect and verify evidence.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use confidant_attest::attester::detect::{DevicePaths, detect};
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::sim::{self, SimPlatform};
use confidant_attest::time::rfc3339;
use confidant_attest::verify::sim::SimVerifier;
use confidant_attest::{Attester, Claims, Evidence, Purpose, ReferenceValues, Tee, Verifiers};
use serde_json::json;

use crate::output::print_fields;
use crate::{Format, Outcome};

/// `confidant attest` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AttestCommand {
    /// Verify evidence: authenticity as of a time, then reference values. Exit 0 accepted,
    /// 1 rejected, 2 malformed (what `attest inspect` calls malformed, checked before any
    /// signature, or malformed endorsements, or a missing one).
    Verify(VerifyArgs),
    /// Show the fields of evidence without verifying anything. Exit 2 when it does not parse.
    Inspect(InspectArgs),
    /// Produce evidence from this machine's TEE (Gramine /dev/attestation or configfs-tsm).
    /// Never falls back to simulation: use `attest sim quote` for that.
    Quote(QuoteArgs),
    /// The simulation TEE (no hardware protection): make a platform, produce evidence.
    #[command(subcommand)]
    Sim(SimCommand),
}

/// Where evidence comes from and what kind it is.
#[derive(Debug, Args)]
pub(crate) struct EvidenceArg {
    /// Evidence file (`-` for stdin): raw binary, hex or base64 text, or a JSON envelope.
    #[arg(value_name = "EVIDENCE")]
    evidence: PathBuf,
    /// The TEE, when it cannot be detected from the bytes.
    #[arg(long, value_enum)]
    tee: Option<TeeArg>,
}

/// TEE names on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TeeArg {
    Sgx,
    Tdx,
    Snp,
    Sim,
}

impl From<TeeArg> for Tee {
    fn from(t: TeeArg) -> Tee {
        match t {
            TeeArg::Sgx => Tee::Sgx,
            TeeArg::Tdx => Tee::Tdx,
            TeeArg::Snp => Tee::Snp,
            TeeArg::Sim => Tee::Sim,
        }
    }
}

/// Arguments of `attest verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    input: EvidenceArg,
    /// DCAP collateral (dcap-qvl JSON) for SGX and TDX quotes.
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// The VCEK or VLEK certificate (DER or PEM) that signed an SNP report, or a PEM bundle of
    /// the VCEK followed by its ASK and ARK (as Azure serves them), the rest taken as the chain.
    #[arg(long, value_name = "FILE")]
    vcek: Option<PathBuf>,
    /// AMD ASK/ARK chain (PEM); default: the one in a --vcek bundle, else the built-in chain
    /// matching the VCEK's issuer. Either way its ARK must be one of AMD's roots. Given with a
    /// --vcek bundle, it must be the same certificates (exit 2 otherwise).
    #[arg(long, value_name = "FILE")]
    chain: Option<PathBuf>,
    /// Verify as of this time (RFC 3339 or Unix seconds) instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<SystemTime>,
    /// Reference values (YAML or JSON) the claims must match.
    #[arg(long, value_name = "FILE")]
    reference_values: Option<PathBuf>,
    /// Accept SIMULATION evidence (software-signed; no hardware protection).
    #[arg(long)]
    allow_simulation: bool,
    /// Trusted simulation platform public key (hex or a file holding hex); repeatable. Default
    /// with --allow-simulation: the local platform's key in the state directory.
    #[arg(long, value_name = "HEX|FILE")]
    sim_platform_key: Vec<String>,
    /// Check that the report data binds this nonce (hex) …
    #[arg(long, value_name = "HEX", requires = "public_key")]
    nonce: Option<String>,
    /// … and this public key (SubjectPublicKeyInfo, PEM or DER) …
    #[arg(long, value_name = "FILE", requires = "nonce")]
    public_key: Option<PathBuf>,
    /// … for this purpose.
    #[arg(long, value_enum, default_value_t = PurposeArg::Activate)]
    purpose: PurposeArg,
}

/// Report-data binding purposes on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PurposeArg {
    Activate,
    Coordinator,
    Volume,
}

impl From<PurposeArg> for Purpose {
    fn from(p: PurposeArg) -> Purpose {
        match p {
            PurposeArg::Activate => Purpose::Activate,
            PurposeArg::Coordinator => Purpose::Coordinator,
            PurposeArg::Volume => Purpose::Volume,
        }
    }
}

/// Arguments of `attest inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    input: EvidenceArg,
}

/// `confidant attest sim` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Create the simulation platform key in the state directory.
    Init,
    /// Produce SIMULATION evidence (a JSON envelope) binding report data.
    Quote(SimQuoteArgs),
    /// Print the config id `confidant run --tee sim` puts in its evidence for an image and a
    /// workload (for a package's `reference_values.sim.config_ids`).
    ConfigId {
        /// The image manifest digest, `sha256:…`.
        #[arg(long, value_name = "DIGEST")]
        image_digest: String,
        /// The workload's name.
        #[arg(long)]
        workload: String,
    },
}

/// The report data evidence is to carry: given directly, or a nonce and key binding.
#[derive(Debug, Args)]
pub(crate) struct ReportDataArgs {
    /// The 64 bytes of report data, hex (shorter values are zero-padded on the right).
    #[arg(
        long,
        value_name = "HEX",
        conflicts_with = "nonce",
        required_unless_present = "nonce"
    )]
    report_data: Option<String>,
    /// Bind this nonce (hex) …
    #[arg(long, value_name = "HEX", requires = "public_key")]
    nonce: Option<String>,
    /// … and this public key (SubjectPublicKeyInfo, PEM or DER) …
    #[arg(long, value_name = "FILE", requires = "nonce")]
    public_key: Option<PathBuf>,
    /// … for this purpose.
    #[arg(long, value_enum, default_value_t = PurposeArg::Activate)]
    purpose: PurposeArg,
}

impl ReportDataArgs {
    fn resolve(&self) -> Result<[u8; 64]> {
        match (&self.report_data, &self.nonce, &self.public_key) {
            (Some(rd), _, _) => {
                let bytes = parse_hex("--report-data", rd)?;
                if bytes.len() > 64 {
                    bail!("--report-data is {} bytes; at most 64", bytes.len());
                }
                let mut out = [0u8; 64];
                out[..bytes.len()].copy_from_slice(&bytes);
                Ok(out)
            }
            (None, Some(nonce), Some(pk)) => Ok(confidant_attest::report_data(
                self.purpose.into(),
                &parse_hex("--nonce", nonce)?,
                &read_spki(pk)?,
            )),
            _ => bail!("give --report-data, or --nonce with --public-key"),
        }
    }
}

/// Arguments of `attest quote`.
#[derive(Debug, Args)]
pub(crate) struct QuoteArgs {
    #[command(flatten)]
    report_data: ReportDataArgs,
    /// Use this TEE (default: detect the hardware one). `sim` is the SIMULATION platform of the
    /// state directory, measuring this binary; it is never chosen unless named.
    #[arg(long, value_enum)]
    tee: Option<TeeArg>,
    /// Gramine's attestation directory.
    #[arg(long, value_name = "DIR", default_value = confidant_attest::attester::gramine::DEFAULT_ROOT)]
    gramine_root: PathBuf,
    /// The configfs-tsm report directory.
    #[arg(long, value_name = "DIR", default_value = confidant_attest::attester::tsm::DEFAULT_ROOT)]
    tsm_root: PathBuf,
    /// Write the envelope here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Arguments of `attest sim quote`.
#[derive(Debug, Args)]
pub(crate) struct SimQuoteArgs {
    #[command(flatten)]
    report_data: ReportDataArgs,
    /// The launch measurement, hex (48 bytes); default: SHA-384 of --launch.
    #[arg(long, value_name = "HEX", conflicts_with = "launch")]
    measurement: Option<String>,
    /// The launched file whose SHA-384 is the measurement; default: this confidant binary.
    #[arg(long, value_name = "FILE")]
    launch: Option<PathBuf>,
    /// Product id the report claims.
    #[arg(long, default_value_t = 0)]
    product_id: u16,
    /// Security version the report claims.
    #[arg(long, default_value_t = 0)]
    svn: u16,
    /// Mark the simulated TEE as debug.
    #[arg(long)]
    debug: bool,
    /// Write the envelope here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs an `attest` subcommand.
pub(crate) fn run(cmd: AttestCommand, home: &Path, format: Format) -> Result<Outcome> {
    match cmd {
        AttestCommand::Verify(args) => verify(args, home, format),
        AttestCommand::Inspect(args) => inspect(args, format),
        AttestCommand::Quote(args) => quote(args, home, format),
        AttestCommand::Sim(SimCommand::Init) => sim_init(home, format),
        AttestCommand::Sim(SimCommand::Quote(args)) => sim_quote(args, home, format),
        AttestCommand::Sim(SimCommand::ConfigId {
            image_digest,
            workload,
        }) => {
            let id = confidant_attest::attester::sim::SimAttester::config_id(&[
                &image_digest,
                &workload,
            ]);
            match format {
                Format::Json => {
                    crate::outln!("{}", serde_json::json!({"config_id": hex::encode(id)}))
                }
                Format::Human => crate::outln!("{}", hex::encode(id)),
            }
            Ok(Outcome::Ok)
        }
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    crate::input::read_capped(path, "evidence", crate::input::MAX_EVIDENCE)
}

fn load_evidence(arg: &EvidenceArg) -> Result<Evidence> {
    let bytes = read_input(&arg.evidence)?;
    Ok(Evidence::decode(&bytes, arg.tee.map(Tee::from))?)
}

/// Parses `--at`: RFC 3339 or Unix seconds.
fn parse_time(s: &str) -> Result<SystemTime, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!("expected RFC 3339 (2025-06-19T12:00:00Z) or Unix seconds, got {s:?}: {e}")
    })?;
    let secs = u64::try_from(t.timestamp()).map_err(|_| format!("{s} is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Reads a public key as SubjectPublicKeyInfo DER, from PEM (`PUBLIC KEY`) or DER.
fn read_spki(path: &Path) -> Result<Vec<u8>> {
    let bytes = crate::input::read_capped(path, "public key", crate::input::MAX_CERTIFICATES)?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(bytes);
    };
    let Some(start) = text.find("-----BEGIN PUBLIC KEY-----") else {
        return Ok(bytes);
    };
    let body = &text[start + "-----BEGIN PUBLIC KEY-----".len()..];
    let end = body
        .find("-----END PUBLIC KEY-----")
        .ok_or_else(|| anyhow!("{}: PEM has no END PUBLIC KEY line", path.display()))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .with_context(|| format!("{}: PEM body is not base64", path.display()))
}

fn parse_hex(what: &str, s: &str) -> Result<Vec<u8>> {
    hex::decode(s.trim()).with_context(|| format!("{what} must be hex, got {s:?}"))
}

/// Reads reference values from a YAML or JSON file (`--reference-values` of `attest verify` and
/// `verify`).
pub(crate) fn load_reference_values(path: &Path) -> Result<ReferenceValues> {
    let text = crate::input::read_text_capped(
        path,
        "reference values",
        crate::input::MAX_REFERENCE_VALUES,
    )?;
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| anyhow!("{e}"))
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow!("{e}"))
    };
    parsed.with_context(|| format!("reference values in {}", path.display()))
}

fn trusted_sim_keys(args: &VerifyArgs, home: &Path) -> Result<Vec<[u8; 32]>> {
    let mut keys = Vec::new();
    for k in &args.sim_platform_key {
        let text = if Path::new(k).is_file() {
            std::fs::read_to_string(k).with_context(|| format!("reading {k}"))?
        } else {
            k.clone()
        };
        keys.push(sim::parse_public_key(&text)?);
    }
    if keys.is_empty() {
        let path = SimPlatform::dir(home).join(sim::PUB_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "--allow-simulation without --sim-platform-key trusts the local platform key, \
                 but {} cannot be read (run `confidant attest sim init`)",
                path.display()
            )
        })?;
        keys.push(sim::parse_public_key(&text)?);
    }
    Ok(keys)
}

fn verify(args: VerifyArgs, home: &Path, format: Format) -> Result<Outcome> {
    let mut evidence = load_evidence(&args.input)?;
    if let Some(p) = &args.collateral {
        let text = crate::input::read_text_capped(p, "collateral", crate::input::MAX_COLLATERAL)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("collateral {} is not JSON", p.display()))?;
        evidence.endorsements.collateral = Some(value);
    }
    if let Some(p) = &args.vcek {
        evidence.endorsements.vcek = Some(crate::input::read_capped(
            p,
            "VCEK",
            crate::input::MAX_CERTIFICATES,
        )?);
    }
    if let Some(p) = &args.chain {
        evidence.endorsements.cert_chain = Some(crate::input::read_text_capped(
            p,
            "certificate chain",
            crate::input::MAX_CERTIFICATES,
        )?);
    }
    let refs = match &args.reference_values {
        Some(p) => load_reference_values(p)?,
        None => ReferenceValues::default(),
    };
    let mut verifiers = Verifiers::new();
    if evidence.tee == Tee::Sim && args.allow_simulation {
        verifiers = verifiers.with_sim(SimVerifier::new(trusted_sim_keys(&args, home)?));
    }
    let now = args.at.unwrap_or_else(SystemTime::now);

    let claims = match verifiers.verify(&evidence, now) {
        Ok(c) => c,
        Err(e) if e.is_rejection() => {
            let mut reason = e.to_string();
            if evidence.tee == Tee::Sim && !args.allow_simulation {
                reason.push_str("; pass --allow-simulation to accept software-signed evidence");
            }
            report_verdict(format, evidence.tee, now, None, &[], &[reason], &[]);
            return Ok(Outcome::Rejected);
        }
        Err(e) => return Err(e.into()),
    };
    let mut appraisal = refs.appraise(&claims);
    if let (Some(nonce), Some(pk)) = (&args.nonce, &args.public_key) {
        let nonce = parse_hex("--nonce", nonce)?;
        let spki = read_spki(pk)?;
        if let Err(m) =
            confidant_attest::check_binding(&claims.report_data, args.purpose.into(), &nonce, &spki)
        {
            appraisal.mismatches.push(m);
        }
    }
    let reasons: Vec<String> = appraisal
        .mismatches
        .iter()
        .map(ToString::to_string)
        .collect();
    report_verdict(
        format,
        evidence.tee,
        now,
        Some(&claims),
        &appraisal.mismatches,
        &reasons,
        &appraisal.warnings,
    );
    Ok(if appraisal.accepted() {
        Outcome::Ok
    } else {
        Outcome::Rejected
    })
}

fn report_verdict(
    format: Format,
    tee: Tee,
    now: SystemTime,
    claims: Option<&Claims>,
    mismatches: &[confidant_attest::Mismatch],
    reasons: &[String],
    warnings: &[String],
) {
    let accepted = claims.is_some() && reasons.is_empty();
    match format {
        Format::Json => {
            let doc = json!({
                "verdict": if accepted { "accepted" } else { "rejected" },
                "tee": tee,
                "simulation": tee.is_simulation(),
                "verified_at": rfc3339(now),
                "claims": claims,
                "mismatches": mismatches,
                "reasons": reasons,
                "warnings": warnings,
            });
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Human => {
            if tee.is_simulation() {
                crate::outln!(
                    "*** SIMULATION: software-signed evidence, no hardware protection ***"
                );
            }
            crate::outln!(
                "{} evidence, verified as of {}",
                tee.as_str().to_uppercase(),
                rfc3339(now)
            );
            if let Some(c) = claims {
                print_fields(&serde_json::to_value(c).unwrap_or_default(), 2);
            }
            for w in warnings {
                crate::outln!("warning: {w}");
            }
            if accepted {
                crate::outln!("verdict: ACCEPTED");
            } else {
                crate::outln!("verdict: REJECTED");
                for r in reasons {
                    crate::outln!("  - {r}");
                }
            }
        }
    }
}

fn inspect(args: InspectArgs, format: Format) -> Result<Outcome> {
    let evidence = load_evidence(&args.input)?;
    let claims = confidant_attest::inspect(&evidence)?;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&claims)?),
        Format::Human => {
            if evidence.tee.is_simulation() {
                crate::outln!(
                    "*** SIMULATION: software-signed evidence, no hardware protection ***"
                );
            }
            crate::outln!(
                "{} evidence, {} bytes — NOT VERIFIED (use `confidant attest verify`)",
                evidence.tee.as_str().to_uppercase(),
                evidence.evidence.len()
            );
            print_fields(&serde_json::to_value(&claims)?, 2);
        }
    }
    Ok(Outcome::Ok)
}

fn sim_init(home: &Path, format: Format) -> Result<Outcome> {
    let dir = SimPlatform::dir(home);
    let platform = SimPlatform::init(&dir)?;
    let key = hex::encode(platform.public_key());
    match format {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"simulation": true, "dir": dir, "platform_key": key})
            )?
        ),
        Format::Human => {
            crate::outln!("SIMULATION platform created in {}", dir.display());
            crate::outln!("  platform_key  {key}");
            crate::outln!("Evidence it signs proves the protocol, not hardware isolation.");
        }
    }
    Ok(Outcome::Ok)
}

fn sim_quote(args: SimQuoteArgs, home: &Path, format: Format) -> Result<Outcome> {
    let report_data = args.report_data.resolve()?;
    let measurement: [u8; 48] = match (&args.measurement, &args.launch) {
        (Some(m), _) => parse_hex("--measurement", m)?
            .try_into()
            .map_err(|v: Vec<u8>| anyhow!("--measurement must be 48 bytes, got {}", v.len()))?,
        (None, Some(path)) => SimAttester::measure(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        (None, None) => measure_self()?,
    };
    let dir = SimPlatform::dir(home);
    let platform = SimPlatform::load(&dir)
        .context("no simulation platform here: run `confidant attest sim init`")?;
    let attester = SimAttester::new(platform, measurement)
        .with_version(args.product_id, args.svn)
        .with_debug(args.debug);
    let evidence = attester.attest(&report_data)?;
    write_evidence(&evidence, args.out.as_deref(), format)
}

/// SHA-384 of this executable: what the simulation platform "launched".
fn measure_self() -> Result<[u8; 48]> {
    let exe = std::env::current_exe().context("finding this executable to measure it")?;
    Ok(SimAttester::measure(
        &std::fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?,
    ))
}

fn quote(args: QuoteArgs, home: &Path, format: Format) -> Result<Outcome> {
    let report_data = args.report_data.resolve()?;
    let paths = DevicePaths {
        gramine: args.gramine_root,
        tsm: args.tsm_root,
    };
    let attester: Box<dyn Attester> = match args.tee.map(Tee::from) {
        Some(Tee::Sim) => {
            let platform = SimPlatform::load(&SimPlatform::dir(home))
                .context("no simulation platform here: run `confidant attest sim init`")?;
            Box::new(SimAttester::new(platform, measure_self()?))
        }
        wanted => {
            let found = detect(&paths)?;
            if let Some(w) = wanted.filter(|w| *w != found.tee()) {
                bail!(
                    "asked for {w} evidence, but this machine's TEE is {}",
                    found.tee()
                );
            }
            found
        }
    };
    let evidence = attester.attest(&report_data)?;
    write_evidence(&evidence, args.out.as_deref(), format)
}

/// Writes an evidence envelope to `out` or stdout; says SIMULATION when it is.
fn write_evidence(evidence: &Evidence, out: Option<&Path>, format: Format) -> Result<Outcome> {
    let text = evidence.to_json();
    let label = if evidence.tee.is_simulation() {
        "SIMULATION evidence".to_string()
    } else {
        format!("{} evidence", evidence.tee.as_str().to_uppercase())
    };
    match out {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            if format == Format::Human {
                eprintln!("{label} written to {}", path.display());
            }
        }
        None => {
            if evidence.tee.is_simulation() && format == Format::Human {
                eprintln!("{label} follows (no hardware protection)");
            }
            crate::outln!("{text}")
        }
    }
    Ok(Outcome::Ok)
}
