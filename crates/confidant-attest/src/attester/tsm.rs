//! The configfs-tsm attester: how Linux TDX and SEV-SNP guests obtain a quote or report.
//!
//! The kernel interface (`Documentation/ABI/testing/configfs-tsm`) is a directory per request
//! under `/sys/kernel/config/tsm/report`:
//!
//! ```text
//! attester                                  kernel (configfs-tsm)
//!    | mkdir <root>/<unique entry>  -------->  creates provider, generation, inblob, outblob,
//!    |                                         auxblob (SNP), privlevel (SNP), …
//!    | read provider                <--------  "tdx_guest" | "sev_guest"
//!    | read generation = g0
//!    | write privlevel (SNP, optional) ----->  generation += 1
//!    | write inblob (64 bytes)      -------->  generation += 1
//!    | read outblob                 <--------  TDX quote | SNP report (generated on read)
//!    | read auxblob (SNP)           <--------  certificate table (VCEK, ASK, ARK), may be empty
//!    | read generation = g1: must be g0 + our writes, else another writer raced us
//!    | rmdir <root>/<entry>
//! ```
//!
//! The entry is always removed, also when the request fails. Besides the generation check, the
//! attester checks that the report it got carries the report data it asked for.
//!
//! configfs creates the attributes together with the directory and advances `generation`
//! synchronously, so on a kernel every look at the entry succeeds the first time. An emulated
//! interface (a test fixture, a userspace shim) may populate files a moment later; the attester
//! waits for them up to [`TsmOptions::settle_timeout`], polling, and never waits on a kernel.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Error, Result};
use crate::evidence::{Endorsements, Evidence, SNP_REPORT_LEN, detect_tee};
use crate::tee::Tee;

use super::Attester;

/// Where the kernel mounts the configfs-tsm report interface.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// How long, by default, to wait for an entry's attributes to appear or advance (see the module
/// documentation: a kernel never makes the attester wait).
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `provider` of a TDX guest.
pub const PROVIDER_TDX: &str = "tdx_guest";
/// The `provider` of an SEV-SNP guest.
pub const PROVIDER_SNP: &str = "sev_guest";

/// Offset of REPORT_DATA in an SEV-SNP attestation report (SEV-SNP ABI, ATTESTATION_REPORT).
const SNP_REPORT_DATA_OFFSET: usize = 0x50;

/// GUID (RFC 4122 byte order, as in the table) of the VCEK certificate in an SNP certificate table.
pub const GUID_VCEK: [u8; 16] = guid(0x63da758d, 0xe664, 0x4564, 0xadc5, 0xf4b93be8accd);
/// GUID of the VLEK certificate in an SNP certificate table.
pub const GUID_VLEK: [u8; 16] = guid(0xa8074bc2, 0xa25a, 0x483e, 0xaae6, 0x39c045a0b8a1);
/// GUID of the ASK (or ASVK) certificate in an SNP certificate table.
pub const GUID_ASK: [u8; 16] = guid(0x4ab7b379, 0xbbac, 0x4fe4, 0xa02f, 0x05aef327c782);
/// GUID of the ARK certificate in an SNP certificate table.
pub const GUID_ARK: [u8; 16] = guid(0xc0b406a4, 0xa803, 0x4952, 0x9743, 0x3fb6014cd0ae);

/// Builds a GUID's 16 bytes from its five textual groups, in RFC 4122 (big-endian) order.
const fn guid(a: u32, b: u16, c: u16, d: u16, e: u64) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    let d = d.to_be_bytes();
    let e = e.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], e[2], e[3], e[4], e[5], e[6],
        e[7],
    ]
}

/// Options of a [`TsmAttester`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmOptions {
    /// The VMPL to request the SNP report at (`privlevel`, 0–3). SEV-SNP only; `None` leaves the
    /// kernel's default.
    pub privlevel: Option<u8>,
    /// How long to wait for an entry's attributes to appear or for `generation` to advance.
    pub settle_timeout: Duration,
}

impl Default for TsmOptions {
    fn default() -> Self {
        TsmOptions {
            privlevel: None,
            settle_timeout: DEFAULT_SETTLE_TIMEOUT,
        }
    }
}

/// Produces TDX quotes or SEV-SNP reports through configfs-tsm.
#[derive(Debug, Clone)]
pub struct TsmAttester {
    root: PathBuf,
    tee: Tee,
    options: TsmOptions,
}

impl TsmAttester {
    /// Opens the interface at `root` with default options.
    ///
    /// Opening creates and removes one entry to learn the provider, and so the TEE.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(root, TsmOptions::default())
    }

    /// Opens the interface at `root` with `options`.
    ///
    /// Fails when the provider is not one of [`PROVIDER_TDX`], [`PROVIDER_SNP`], or when a
    /// `privlevel` is asked of a TDX guest or is above 3.
    pub fn open_with(root: impl Into<PathBuf>, options: TsmOptions) -> Result<Self> {
        let root = root.into();
        let entry = Entry::create(&root)?;
        let provider = entry.provider(options.settle_timeout);
        entry.remove()?;
        let (provider, tee) = provider?;
        if let Some(level) = options.privlevel {
            let refuse = |why: String| {
                Error::io(
                    "configuring",
                    root.clone(),
                    std::io::Error::new(ErrorKind::InvalidInput, why),
                )
            };
            if tee != Tee::Snp {
                return Err(refuse(format!(
                    "privlevel {level} was asked for, but privlevel is SEV-SNP only and the \
                     provider is {provider:?} ({tee})"
                )));
            }
            if level > 3 {
                return Err(refuse(format!(
                    "privlevel must be a VMPL from 0 to 3, got {level}"
                )));
            }
        }
        Ok(TsmAttester { root, tee, options })
    }

    /// The configfs-tsm report directory this attester creates entries under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options in effect.
    pub fn options(&self) -> &TsmOptions {
        &self.options
    }

    fn attest_in(&self, entry: &Entry, report_data: &[u8; 64]) -> Result<Evidence> {
        let settle = self.options.settle_timeout;
        let (provider, tee) = entry.provider(settle)?;
        if tee != self.tee {
            return Err(Error::NoTee(format!(
                "configfs-tsm provider at {} changed from {} to {provider:?} since it was opened",
                self.root.display(),
                self.tee
            )));
        }

        let generation = entry.path.join("generation");
        let before = read_generation(&generation, settle)?;
        let mut writes = 0u64;
        if let Some(level) = self.options.privlevel {
            write(&entry.path.join("privlevel"), level.to_string().as_bytes())?;
            writes += 1;
        }
        write(&entry.path.join("inblob"), report_data)?;
        writes += 1;

        // A kernel has advanced the generation already; an emulation may need a moment.
        let advanced = settle_until(settle, || {
            let now = read_generation(&generation, Duration::ZERO)?;
            Ok((now.wrapping_sub(before) >= writes).then_some(()))
        })?;
        if advanced.is_none() {
            let now = read_generation(&generation, Duration::ZERO)?;
            return Err(Error::io(
                "reading",
                generation,
                std::io::Error::other(format!(
                    "generation is {now} after our {writes} write(s) starting from {before}: \
                     the interface did not take the request"
                )),
            ));
        }

        let outblob_path = entry.path.join("outblob");
        let outblob = read(&outblob_path)?;
        check_outblob(tee, &outblob_path, &outblob, report_data)?;

        let endorsements = if tee == Tee::Snp {
            let auxblob_path = entry.path.join("auxblob");
            match std::fs::read(&auxblob_path) {
                Ok(aux) => snp_endorsements(&aux)?,
                Err(e) if e.kind() == ErrorKind::NotFound => Endorsements::default(),
                Err(e) => return Err(Error::io("reading", auxblob_path, e)),
            }
        } else {
            Endorsements::default()
        };

        let after = read_generation(&generation, Duration::ZERO)?;
        if after.wrapping_sub(before) != writes {
            return Err(Error::io(
                "reading",
                generation,
                std::io::Error::new(
                    ErrorKind::ResourceBusy,
                    format!(
                        "generation went from {before} to {after} across our {writes} write(s): \
                         another writer changed the request in between, so the report may not \
                         be for our report data; refusing it"
                    ),
                ),
            ));
        }

        Ok(Evidence {
            tee,
            evidence: outblob,
            endorsements,
        })
    }
}

impl Attester for TsmAttester {
    fn tee(&self) -> Tee {
        self.tee
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let entry = Entry::create(&self.root)?;
        let result = self.attest_in(&entry, report_data);
        let removed = entry.remove();
        let evidence = result?;
        removed?;
        Ok(evidence)
    }
}

/// The TEE of a configfs-tsm `provider` name.
pub fn tee_of_provider(provider: &str) -> Result<Tee> {
    match provider {
        PROVIDER_TDX => Ok(Tee::Tdx),
        PROVIDER_SNP => Ok(Tee::Snp),
        other => Err(Error::NoTee(format!(
            "configfs-tsm provider {other:?} is not one Confidant speaks (expected \
             {PROVIDER_TDX:?} for TDX or {PROVIDER_SNP:?} for SEV-SNP)"
        ))),
    }
}

/// Checks that the kernel's output is the kind of evidence the provider makes and carries
/// `report_data`.
fn check_outblob(tee: Tee, path: &Path, outblob: &[u8], report_data: &[u8; 64]) -> Result<()> {
    const WHAT: &str = "configfs-tsm outblob";
    if outblob.is_empty() {
        return Err(Error::malformed(
            WHAT,
            format!("{} is empty", path.display()),
        ));
    }
    if let Some(found) = detect_tee(outblob) {
        if found != tee {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "the provider is {tee} but {} holds {found} evidence",
                    path.display()
                ),
            ));
        }
    }
    let got: [u8; 64] = match tee {
        Tee::Snp => {
            if outblob.len() != SNP_REPORT_LEN {
                return Err(Error::malformed(
                    WHAT,
                    format!(
                        "expected an SNP report of {SNP_REPORT_LEN} bytes, got {} bytes",
                        outblob.len()
                    ),
                ));
            }
            let mut rd = [0u8; 64];
            rd.copy_from_slice(&outblob[SNP_REPORT_DATA_OFFSET..SNP_REPORT_DATA_OFFSET + 64]);
            rd
        }
        _ => crate::verify::dcap::inspect(outblob)?.report_data,
    };
    if &got != report_data {
        return Err(Error::malformed(
            WHAT,
            format!(
                "report data: expected {}, got {}",
                hex::encode(report_data),
                hex::encode(got)
            ),
        ));
    }
    Ok(())
}

/// One entry directory under the report root; removed by [`Entry::remove`] or on drop.
struct Entry {
    path: PathBuf,
    removed: bool,
}

static ENTRY_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Entry {
    /// Creates an entry with a name no other request uses.
    fn create(root: &Path) -> Result<Entry> {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut last = None;
        for _ in 0..16 {
            let n = ENTRY_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("confidant-{}-{stamp:x}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Entry {
                        path,
                        removed: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err(Error::io("creating report entry", path, e)),
            }
        }
        let (path, e) = last.expect("the loop ran");
        Err(Error::io("creating report entry", path, e))
    }

    /// Reads the entry's provider and the TEE it stands for.
    fn provider(&self, settle: Duration) -> Result<(String, Tee)> {
        let path = self.path.join("provider");
        let raw = read_settled(&path, settle)?;
        let provider = String::from_utf8_lossy(&raw).trim().to_string();
        let tee = tee_of_provider(&provider).map_err(|e| match e {
            Error::NoTee(msg) => Error::NoTee(format!("{msg} (read from {})", path.display())),
            other => other,
        })?;
        Ok((provider, tee))
    }

    /// Removes the entry. configfs removes an entry with `rmdir`, attributes and all; a plain
    /// directory standing in for one is emptied first.
    fn remove(mut self) -> Result<()> {
        self.removed = true;
        remove_entry(&self.path)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if !self.removed {
            // Best effort on an error path; the error that brought us here is the one to report.
            let _ = remove_entry(&self.path);
        }
    }
}

fn remove_entry(path: &Path) -> Result<()> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
            std::fs::remove_dir_all(path).map_err(|e| Error::io("removing report entry", path, e))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing report entry", path, e)),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("reading", path, e))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io("writing", path, e))
}

/// Reads `path`, waiting up to `settle` for it to appear.
fn read_settled(path: &Path, settle: Duration) -> Result<Vec<u8>> {
    let found = settle_until(settle, || match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    })?;
    match found {
        Some(bytes) => Ok(bytes),
        None => read(path),
    }
}

/// Reads and parses a `generation` attribute.
fn read_generation(path: &Path, settle: Duration) -> Result<u64> {
    let raw = read_settled(path, settle)?;
    let text = String::from_utf8_lossy(&raw);
    text.trim().parse().map_err(|_| {
        Error::malformed(
            "configfs-tsm generation",
            format!(
                "expected a decimal counter in {}, got {:?}",
                path.display(),
                text.trim()
            ),
        )
    })
}

/// Calls `look` until it returns `Some` or `timeout` has passed (then `None`), pausing between
/// looks. The first look is immediate, so an interface that is ready costs no wait.
pub(super) fn settle_until<T>(
    timeout: Duration,
    mut look: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = look()? {
            return Ok(Some(v));
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Ok(None);
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// One entry of an SEV-SNP certificate table (the `auxblob` of an SNP guest, the certificate
/// buffer of `SNP_GET_EXT_REPORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry {
    /// The certificate's GUID, in the table's (RFC 4122) byte order; see [`GUID_VCEK`] and
    /// siblings.
    pub guid: [u8; 16],
    /// The certificate, DER.
    pub data: Vec<u8>,
}

/// Parses an SEV-SNP certificate table.
///
/// Layout (GHCB specification, `SNP_GUEST_REQUEST` extended): entries of 24 bytes — a 16-byte
/// GUID, a little-endian u32 offset and a little-endian u32 length, both counted from the start
/// of the table — ending with an all-zero entry; the certificates follow. An empty or all-zero
/// blob is an empty table. Never panics, whatever the bytes.
pub fn parse_cert_table(blob: &[u8]) -> Result<Vec<CertTableEntry>> {
    const WHAT: &str = "SNP certificate table";
    const ENTRY: usize = 24;
    let mut entries = Vec::new();
    if blob.iter().all(|&b| b == 0) {
        return Ok(entries);
    }
    let mut at = 0usize;
    loop {
        let Some(raw) = blob.get(at..at + ENTRY) else {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "entry {} at offset {at} runs past the end of the {} bytes without the \
                     all-zero terminator",
                    entries.len(),
                    blob.len()
                ),
            ));
        };
        if raw.iter().all(|&b| b == 0) {
            return Ok(entries);
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&raw[..16]);
        let offset = u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]) as usize;
        let length = u32::from_le_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
        let data = offset
            .checked_add(length)
            .and_then(|end| blob.get(offset..end))
            .ok_or_else(|| {
                Error::malformed(
                    WHAT,
                    format!(
                        "entry {} ({}) says offset {offset} length {length}, past the end of \
                         the {} bytes",
                        entries.len(),
                        guid_string(&guid),
                        blob.len()
                    ),
                )
            })?;
        entries.push(CertTableEntry {
            guid,
            data: data.to_vec(),
        });
        at += ENTRY;
    }
}

/// The endorsements an SNP certificate table holds: the VCEK (or, failing that, the VLEK) as
/// [`Endorsements::vcek`], the ASK and ARK as [`Endorsements::cert_chain`] PEM (ASK first).
/// Entries of other kinds (a CRL, vendor certificates) are skipped.
pub fn snp_endorsements(auxblob: &[u8]) -> Result<Endorsements> {
    let entries = parse_cert_table(auxblob)?;
    let find = |guid: &[u8; 16]| {
        entries
            .iter()
            .find(|e| &e.guid == guid && !e.data.is_empty())
    };
    let vcek = find(&GUID_VCEK)
        .or_else(|| find(&GUID_VLEK))
        .map(|e| e.data.clone());
    let chain: Vec<&CertTableEntry> = [find(&GUID_ASK), find(&GUID_ARK)]
        .into_iter()
        .flatten()
        .collect();
    let cert_chain = (!chain.is_empty()).then(|| chain.iter().map(|e| pem(&e.data)).collect());
    Ok(Endorsements {
        collateral: None,
        vcek,
        cert_chain,
    })
}

/// A DER certificate as PEM.
fn pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A GUID in its textual form.
fn guid_string(g: &[u8; 16]) -> String {
    let h = hex::encode(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
        let header = (entries.len() + 1) * 24;
        let mut out = Vec::new();
        let mut data = Vec::new();
        for (guid, cert) in entries {
            out.extend_from_slice(guid);
            out.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
            out.extend_from_slice(&(cert.len() as u32).to_le_bytes());
            data.extend_from_slice(cert);
        }
        out.extend_from_slice(&[0u8; 24]);
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn guid_constants_match_their_text() {
        assert_eq!(
            guid_string(&GUID_VCEK),
            "63da758d-e664-4564-adc5-f4b93be8accd"
        );
        assert_eq!(
            guid_string(&GUID_VLEK),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
        assert_eq!(
            guid_string(&GUID_ASK),
            "4ab7b379-bbac-4fe4-a02f-05aef327c782"
        );
        assert_eq!(
            guid_string(&GUID_ARK),
            "c0b406a4-a803-4952-9743-3fb6014cd0ae"
        );
    }

    #[test]
    fn cert_table_yields_vcek_and_chain() {
        let blob = table(&[
            (GUID_ARK, b"ark-der"),
            (GUID_VCEK, b"vcek-der"),
            (GUID_ASK, b"ask-der"),
        ]);
        let e = snp_endorsements(&blob).unwrap();
        assert_eq!(e.vcek.as_deref(), Some(&b"vcek-der"[..]));
        let chain = e.cert_chain.unwrap();
        let ask = chain.find(&B64.encode(b"ask-der")).unwrap();
        let ark = chain.find(&B64.encode(b"ark-der")).unwrap();
        assert!(ask < ark, "ASK comes first: {chain}");
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[test]
    fn cert_table_falls_back_to_vlek() {
        let blob = table(&[(GUID_VLEK, b"vlek-der")]);
        let e = snp_endorsements(&blob).unwrap();
        assert_eq!(e.vcek.as_deref(), Some(&b"vlek-der"[..]));
        assert!(e.cert_chain.is_none());
    }

    #[test]
    fn empty_and_all_zero_tables_are_empty() {
        assert!(snp_endorsements(&[]).unwrap().is_empty());
        assert!(snp_endorsements(&[0u8; 4096]).unwrap().is_empty());
    }

    #[test]
    fn cert_table_entry_past_the_end_is_malformed() {
        let mut blob = table(&[(GUID_VCEK, b"vcek-der")]);
        blob.truncate(blob.len() - 1);
        let err = parse_cert_table(&blob).unwrap_err();
        assert!(err.to_string().contains("63da758d"), "{err}");
    }

    #[test]
    fn cert_table_without_terminator_is_malformed() {
        let mut blob = Vec::new();
        blob.extend_from_slice(&GUID_VCEK);
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        let err = parse_cert_table(&blob).unwrap_err();
        assert!(err.to_string().contains("terminator"), "{err}");
    }

    #[test]
    fn cert_table_with_huge_offset_does_not_panic() {
        let mut blob = Vec::new();
        blob.extend_from_slice(&GUID_VCEK);
        blob.extend_from_slice(&u32::MAX.to_le_bytes());
        blob.extend_from_slice(&u32::MAX.to_le_bytes());
        blob.extend_from_slice(&[0u8; 24]);
        assert!(parse_cert_table(&blob).is_err());
    }

    #[test]
    fn unknown_provider_names_itself_and_the_known_ones() {
        let err = tee_of_provider("arm_cca_guest").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("arm_cca_guest") && msg.contains("tdx_guest"),
            "{msg}"
        );
        assert_eq!(tee_of_provider("tdx_guest").unwrap(), Tee::Tdx);
        assert_eq!(tee_of_provider("sev_guest").unwrap(), Tee::Snp);
    }
}
