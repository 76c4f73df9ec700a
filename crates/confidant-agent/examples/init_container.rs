//! An init container's use of the agent: activate the workload and write its identity and
//! rendered files into a directory (a pod's memory volume, `emptyDir: {medium: Memory}`) for
//! the app container to read; no image is unpacked (the pod's runtime pulled it) and no app is
//! run. `confidant init` is this with its trust in the coordinator given in the pod spec.
//!
//! ```text
//! init_container HOME COORDINATOR WORKLOAD OUT_DIR [sim]
//! ```
//!
//! `HOME` holds the coordinator `confidant verify` saved; `sim` signs with the SIMULATION TEE's
//! platform key in `HOME/sim` instead of the detected hardware.

use std::path::{Path, PathBuf};

use confidant_agent::activation::{self, TeeSource};
use confidant_agent::{credentials, files};
use confidant_client::{Address, Client, Retry, Saved};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [home, coordinator, workload, out, rest @ ..] = args.as_slice() else {
        return Err("usage: init_container HOME COORDINATOR WORKLOAD OUT_DIR [sim]".into());
    };
    let home = Path::new(home);
    // The coordinator, pinned to the root CA its attestation bound. An init container starts
    // with its coordinator: requests that never arrived are tried again for a while.
    let address = Address::parse(coordinator)?;
    let saved = Saved::load(home, &address)?;
    let client = Client::new(&address, &saved.trust(), None)?.with_retry(Retry::STARTUP);
    // Evidence from the TEE (or the simulation TEE), binding a fresh key and the nonce.
    let tee = match rest {
        [s] if s == "sim" => TeeSource::Simulation {
            platform_dir: home.join("sim"),
        },
        _ => TeeSource::Detect,
    };
    let attester = activation::attester(&tee, None, "", workload)?;
    let activated = activation::activate(&client, workload, attester.as_ref(), None)?;
    // The identity (certificate, chain, key, root CA), the rendered files, env, args, volume
    // keys and mesh section for the app and the mesh sidecar, the marker last
    // (docs/formats/pod-credentials.md; `confidant init` does the same).
    let out = PathBuf::from(out);
    let marker = credentials::write(&out, &activated)?;
    println!(
        "activated as {}; wrote {} and {} rendered files under {}",
        activated.name(),
        files::IDENTITY_FILES.join(", "),
        marker.files.len(),
        out.display()
    );
    Ok(())
}
