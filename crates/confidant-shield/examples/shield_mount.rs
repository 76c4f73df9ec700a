//! Mounts a protected volume in the foreground, for trying it out and for benchmarks.
//!
//! ```sh
//! cargo run --release -p confidant-shield --example shield_mount -- BACKING MOUNTPOINT KEYFILE ROOTFILE [--writeback]
//! ```
//!
//! Creates the volume (and a random 32-byte KEYFILE) when BACKING does not exist yet; the
//! trusted state is kept in ROOTFILE (a `LocalRootStore`). Unmount with `fusermount3 -u
//! MOUNTPOINT`, which commits.

use std::sync::Arc;

use confidant_shield::{LocalRootStore, MountOptions, Volume, VolumeKey, mount_foreground};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backing, mountpoint, keyfile, rootfile, rest @ ..] = args.as_slice() else {
        eprintln!("usage: shield_mount BACKING MOUNTPOINT KEYFILE ROOTFILE [--writeback]");
        std::process::exit(2);
    };
    let roots = Arc::new(LocalRootStore::new(rootfile));
    let volume = if std::path::Path::new(backing).exists() {
        let key =
            VolumeKey::from_slice(&std::fs::read(keyfile)?).ok_or("key file: expected 32 bytes")?;
        Volume::open(backing, key, roots, false)?
    } else {
        let key = VolumeKey::generate()?;
        std::fs::write(keyfile, key.as_bytes())?;
        Volume::create(backing, key, roots)?
    };
    let options = MountOptions {
        writeback_cache: rest.iter().any(|a| a == "--writeback"),
        ..MountOptions::default()
    };
    let state = mount_foreground(Arc::new(volume), mountpoint, &options)?;
    eprintln!("unmounted at version {}", state.version);
    Ok(())
}
