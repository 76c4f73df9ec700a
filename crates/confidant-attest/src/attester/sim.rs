//! The simulation attester: signs reports with the software platform key.

use sha2::{Digest, Sha384};

use crate::error::Result;
use crate::evidence::Evidence;
use crate::sim::{SimPlatform, SimReportBody};
use crate::tee::Tee;

use super::Attester;

/// Produces SIMULATION evidence for a launched workload.
#[derive(Debug)]
pub struct SimAttester {
    platform: SimPlatform,
    measurement: [u8; 48],
    config_id: [u8; 48],
    product_id: u16,
    svn: u16,
    debug: bool,
}

impl SimAttester {
    /// An attester for a workload whose launch measurement is `measurement`.
    pub fn new(platform: SimPlatform, measurement: [u8; 48]) -> Self {
        SimAttester {
            platform,
            measurement,
            config_id: [0; 48],
            product_id: 0,
            svn: 0,
            debug: false,
        }
    }

    /// The measurement of launching `launched`: SHA-384 of its bytes.
    pub fn measure(launched: &[u8]) -> [u8; 48] {
        Sha384::digest(launched).into()
    }

    /// [`SimAttester::measure`] of a file, read in 1 MiB pieces (the agent measures its own
    /// binary without holding it in memory).
    pub fn measure_file(path: &std::path::Path) -> std::io::Result<[u8; 48]> {
        use std::io::Read as _;
        let mut f = std::fs::File::open(path)?;
        let mut h = Sha384::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().into())
    }

    /// [`SimAttester::measure_file`], remembered in `cache_dir` (the simulation platform's
    /// directory) per file version, as Linux IMA measures a file once per inode version: the file
    /// is hashed again only when its device, inode, size, modification or change time differ from
    /// the remembered ones. The change time cannot be set from user space, so a binary rewritten
    /// in place is measured again.
    ///
    /// SIMULATION only: whoever can write `cache_dir` can also read the platform key next to it
    /// and sign any measurement, so the cache adds no trust assumption. On hardware the TEE
    /// measures at launch and nothing is cached by us. Any problem with the cache (unreadable,
    /// malformed, not writable) falls back to hashing the file.
    pub fn measure_file_cached(
        path: &std::path::Path,
        cache_dir: &std::path::Path,
    ) -> std::io::Result<[u8; 48]> {
        let cache = cache_dir.join(MEASUREMENT_CACHE_FILE);
        let before = FileVersion::of(path)?;
        let remembered = std::fs::read_to_string(&cache).unwrap_or_default();
        if let Some(m) = remembered
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{before} ")))
            .and_then(|h| hex::decode(h.trim()).ok())
            .and_then(|b| <[u8; 48]>::try_from(b).ok())
        {
            return Ok(m);
        }
        let measurement = Self::measure_file(path)?;
        // Remember it only if the file did not change while it was read.
        if FileVersion::of(path)? == before {
            let mut lines: Vec<&str> = remembered
                .lines()
                .filter(|l| !l.is_empty())
                .rev()
                .take(MEASUREMENT_CACHE_ENTRIES - 1)
                .collect();
            lines.reverse();
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("{before} {}\n", hex::encode(measurement)));
            let tmp = cache_dir.join(format!(".{MEASUREMENT_CACHE_FILE}.{}", std::process::id()));
            if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &cache).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(measurement)
    }

    /// Sets the product id and security version the reports claim.
    pub fn with_version(mut self, product_id: u16, svn: u16) -> Self {
        self.product_id = product_id;
        self.svn = svn;
        self
    }

    /// Sets the config id the reports carry (what the launcher configured, measured apart from
    /// the code: for the agent, the image digest and workload name).
    pub fn with_config_id(mut self, config_id: [u8; 48]) -> Self {
        self.config_id = config_id;
        self
    }

    /// The config id of a launch configuration: SHA-384 of `"confidant/v1/config-id" ‖ 0 ‖
    /// each part followed by 0`.
    pub fn config_id(parts: &[&str]) -> [u8; 48] {
        let mut h = Sha384::new();
        h.update(b"confidant/v1/config-id\0");
        for p in parts {
            h.update(p.as_bytes());
            h.update([0u8]);
        }
        h.finalize().into()
    }

    /// Marks the simulated TEE as running in debug mode.
    pub fn with_debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// The platform's public key, for verifiers that should trust it.
    pub fn platform_key(&self) -> [u8; 32] {
        self.platform.public_key()
    }
}

impl Attester for SimAttester {
    fn tee(&self) -> Tee {
        Tee::Sim
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let report = self.platform.sign(SimReportBody {
            debug: self.debug,
            product_id: self.product_id,
            svn: self.svn,
            measurement: self.measurement,
            config_id: self.config_id,
            report_data: *report_data,
        });
        Ok(Evidence::new(Tee::Sim, report.to_bytes()))
    }
}

/// The file in the simulation platform's directory remembering measured files.
const MEASUREMENT_CACHE_FILE: &str = "measurements";
/// How many file versions it remembers (the oldest are dropped).
const MEASUREMENT_CACHE_ENTRIES: usize = 32;

/// What identifies one version of a file: device, inode, size, modification and change times.
#[derive(Debug, PartialEq, Eq)]
struct FileVersion(String);

impl FileVersion {
    fn of(path: &std::path::Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileVersion(format!(
            "{}:{}:{}:{}.{:09}:{}.{:09}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        )))
    }
}

impl std::fmt::Display for FileVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::SimAttester;

    #[test]
    fn a_cached_measurement_is_reused_until_the_file_changes() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("agent");
        std::fs::write(&file, b"version one").unwrap();
        let first = SimAttester::measure_file_cached(&file, t.path()).unwrap();
        assert_eq!(first, SimAttester::measure(b"version one"));
        let cache = std::fs::read_to_string(t.path().join("measurements")).unwrap();
        assert_eq!(cache.lines().count(), 1, "{cache}");
        // A hit: the same answer, the cache unchanged.
        assert_eq!(
            SimAttester::measure_file_cached(&file, t.path()).unwrap(),
            first
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("measurements")).unwrap(),
            cache
        );
        // Rewritten in place with the same length: the change time moves, so it is hashed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"version two").unwrap();
        let second = SimAttester::measure_file_cached(&file, t.path()).unwrap();
        assert_eq!(second, SimAttester::measure(b"version two"));
        // A garbled cache is ignored, not trusted.
        std::fs::write(t.path().join("measurements"), b"\xff\xfe garbage").unwrap();
        assert_eq!(
            SimAttester::measure_file_cached(&file, t.path()).unwrap(),
            second
        );
    }
}
