//! `confidant`: run unmodified container images in confidential computing TEEs.
//!
//! The binary parses arguments, calls the libraries and formats their results. Exit codes:
//! 0 success or evidence accepted, 1 evidence rejected or a request refused by the coordinator
//! (4xx), 2 malformed input, usage, transport errors or coordinator failures (5xx).

#![forbid(unsafe_code)]

mod attest;
mod cleanup;
mod client;
mod coordinator;
mod generate;
mod home;
mod image;
mod init;
mod input;
mod manifest;
mod mesh;
mod output;
mod recover;
mod run;
mod secret;
mod status;
mod verify;
mod volume;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Confidant: confidential containers from unmodified images.
#[derive(Debug, Parser)]
#[command(name = "confidant", version, about, long_about = None)]
struct Cli {
    /// State directory (default: $CONFIDANT_HOME, /var/lib/confidant as root, else
    /// $XDG_DATA_HOME/confidant).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,

    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Human)]
    output: Format,

    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Human,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce, inspect and verify TEE evidence (SGX DCAP, TDX, SEV-SNP, simulation).
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Convert, encrypt, decrypt, move and unpack OCI images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Work with manifests: export the JSON Schema, validate a manifest; set and read a
    /// coordinator's manifest.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Run the coordinator.
    #[command(subcommand)]
    Coordinator(coordinator::CoordinatorCommand),
    /// Attest a coordinator and save its root CA for the other commands. Exit 0 accepted,
    /// 1 rejected, 2 malformed or unreachable.
    Verify(verify::VerifyArgs),
    /// Show a verified coordinator's state.
    Status(status::StatusArgs),
    /// Set and read secrets through a verified coordinator.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Print a verified coordinator's saved CA certificates.
    #[command(subcommand)]
    Certificate(status::CertificateCommand),
    /// Send a recovery owner's share to a coordinator in recovery.
    Recover(recover::RecoverArgs),
    /// Run an unmodified image as a workload: activate with the coordinator, decrypt and unpack
    /// the image into memory, start the mesh proxy, run the app under an OCI runtime. Exits with
    /// the app's exit code, or 125 when the app could not be started.
    Run(run::RunArgs),
    /// A pod's init container: attest with the pod's TEE, activate the workload and write its
    /// certificate, key, root CA, rendered files, env, args, volume keys and mesh section into
    /// the pod's shared memory volume (marker last). Exit non-zero on any failure (1 refused or
    /// rejected, 2 malformed, unreachable or untrusted), so the pod does not start.
    Init(init::InitArgs),
    /// A pod's mesh sidecar: the mutual-TLS ingress and egress proxies with the identity
    /// `confidant init` wrote, until SIGTERM or SIGINT (exit 0).
    Mesh(mesh::MeshArgs),
    /// Clean up after runs whose agent was killed (SIGKILL, out of memory): delete their
    /// container, detach their volumes' dead FUSE mounts and their tmpfs, remove ephemeral
    /// volumes' backing directories and the run directory. Runs whose agent still runs are left
    /// alone. `confidant run` does this at its start too. Exit 1 when something could not be
    /// cleaned up.
    Cleanup(cleanup::CleanupArgs),
    /// Make Kubernetes YAML confidential, in place and offline: the opted-in pods (annotation
    /// `confidant/workload: NAME`, or a confidential runtime class) get Confidant's init
    /// container, credentials volume, mesh sidecar (annotation `confidant/mesh: "true"`) and
    /// the platform's runtime class, images pinned by digest; what a confidential pod may not
    /// have is refused with its file, object and field. Running it again changes nothing.
    /// `--check`: exit 1 when a file would change.
    Generate(generate::GenerateArgs),
    /// Protected volumes on a single machine (a key file and a local state file): create,
    /// mount (FUSE), seal a directory (also into a coordinator's volume), verify, inspect.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
}

/// The outcome of a command, mapped to the exit code.
pub enum Outcome {
    /// Success, or evidence accepted (exit 0).
    Ok,
    /// Evidence judged and rejected, or a request refused (exit 1).
    Rejected,
    /// A workload's exit code (`confidant run`).
    Exit(u8),
}

/// Exit code for malformed input or usage errors.
pub const EXIT_MALFORMED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = home::resolve(cli.home.clone());
    if matches!(
        cli.command,
        Command::Run(_) | Command::Coordinator(_) | Command::Volume(_) | Command::Mesh(_)
    ) {
        // Long-running commands log what they refuse and why (the mesh, the coordinator's API).
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::INFO)
            .with_target(false)
            .init();
    }
    let result = match cli.command {
        Command::Attest(cmd) => attest::run(cmd, &home, cli.output),
        Command::Image(cmd) => image::run(cmd, cli.output),
        Command::Manifest(cmd) => manifest::run(cmd, &home, cli.output),
        Command::Coordinator(cmd) => coordinator::run(cmd, &home, cli.output),
        Command::Verify(args) => verify::run(args, &home, cli.output),
        Command::Status(args) => status::status(args, &home, cli.output),
        Command::Secret(cmd) => secret::run(cmd, &home, cli.output),
        Command::Certificate(cmd) => status::certificate(cmd, &home, cli.output),
        Command::Recover(args) => recover::run(args, &home, cli.output),
        Command::Run(args) => run::run(args, &home, cli.output),
        Command::Init(args) => init::run(args, &home, cli.output),
        Command::Mesh(args) => mesh::run(args, cli.output),
        Command::Cleanup(args) => cleanup::run(args, cli.output),
        Command::Generate(args) => generate::run(args, cli.output),
        Command::Volume(cmd) => volume::run(cmd, &home, cli.output),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Rejected) => ExitCode::from(1),
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(err) => {
            if !client::print_client_error(&err, cli.output) {
                output::print_error(&err, cli.output);
            }
            ExitCode::from(exit_code_for(&err))
        }
    }
}

/// Errors that reach `main` are malformed input, usage, I/O or transport problems (exit 2);
/// evidence rejections are reported by the command itself as [`Outcome::Rejected`], and a
/// coordinator's refusal (4xx) exits 1.
fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<run::AgentFailed>().is_some() {
        return run::EXIT_AGENT_FAILED;
    }
    if let Some(api) = client::find_api_error(err) {
        return if api.is_refusal() { 1 } else { EXIT_MALFORMED };
    }
    match err.downcast_ref::<confidant_attest::Error>() {
        Some(e) if e.is_rejection() => 1,
        _ => EXIT_MALFORMED,
    }
}
