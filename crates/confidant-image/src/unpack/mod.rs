//! Unpacking OCI image layers into a directory so that nothing is ever written outside it.
//!
//! A layer is a tar changeset applied on top of the layers below it, already unpacked in the same
//! directory (OCI image-spec `layer.md`): `.wh.NAME` deletes `NAME` of the lower layers,
//! `.wh..wh..opq` hides the lower contents of its directory, whiteouts are never materialized,
//! a later entry replaces an earlier one, and a directory entry over an existing directory keeps
//! its contents and takes the entry's metadata.
//!
//! # What is guaranteed
//!
//! Nothing is created, modified or removed outside the target directory, whatever the archive
//! holds: every filesystem operation is on a single name relative to a directory handle (cap-std
//! and rustix on its descriptors), never on a path the kernel would resolve.
//!
//! - Entry names and hardlink targets must be relative and free of `..`; absolute names, `..`,
//!   NUL bytes, empty names and names over `PATH_MAX` (4096) or `NAME_MAX` (255) are refused
//!   with [`Error::UnsafeEntry`].
//! - **Symlinks are resolved within the root.** A symlink met in an entry's parent path
//!   (planted by this or a lower layer) is followed as the container would see it, with the
//!   target directory as `/`: an absolute target starts at the target directory, `..` stops
//!   there. So merged-usr images (`lib -> usr/lib`, then `lib/x.so`) unpack to `usr/lib/x.so`,
//!   and a symlink to `/etc` or `../../..` leads to the target's own `etc` or to the target
//!   itself. This is runc's and umoci's policy (`openat2(RESOLVE_IN_ROOT)`, filepath-securejoin),
//!   implemented here component by component (see `resolve.rs`). Expanding more than 40 symlinks
//!   for one path is taken for a loop and refused.
//! - The last component of an entry is never followed: a file, symlink, hardlink or node
//!   replaces whatever is there (a planted symlink included) instead of writing through it, and
//!   owners, modes and times are applied to the entry itself.
//! - Hardlink targets must already exist inside the target and must not be directories.
//! - Symlink targets are stored as written and not interpreted.
//! - Character and block devices are created only when [`UnpackOptions::devices`] is set and the
//!   process runs as root; otherwise they are skipped and counted. FIFOs are always created.
//! - setuid and setgid bits are kept only when the archive's owners are applied too.
//! - [`UnpackOptions::max_total_bytes`] and [`UnpackOptions::max_entries`] are checked, across the
//!   layers of an image through a [`Budget`], *before* an entry's data is written, so a
//!   decompression bomb stops with [`Error::Limit`] at the first entry that would cross them.
//!   [`UnpackOptions::max_header_bytes`] bounds what the tar parser holds in memory for one
//!   entry's headers (PAX records, GNU long names).
//!
//! # What is not
//!
//! - An error leaves the target partially unpacked. Unpack into a fresh staging directory and
//!   discard it on error (the image pipeline does).
//! - The target must not be modified by anyone else during the unpack: the checks assume this
//!   process is the only writer (a concurrent writer could still not make us write outside the
//!   target, but could make the result differ from the layers).
//! - The image's content is not judged: a symlink to `/etc/shadow` is created as asked, and is
//!   harmless only as long as it is followed inside the container's root, not on the host.
//!
//! The input of [`unpack_layer`] is an uncompressed tar stream; [`decompressing_reader`] turns a
//! gzip or zstd layer blob into one.

mod apply;
mod compression;
mod entry_path;
mod metadata;
mod metered;
mod resolve;
mod whiteout;

use std::io::Read;
use std::path::Path;

use cap_std::fs::Dir;

pub use compression::decompressing_reader;

use crate::error::{Error, Result};

/// Default [`UnpackOptions::max_total_bytes`]: 64 GiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 64 << 30;
/// Default [`UnpackOptions::max_entries`]: ten million.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000_000;
/// Default [`UnpackOptions::max_header_bytes`]: 1 MiB.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 1 << 20;
/// The most warnings kept in [`LayerStats::warnings`]; later ones are only counted.
pub const MAX_WARNINGS: usize = 100;

/// How to unpack layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// The most bytes of entry data the image may unpack, all layers together (tracked by
    /// [`Budget`]). Every entry's declared size counts, before its data is written.
    pub max_total_bytes: u64,
    /// The most tar entries the image may have, all layers together, whiteouts included.
    pub max_entries: u64,
    /// The most bytes of headers the parser may read for one entry (tar headers, PAX records,
    /// GNU long names), which it holds in memory. Real entries need a few kilobytes.
    pub max_header_bytes: u64,
    /// Create character and block device nodes. Only honoured when running as root; otherwise,
    /// and when this is off, device entries are skipped and counted in
    /// [`LayerStats::devices_skipped`].
    pub devices: bool,
    /// Give entries the archive's uid and gid. Only honoured when running as root; otherwise
    /// entries belong to the unpacking user, and setuid/setgid bits are dropped.
    pub ownership: bool,
    /// Apply extended attributes (PAX `SCHILY.xattr.*`) to files and directories. Without root
    /// only `user.*` ones are attempted; overlayfs' own (`trusted.overlay.*`,
    /// `user.overlay.*`) never are. Attributes the filesystem does not support are skipped and
    /// counted in [`LayerStats::xattrs_skipped`].
    pub xattrs: bool,
}

impl Default for UnpackOptions {
    /// 64 GiB, ten million entries, 1 MiB of headers per entry, no device nodes, ownership when
    /// running as root, xattrs on.
    fn default() -> Self {
        Self {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            devices: false,
            ownership: rustix::process::geteuid().is_root(),
            xattrs: true,
        }
    }
}

/// What the layers of one image have used so far of [`UnpackOptions::max_total_bytes`] and
/// [`UnpackOptions::max_entries`]. Pass the same `Budget` to the unpack of each layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    bytes: u64,
    entries: u64,
}

impl Budget {
    /// Nothing used yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of entry data counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Entries counted so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Counts an entry of `size` bytes, or fails with [`Error::Limit`] if that would cross a
    /// limit (then nothing is counted).
    fn charge(&mut self, opts: &UnpackOptions, size: u64, entry: &str) -> Result<()> {
        if self.entries >= opts.max_entries {
            return Err(Error::Limit(format!(
                "entry {entry:?} would be entry {} of the image, over max_entries {}",
                self.entries + 1,
                opts.max_entries
            )));
        }
        let total = self.bytes.saturating_add(size);
        if total > opts.max_total_bytes {
            return Err(Error::Limit(format!(
                "entry {entry:?} of {size} bytes would bring the image to {total} bytes, over \
                 max_total_bytes {} ({} already unpacked)",
                opts.max_total_bytes, self.bytes
            )));
        }
        self.entries += 1;
        self.bytes = total;
        Ok(())
    }
}

/// What unpacking one layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries read (PAX and GNU extension headers not counted).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directory entries applied (created or updated).
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// Character and block devices created.
    pub devices: u64,
    /// Device entries skipped: [`UnpackOptions::devices`] off or not root.
    pub devices_skipped: u64,
    /// `.wh.NAME` whiteouts applied.
    pub whiteouts: u64,
    /// `.wh..wh..opq` opaque whiteouts applied.
    pub opaque_whiteouts: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Extended attributes set.
    pub xattrs_set: u64,
    /// Extended attributes not set: policy, unsupported by the filesystem, or on a symlink or
    /// device node.
    pub xattrs_skipped: u64,
    /// What was skipped or ignored and why, the first [`MAX_WARNINGS`] of them.
    pub warnings: Vec<String>,
}

impl LayerStats {
    fn warn(&mut self, warning: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(warning);
        }
    }

    fn skip_xattr(&mut self, path: &str, name: &[u8], why: &str) {
        self.xattrs_skipped += 1;
        self.warn(format!(
            "{path}: extended attribute {} not set: {why}",
            String::from_utf8_lossy(name)
        ));
    }
}

/// Unpacks `layer_tar`, an uncompressed layer tar stream, into `target`, on top of the layers
/// already unpacked there. `budget` carries the limits' use across the layers of one image.
///
/// Reading stops at the end-of-archive marker; a caller that verifies a digest over the whole
/// stream passes `&mut reader` and drains what is left. On error the target is left partially
/// unpacked: see the [module documentation](self).
pub fn unpack_layer<R: Read>(
    target: &Dir,
    layer_tar: R,
    opts: &UnpackOptions,
    budget: &mut Budget,
) -> Result<LayerStats> {
    let meter = metered::Meter::new(opts.max_header_bytes);
    let mut archive = tar::Archive::new(metered::MeteredReader::new(layer_tar, meter.clone()));
    let malformed = |e: std::io::Error| {
        if meter.tripped() {
            Error::Limit(e.to_string())
        } else {
            Error::malformed(
                "layer tar",
                format!("at stream offset {}: {e}", meter.consumed()),
            )
        }
    };
    let entries = archive.entries().map_err(malformed)?;
    let mut layer = apply::LayerUnpack::new(target, opts);
    for entry in entries {
        let mut entry = entry.map_err(malformed)?;
        let stored = entry.header().entry_size().unwrap_or(0);
        meter.allow_entry(entry.size().max(stored));
        layer.entry(&mut entry, budget)?;
    }
    layer.finish()
}

/// [`unpack_layer`] into the directory at `target`, which must exist.
pub fn unpack_layer_at<R: Read>(
    target: &Path,
    layer_tar: R,
    opts: &UnpackOptions,
    budget: &mut Budget,
) -> Result<LayerStats> {
    let dir = Dir::open_ambient_dir(target, cap_std::ambient_authority())
        .map_err(|e| Error::io("open unpack target", target, e))?;
    unpack_layer(&dir, layer_tar, opts, budget)
}
