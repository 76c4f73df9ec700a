//! The syntax of names, sizes, digests and subject alternative names in manifests.

use std::collections::BTreeMap;

/// Parses `1048576`, `512MiB`, `10GiB`, …
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let units: BTreeMap<&str, u64> = [
        ("KiB", 1u64 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
    ]
    .into_iter()
    .collect();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let mult = if unit.is_empty() {
        1
    } else {
        *units.get(unit.trim())?
    };
    n.checked_mul(mult)
}

pub(crate) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

pub(crate) fn is_san(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = s.strip_prefix("*.").unwrap_or(s);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_binary_units() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("20GiB"), Some(20 << 30));
        assert_eq!(parse_size("2TiB"), Some(2 << 40));
        assert_eq!(parse_size("1GB"), None);
        assert_eq!(parse_size("GiB"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999TiB"), None, "overflow is refused");
    }

    #[test]
    fn names_identifiers_and_digests() {
        assert!(is_name("web-1_a"));
        assert!(!is_name("-web"));
        assert!(!is_name(""));
        assert!(!is_name(&"a".repeat(64)));
        assert!(is_identifier("_db1"));
        assert!(!is_identifier("1db"));
        assert!(!is_identifier("db-key"));
        assert!(is_sha256_digest(&format!("sha256:{}", "0f".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0f".repeat(31))));
    }

    #[test]
    fn subject_alternative_names() {
        assert!(is_san("db.example"));
        assert!(is_san("*.example.org"));
        assert!(is_san("10.0.0.1"));
        assert!(is_san("::1"));
        assert!(!is_san("a..b"));
        assert!(!is_san("under_score.example"));
        assert!(!is_san("*"));
    }
}
