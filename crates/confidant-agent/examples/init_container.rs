//! An init container's use of the agent: activate the workload and write its identity and
//! rendered files into a directory (a pod's memory volume, `emptyDir: {medium: Memory}`) for
//! the app container to read; no image is unpacked (the pod's runtime pulled it) and no app is
//! run.
//!
//! ```text
//! init_container HOME COORDINATOR WORKLOAD OUT_DIR [sim]
//! ```
//!
//! `HOME` holds the coordinator `confidant verify` saved; `sim` signs with the SIMULATION TEE's
//! platform key in `HOME/sim` instead of the detected hardware.

use std::path::{Path, PathBuf};

use confidant_agent::activation::{self, TeeSource};
use confidant_agent::files;
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
    // The identity (certificate, chain, key, root CA) and the rendered files, for the app.
    let out = PathBuf::from(out);
    files::write_identity(&out, &activated)?;
    let written =
        files::write_rendered_files(&out.join("files"), &activated.answer.parameters.files)?;
    println!(
        "activated as {}; wrote {} and {} rendered files under {}",
        activated.name(),
        files::IDENTITY_FILES.join(", "),
        written.len(),
        out.display()
    );
    Ok(())
}
