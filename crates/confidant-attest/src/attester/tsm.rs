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

use crate::error::{Error, Result};
use crate::evidence::{Endorsements, Evidence, SNP_REPORT_LEN, detect_tee};

// The certificate table moved to its own module; its names stay reachable from here.
pub use super::cert_table::{
    CertTableEntry, GUID_ARK, GUID_ASK, GUID_VCEK, GUID_VLEK, parse_cert_table, snp_endorsements,
};
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
    if let Some(found) = detect_tee(outblob)
        && found != tee
    {
        return Err(Error::malformed(
            WHAT,
            format!(
                "the provider is {tee} but {} holds {found} evidence",
                path.display()
            ),
        ));
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
        _ => *crate::verify::dcap::inspect(outblob)?.report_data(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
