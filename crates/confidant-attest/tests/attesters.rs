//! The hardware attesters against directory fixtures that behave like the kernel (configfs-tsm)
//! and Gramine (`/dev/attestation`) interfaces, answering with the real quotes and reports in
//! `testdata/attestation/` patched to carry the requested report data.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use confidant_attest::attester::detect::{DevicePaths, detect};
use confidant_attest::attester::gramine::GramineAttester;
use confidant_attest::attester::tsm::{GUID_ARK, GUID_ASK, GUID_VCEK, TsmAttester, TsmOptions};
use confidant_attest::{Attester, Error, Evidence, Tee, inspect};

/// Generous bound for fixture threads to answer; only reached when something is broken.
const SETTLE: Duration = Duration::from_secs(30);

/// TDX quote v4: 48-byte header, TD report body with REPORT_DATA at 520.
const TDX_REPORT_DATA: usize = 48 + 520;
/// SGX quote v3: 48-byte header, enclave report body with REPORT_DATA at 320.
const SGX_REPORT_DATA: usize = 48 + 320;
/// SEV-SNP ATTESTATION_REPORT: REPORT_DATA at 0x50.
const SNP_REPORT_DATA: usize = 0x50;

fn report_data(seed: u8) -> [u8; 64] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8))
}

fn snp_report() -> Vec<u8> {
    let text = String::from_utf8(common::read("snp/report_milan.hex")).unwrap();
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    hex::decode(compact).unwrap()
}

fn patched(mut evidence: Vec<u8>, offset: usize, data: &[u8]) -> Vec<u8> {
    evidence[offset..offset + 64].copy_from_slice(data);
    evidence
}

/// Writes `bytes` to `dir/name` atomically, as the kernel's attributes appear: whole or not at all.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// An SNP certificate table: (GUID, u32 offset, u32 length) entries, an all-zero one, the data.
fn cert_table(entries: &[([u8; 16], Vec<u8>)]) -> Vec<u8> {
    let header = (entries.len() + 1) * 24;
    let (mut table, mut data) = (Vec::new(), Vec::new());
    for (guid, cert) in entries {
        table.extend_from_slice(guid);
        table.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
        table.extend_from_slice(&(cert.len() as u32).to_le_bytes());
        data.extend_from_slice(cert);
    }
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&data);
    table
}

/// The DER certificates of a PEM file, in order.
fn pem_certs(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = std::str::from_utf8(pem).unwrap();
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let body: String = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        })
        .collect()
}

/// Runs `step` on a background thread until the returned guard is dropped.
struct Poller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    fn start(mut step: impl FnMut() + Send + 'static) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                step();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Poller {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let joined = t.join();
            if !std::thread::panicking() {
                joined.expect("fixture thread panicked");
            }
        }
    }
}

/// How the configfs-tsm fixture answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tsm {
    /// Like the kernel.
    Honest,
    /// As if another process wrote to the entry while the report was made.
    Raced,
}

/// A directory that behaves like `/sys/kernel/config/tsm/report` for one provider.
struct TsmFixture {
    root: tempfile::TempDir,
    /// Every `privlevel` value written, in order.
    privlevels: Arc<Mutex<Vec<String>>>,
    _poller: Poller,
}

#[derive(PartialEq, Eq)]
enum Stage {
    Populated,
    Answered,
}

impl TsmFixture {
    fn start(provider: &'static str, mode: Tsm) -> TsmFixture {
        let root = tempfile::tempdir().unwrap();
        let privlevels = Arc::new(Mutex::new(Vec::new()));
        let tdx_quote = common::read("tdx/quote.bin");
        let snp = snp_report();
        let vcek = common::read("snp/vcek_milan.der");
        let [ask, ark] = pem_certs(&common::read("snp/cert_chain_milan.pem"))
            .try_into()
            .expect("the Milan chain is ASK then ARK");
        let auxblob = cert_table(&[(GUID_VCEK, vcek), (GUID_ASK, ask), (GUID_ARK, ark)]);
        let dir = root.path().to_path_buf();
        let seen = privlevels.clone();
        let mut entries: HashMap<PathBuf, Stage> = HashMap::new();
        let poller = Poller::start(move || {
            let Ok(list) = std::fs::read_dir(&dir) else {
                return;
            };
            let present: Vec<PathBuf> = list
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            entries.retain(|p, _| present.contains(p));
            for entry in present {
                // Every I/O error means the attester removed the entry meanwhile: ignore it.
                match entries.get(&entry) {
                    None => {
                        // What mkdir does in configfs: the attributes appear, generation first.
                        let populated = put(&entry, "generation", b"0\n").and_then(|()| {
                            put(&entry, "provider", format!("{provider}\n").as_bytes())
                        });
                        if populated.is_ok() {
                            entries.insert(entry, Stage::Populated);
                        }
                    }
                    Some(Stage::Populated) => {
                        let Ok(inblob) = std::fs::read(entry.join("inblob")) else {
                            continue;
                        };
                        if inblob.len() != 64 {
                            continue;
                        }
                        let mut writes = 1;
                        if let Ok(level) = std::fs::read_to_string(entry.join("privlevel")) {
                            seen.lock().unwrap().push(level);
                            writes += 1;
                        }
                        let answered = match provider {
                            "tdx_guest" => put(
                                &entry,
                                "outblob",
                                &patched(tdx_quote.clone(), TDX_REPORT_DATA, &inblob),
                            ),
                            "sev_guest" => put(
                                &entry,
                                "outblob",
                                &patched(snp.clone(), SNP_REPORT_DATA, &inblob),
                            )
                            .and_then(|()| put(&entry, "auxblob", &auxblob)),
                            _ => Ok(()),
                        };
                        if mode == Tsm::Raced {
                            writes += 1;
                        }
                        // The generation last: once it has advanced, the answer is in place.
                        let answered = answered.and_then(|()| {
                            put(&entry, "generation", format!("{writes}\n").as_bytes())
                        });
                        if answered.is_ok() {
                            entries.insert(entry, Stage::Answered);
                        }
                    }
                    Some(Stage::Answered) => {}
                }
            }
        });
        TsmFixture {
            root,
            privlevels,
            _poller: poller,
        }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn open(&self, privlevel: Option<u8>) -> confidant_attest::Result<TsmAttester> {
        TsmAttester::open_with(
            self.path(),
            TsmOptions {
                privlevel,
                settle_timeout: SETTLE,
            },
        )
    }

    /// Entries (directories) left under the root.
    fn leftover_entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    }
}

/// A directory that behaves like Gramine's `/dev/attestation`.
struct GramineFixture {
    root: tempfile::TempDir,
    _poller: Poller,
}

impl GramineFixture {
    /// `quote_data` chooses the report data put in the quote from the one written.
    fn start(
        attestation_type: &str,
        quote_data: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
    ) -> GramineFixture {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("attestation_type"), attestation_type).unwrap();
        let dir = root.path().to_path_buf();
        let quote = common::read("sgx/quote.bin");
        let mut answered: Option<Vec<u8>> = None;
        let poller = Poller::start(move || {
            let Ok(data) = std::fs::read(dir.join("user_report_data")) else {
                return;
            };
            if data.len() != 64 || answered.as_ref() == Some(&data) {
                return;
            }
            let q = patched(quote.clone(), SGX_REPORT_DATA, &quote_data(&data));
            if put(&dir, "quote", &q).is_ok() {
                answered = Some(data);
            }
        });
        GramineFixture {
            root,
            _poller: poller,
        }
    }

    /// A Gramine directory whose quotes carry the report data written.
    fn honest() -> GramineFixture {
        Self::start("dcap", |d| d.to_vec())
    }

    fn path(&self) -> &Path {
        self.root.path()
    }
}

fn assert_report_data(evidence: &Evidence, want: &[u8; 64]) {
    let claims = inspect(evidence).unwrap();
    assert_eq!(claims.tee(), evidence.tee);
    assert_eq!(hex::encode(claims.report_data()), hex::encode(want));
}

#[test]
fn tsm_tdx_evidence_carries_the_report_data() {
    let fx = TsmFixture::start("tdx_guest", Tsm::Honest);
    let attester = fx.open(None).unwrap();
    assert_eq!(attester.tee(), Tee::Tdx);
    for seed in [1, 2] {
        let rd = report_data(seed);
        let ev = attester.attest(&rd).unwrap();
        assert_eq!(ev.tee, Tee::Tdx);
        assert_report_data(&ev, &rd);
        assert!(ev.endorsements.is_empty());
    }
    assert_eq!(fx.leftover_entries(), Vec::<PathBuf>::new());
}

#[test]
fn tsm_snp_evidence_carries_the_report_data_and_the_vcek_from_auxblob() {
    let fx = TsmFixture::start("sev_guest", Tsm::Honest);
    let attester = fx.open(None).unwrap();
    assert_eq!(attester.tee(), Tee::Snp);
    let rd = report_data(7);
    let ev = attester.attest(&rd).unwrap();
    assert_eq!(ev.tee, Tee::Snp);
    assert_report_data(&ev, &rd);
    assert_eq!(
        ev.endorsements.vcek.as_deref(),
        Some(&common::read("snp/vcek_milan.der")[..])
    );
    let chain = ev.endorsements.cert_chain.as_deref().unwrap();
    assert_eq!(
        pem_certs(chain.as_bytes()),
        pem_certs(&common::read("snp/cert_chain_milan.pem"))
    );
    assert!(fx.privlevels.lock().unwrap().is_empty());
    assert_eq!(fx.leftover_entries(), Vec::<PathBuf>::new());
}

#[test]
fn tsm_snp_writes_the_requested_privlevel() {
    let fx = TsmFixture::start("sev_guest", Tsm::Honest);
    let attester = fx.open(Some(2)).unwrap();
    let rd = report_data(9);
    let ev = attester.attest(&rd).unwrap();
    assert_report_data(&ev, &rd);
    assert_eq!(*fx.privlevels.lock().unwrap(), ["2"]);
    assert_eq!(fx.leftover_entries(), Vec::<PathBuf>::new());
}

#[test]
fn tsm_refuses_privlevel_for_tdx() {
    let fx = TsmFixture::start("tdx_guest", Tsm::Honest);
    let err = fx.open(Some(1)).unwrap_err();
    assert!(err.to_string().contains("SEV-SNP only"), "{err}");
    assert_eq!(fx.leftover_entries(), Vec::<PathBuf>::new());
}

#[test]
fn tsm_refuses_privlevel_above_three() {
    let fx = TsmFixture::start("sev_guest", Tsm::Honest);
    let err = fx.open(Some(4)).unwrap_err();
    assert!(err.to_string().contains("0 to 3"), "{err}");
}

#[test]
fn tsm_refuses_unknown_provider_naming_it() {
    let fx = TsmFixture::start("arm_cca_guest", Tsm::Honest);
    let err = fx.open(None).unwrap_err();
    assert!(matches!(err, Error::NoTee(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("arm_cca_guest"), "{msg}");
    assert!(
        msg.contains("tdx_guest") && msg.contains("sev_guest"),
        "{msg}"
    );
    assert_eq!(fx.leftover_entries(), Vec::<PathBuf>::new());
}

#[test]
fn tsm_refuses_report_when_generation_shows_another_writer() {
    for provider in ["tdx_guest", "sev_guest"] {
        let fx = TsmFixture::start(provider, Tsm::Raced);
        let attester = fx.open(None).unwrap();
        let err = attester.attest(&report_data(3)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("generation went from 0 to 2"), "{msg}");
        assert!(msg.contains("another writer"), "{msg}");
        assert_eq!(fx.leftover_entries(), Vec::<PathBuf>::new());
    }
}

#[test]
fn gramine_evidence_carries_the_report_data() {
    let fx = GramineFixture::honest();
    let attester = GramineAttester::open(fx.path())
        .unwrap()
        .with_settle_timeout(SETTLE);
    assert_eq!(attester.tee(), Tee::Sgx);
    for seed in [4, 5] {
        let rd = report_data(seed);
        let ev = attester.attest(&rd).unwrap();
        assert_eq!(ev.tee, Tee::Sgx);
        assert_report_data(&ev, &rd);
    }
}

#[test]
fn gramine_refuses_attestation_types_other_than_dcap() {
    for found in ["epid", "none"] {
        let fx = GramineFixture::start(found, |d| d.to_vec());
        let err = GramineAttester::open(fx.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{found:?}")), "{msg}");
        assert!(msg.contains("dcap"), "{msg}");
    }
}

#[test]
fn gramine_refuses_a_quote_that_does_not_carry_the_report_data() {
    let fx = GramineFixture::start("dcap", |d| d.iter().map(|b| !b).collect());
    let attester = GramineAttester::open(fx.path())
        .unwrap()
        .with_settle_timeout(Duration::from_millis(200));
    let rd = report_data(6);
    let err = attester.attest(&rd).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("expected {}", hex::encode(rd))),
        "{msg}"
    );
}

#[test]
fn detect_without_any_interface_is_no_tee_and_points_to_tee_sim() {
    let dir = tempfile::tempdir().unwrap();
    let paths = DevicePaths {
        gramine: dir.path().join("attestation"),
        tsm: dir.path().join("tsm/report"),
    };
    let err = detect(&paths).err().expect("no interface, no attester");
    assert!(matches!(err, Error::NoTee(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("--tee sim"), "{msg}");
    assert!(msg.contains("SIMULATION"), "{msg}");
    assert!(msg.contains(&paths.gramine.display().to_string()), "{msg}");
    assert!(msg.contains(&paths.tsm.display().to_string()), "{msg}");
}

#[test]
fn default_device_paths_are_the_real_ones() {
    let p = DevicePaths::default();
    assert_eq!(p.gramine, Path::new("/dev/attestation"));
    assert_eq!(p.tsm, Path::new("/sys/kernel/config/tsm/report"));
}

#[test]
fn detect_prefers_gramine_then_tsm_and_never_yields_sim() {
    let gramine = GramineFixture::honest();
    let tsm = TsmFixture::start("tdx_guest", Tsm::Honest);
    let missing = tempfile::tempdir().unwrap();
    let cases = [
        (gramine.path(), tsm.path(), Some(Tee::Sgx)),
        (
            gramine.path(),
            missing.path().join("tsm").as_path(),
            Some(Tee::Sgx),
        ),
        (
            missing.path().join("attestation").as_path(),
            tsm.path(),
            Some(Tee::Tdx),
        ),
        (
            missing.path().join("attestation").as_path(),
            missing.path().join("tsm").as_path(),
            None,
        ),
    ]
    .map(|(g, t, want)| (g.to_path_buf(), t.to_path_buf(), want));
    for (gramine, tsm, want) in cases {
        let paths = DevicePaths { gramine, tsm };
        let got = detect(&paths).map(|a| a.tee()).ok();
        assert_eq!(got, want, "{paths:?}");
        assert_ne!(got, Some(Tee::Sim));
    }
    assert_eq!(tsm.leftover_entries(), Vec::<PathBuf>::new());
}
