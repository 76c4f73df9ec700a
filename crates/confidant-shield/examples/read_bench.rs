//! Engine read micro-benchmark (no FUSE): sequential 1 MiB reads and random 4 KiB reads of one
//! file through `Volume::read`, with the host's page cache warm (CPU cost of the read path)
//! and, as root, cold (`drop_caches` before each pass: I/O pattern on the backing directory).
//!
//! ```sh
//! cargo run --release -p confidant-shield --example read_bench -- DIR [SIZE_MIB] [SECONDS]
//! ```
//!
//! DIR must not exist (it is created, used and removed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use confidant_shield::{MemoryRootStore, ROOT_INO, Volume, VolumeKey};

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .ok_or("usage: read_bench DIR [SIZE_MIB] [SECONDS]")?;
    let mib: u64 = args.get(1).map_or(Ok(256), |s| s.parse())?;
    let secs: f64 = args.get(2).map_or(Ok(3.0), |s| s.parse())?;
    let size = mib << 20;
    let v = Volume::create(
        dir,
        VolumeKey::generate()?,
        Arc::new(MemoryRootStore::new()),
    )?;
    let a = v.create_file(ROOT_INO, "f".as_ref(), 0o644, 0, 0)?;
    let block = vec![0x5au8; 1 << 20];
    for off in (0..size).step_by(1 << 20) {
        v.write(a.ino, off, &block)?;
    }
    v.commit()?;
    v.open_file(a.ino)?;
    let run =
        |name: &str, cold: bool, bs: u32, random: bool| -> Result<(), Box<dyn std::error::Error>> {
            if cold && !drop_caches() {
                println!("{name:<24} skipped (needs root for drop_caches)");
                return Ok(());
            }
            let limit = Duration::from_secs_f64(secs);
            let start = Instant::now();
            let (mut bytes, mut ops, mut off, mut x) = (0u64, 0u64, 0u64, 0x9e3779b97f4a7c15u64);
            while start.elapsed() < limit {
                let at = if random {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % (size / u64::from(bs))) * u64::from(bs)
                } else {
                    let at = off;
                    off = (off + u64::from(bs)) % size;
                    at
                };
                bytes += v.read(a.ino, at, bs)?.len() as u64;
                ops += 1;
            }
            let t = start.elapsed().as_secs_f64();
            println!(
                "{name:<24} {:>9.1} MiB/s {:>9.0} ops/s {:>7.1} us/op",
                bytes as f64 / t / f64::from(1 << 20),
                ops as f64 / t,
                t * 1e6 / ops as f64
            );
            Ok(())
        };
    run("seq-read 1M, warm", false, 1 << 20, false)?;
    run("seq-read 128K, warm", false, 128 << 10, false)?;
    run("rand-read 4k, warm", false, 4096, true)?;
    run("seq-read 128K, cold", true, 128 << 10, false)?;
    run("seq-read 1M, cold", true, 1 << 20, false)?;
    run("rand-read 4k, cold", true, 4096, true)?;
    v.release_file(a.ino);
    drop(v);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
