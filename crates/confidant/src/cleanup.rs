//! `confidant cleanup`, and the same sweep at the start of `confidant run`: undoes what runs
//! whose agent was killed (SIGKILL, the OOM killer) left in the run directory — the container,
//! the dead FUSE mounts of its volumes, the tmpfs with the decrypted rootfs, ephemeral volumes'
//! backing directories — and never touches a run whose agent still runs
//! ([`confidant_agent::stale`]).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use confidant_agent::stale::{Sweep, SweepOptions, sweep};

use crate::{Format, Outcome};

/// `confidant cleanup`.
#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    /// The run directory `confidant run` used (its `--run-dir`).
    #[arg(long, default_value = "/run/confidant", value_name = "DIR")]
    run_dir: PathBuf,
    /// The OCI runtime for runs whose record names none.
    #[arg(long, default_value = "runc")]
    runtime: PathBuf,
}

/// Runs `confidant cleanup`: exit 0 when everything found stale was cleaned up, 1 when
/// something could not be (said in its line, or in the JSON document's `errors`).
pub(crate) fn run(args: CleanupArgs, format: Format) -> Result<Outcome> {
    let swept = sweep(&args.run_dir, &SweepOptions::new(&args.runtime));
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&swept)?),
        Format::Human => {
            for k in &swept.kept {
                crate::outln!("left alone: {} ({})", k.id, k.reason);
            }
            for c in &swept.cleaned {
                crate::outln!("cleaned up a run killed earlier: {c}");
            }
            for e in &swept.errors {
                eprintln!("confidant cleanup: ERROR: {e}");
            }
            if swept.cleaned.is_empty() && swept.kept.is_empty() && swept.errors.is_empty() {
                crate::outln!("no runs in {}", args.run_dir.display());
            }
        }
    }
    Ok(if swept.is_complete() {
        Outcome::Ok
    } else {
        Outcome::Rejected
    })
}

/// The sweep at the start of `confidant run`, before it mounts anything. What it cleans and
/// what fails is said on stderr (a log line in `--output json`); a failure does not stop the
/// run: the new run has its own container id, tmpfs and runtime state, so what is left of an
/// old one does not make it unsafe (a container that could not be deleted may still hold a
/// port, which the new run then fails to listen on, saying so).
pub(crate) fn before_run(run_dir: &Path, runtime: &Path, format: Format) {
    let swept = sweep(run_dir, &SweepOptions::new(runtime));
    for line in lines(&swept) {
        match format {
            Format::Human => eprintln!("confidant run: {line}"),
            Format::Json => tracing::warn!("{line}"),
        }
    }
}

/// One line per cleaned run (its failures included) and per failure of the sweep.
fn lines(swept: &Sweep) -> Vec<String> {
    let mut out: Vec<String> = swept
        .cleaned
        .iter()
        .map(|c| format!("cleaned up a run killed earlier: {c}"))
        .collect();
    out.extend(
        swept
            .errors
            .iter()
            .map(|e| format!("ERROR: cleaning up runs killed earlier: {e}")),
    );
    out
}
