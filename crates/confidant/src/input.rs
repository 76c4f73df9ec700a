//! Input files with a size cap: whatever a user points a command at (evidence, collateral, a
//! VCEK, a manifest, reference values) is read only up to a limit that fits its kind, so that a
//! wrong path (a disk image, /dev/zero) ends in a clear error instead of filling memory.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Evidence as pasted or saved: a quote, a report or its JSON envelope with endorsements.
pub(crate) const MAX_EVIDENCE: u64 = 4 << 20;
/// DCAP collateral (dcap-qvl JSON: CRLs, TCB info, QE identity, chains).
pub(crate) const MAX_COLLATERAL: u64 = 4 << 20;
/// A certificate, a chain or a public key (PEM or DER).
pub(crate) const MAX_CERTIFICATES: u64 = 256 << 10;
/// A manifest: what the coordinator takes in one request.
pub(crate) const MAX_MANIFEST: u64 = confidant_api::MAX_BODY as u64;
/// Reference values (YAML or JSON).
pub(crate) const MAX_REFERENCE_VALUES: u64 = 1 << 20;

/// Reads `path` (`-`: standard input), refusing more than `limit` bytes; `what` names the
/// input in errors.
pub(crate) fn read_capped(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let too_large = |got: String| {
        anyhow::anyhow!(
            "{what} {}: expected at most {limit} bytes ({}), got {got}",
            path.display(),
            human(limit)
        )
    };
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {what} from standard input"))?;
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("reading {what} {}", path.display()))?;
        if let Ok(m) = file.metadata()
            && m.is_file()
            && m.len() > limit
        {
            return Err(too_large(format!("{} bytes", m.len())));
        }
        file.take(limit + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {what} {}", path.display()))?;
    }
    if buf.len() as u64 > limit {
        bail!(too_large("more".into()));
    }
    Ok(buf)
}

/// [`read_capped`] as UTF-8 text.
pub(crate) fn read_text_capped(path: &Path, what: &str, limit: u64) -> Result<String> {
    String::from_utf8(read_capped(path, what, limit)?)
        .map_err(|e| anyhow::anyhow!("{what} {}: expected UTF-8 text: {e}", path.display()))
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_over_their_limit_are_refused_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big");
        std::fs::write(&p, vec![b'x'; 2049]).unwrap();
        let e = read_capped(&p, "evidence", 2048).unwrap_err().to_string();
        assert!(
            e.contains("at most 2048 bytes (2 KiB), got 2049 bytes"),
            "{e}"
        );
        assert_eq!(read_capped(&p, "evidence", 2049).unwrap().len(), 2049);
        // Not a regular file: the cap holds while reading.
        let e = read_capped(Path::new("/dev/zero"), "manifest", 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 4096 bytes"), "{e}");
    }
}
