//! Names found in a layer tar, checked before anything touches the filesystem.
//!
//! An entry's name (and a hardlink's target) must be a relative path without `..`: such names
//! are refused, not repaired, because a layer that carries them was made by a broken or hostile
//! tool. `.` components and repeated or trailing slashes are harmless and dropped, so `./etc/`
//! and `etc` are the same entry.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};

/// The longest name accepted, in bytes (Linux `PATH_MAX`).
pub(crate) const PATH_MAX: usize = 4096;
/// The longest single component accepted, in bytes (Linux `NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;

/// Prefix of whiteout entries (OCI image-spec `layer.md`).
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the opaque whiteout marker.
pub(crate) const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// Prefix of AUFS bookkeeping entries (`.wh..wh.plnk`, `.wh..wh.aufs`): never materialized.
pub(crate) const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// A checked archive path: the components below the target, in order. No component is empty,
/// `.` or `..`, none holds a `/` or NUL, none is longer than [`NAME_MAX`]. No components at all
/// names the target directory itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryPath {
    components: Vec<OsString>,
}

/// What a whiteout entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// `DIR/.wh.NAME`: remove `NAME` of lower layers from `DIR`.
    Remove(&'a OsStr),
    /// `DIR/.wh..wh..opq`: hide everything lower layers put in `DIR`.
    Opaque,
    /// `DIR/.wh..wh.*` other than the opaque marker: AUFS bookkeeping, ignored.
    AufsMeta,
}

impl EntryPath {
    /// Checks `raw`, the bytes of a name from the archive. `entry` names the archive entry in
    /// errors and `what` says which of its names this is (`"name"`, `"hardlink target"`).
    pub(crate) fn parse(raw: &[u8], entry: &str, what: &str) -> Result<Self> {
        let refuse = |reason: String| Error::unsafe_entry(entry, format!("{what}: {reason}"));
        if raw.is_empty() {
            return Err(refuse("is empty".into()));
        }
        if raw.contains(&0) {
            return Err(refuse("contains a NUL byte".into()));
        }
        if raw.len() > PATH_MAX {
            return Err(refuse(format!(
                "is {} bytes long, over PATH_MAX ({PATH_MAX})",
                raw.len()
            )));
        }
        if raw[0] == b'/' {
            return Err(refuse(
                "is an absolute path; layer entries must be relative to the root".into(),
            ));
        }
        let mut components = Vec::new();
        for component in raw.split(|b| *b == b'/') {
            match component {
                b"" | b"." => continue,
                b".." => {
                    return Err(refuse(
                        "has a `..` component; layer entries must stay below the root".into(),
                    ));
                }
                c if c.len() > NAME_MAX => {
                    return Err(refuse(format!(
                        "component {:?} is {} bytes long, over NAME_MAX ({NAME_MAX})",
                        String::from_utf8_lossy(&c[..32]),
                        c.len()
                    )));
                }
                c => components.push(OsStr::from_bytes(c).to_owned()),
            }
        }
        Ok(Self { components })
    }

    /// The path names the target directory itself (`./`, `.`).
    pub(crate) fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// All components.
    #[cfg(test)]
    pub(crate) fn components(&self) -> &[OsString] {
        &self.components
    }

    /// The parent's components and the last component; `None` for the root.
    pub(crate) fn split_last(&self) -> Option<(&[OsString], &OsStr)> {
        self.components
            .split_last()
            .map(|(last, parent)| (parent, last.as_os_str()))
    }

    /// What the last component asks for if it is a whiteout (`.wh.` prefix), else `None`.
    pub(crate) fn whiteout(&self) -> Option<Whiteout<'_>> {
        let last = self.components.last()?.as_bytes();
        if last == OPAQUE_WHITEOUT {
            Some(Whiteout::Opaque)
        } else if last.starts_with(AUFS_META_PREFIX) {
            Some(Whiteout::AufsMeta)
        } else {
            last.strip_prefix(WHITEOUT_PREFIX)
                .map(|name| Whiteout::Remove(OsStr::from_bytes(name)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Vec<String>> {
        EntryPath::parse(raw.as_bytes(), raw, "name").map(|p| {
            p.components()
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect()
        })
    }

    #[test]
    fn normalizes_dot_components_and_slashes() {
        assert_eq!(parse("./etc//passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(parse("usr/lib/").unwrap(), ["usr", "lib"]);
        assert_eq!(parse("././a/./b").unwrap(), ["a", "b"]);
        assert!(parse("./").unwrap().is_empty());
    }

    #[test]
    fn refuses_escaping_and_malformed_names() {
        for bad in ["../evil", "a/../../evil", "a/..", "/abs/evil", "/", ""] {
            assert!(
                matches!(parse(bad), Err(Error::UnsafeEntry { .. })),
                "{bad:?} accepted"
            );
        }
        let nul = EntryPath::parse(b"a\0b", "a", "name");
        assert!(matches!(nul, Err(Error::UnsafeEntry { .. })));
    }

    #[test]
    fn refuses_overlong_names() {
        assert!(parse(&"a".repeat(NAME_MAX)).is_ok());
        assert!(parse(&"a".repeat(NAME_MAX + 1)).is_err());
        let long = vec!["abcdefgh"; PATH_MAX / 9 + 1].join("/");
        assert!(long.len() > PATH_MAX);
        assert!(parse(&long).is_err());
    }

    #[test]
    fn recognizes_whiteouts() {
        let p = |s: &str| EntryPath::parse(s.as_bytes(), s, "name").unwrap();
        assert_eq!(
            p("a/.wh.b").whiteout(),
            Some(Whiteout::Remove(OsStr::new("b")))
        );
        assert_eq!(p("a/.wh..wh..opq").whiteout(), Some(Whiteout::Opaque));
        assert_eq!(p(".wh..wh.plnk").whiteout(), Some(Whiteout::AufsMeta));
        assert_eq!(p("a/b.wh.c").whiteout(), None);
        assert_eq!(p("./").whiteout(), None);
    }
}
