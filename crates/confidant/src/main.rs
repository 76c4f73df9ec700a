//! `confidant`: run unmodified container images in confidential computing TEEs.
//!
//! The binary parses arguments, calls the libraries and formats their results. Exit codes:
//! 0 success or evidence accepted, 1 evidence rejected, 2 malformed input or usage.

#![forbid(unsafe_code)]

mod attest;
mod home;
mod image;
mod manifest;
mod output;

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
    /// Work with manifests offline: export the JSON Schema, validate a manifest.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
}

/// The outcome of a command, mapped to the exit code.
pub enum Outcome {
    /// Success, or evidence accepted (exit 0).
    Ok,
    /// Evidence judged and rejected (exit 1).
    Rejected,
}

/// Exit code for malformed input or usage errors.
pub const EXIT_MALFORMED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = home::resolve(cli.home.clone());
    let result = match cli.command {
        Command::Attest(cmd) => attest::run(cmd, &home, cli.output),
        Command::Image(cmd) => image::run(cmd, cli.output),
        Command::Manifest(cmd) => manifest::run(cmd, cli.output),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Rejected) => ExitCode::from(1),
        Err(err) => {
            output::print_error(&err, cli.output);
            ExitCode::from(exit_code_for(&err))
        }
    }
}

/// Errors that reach `main` are malformed input, usage or I/O problems (exit 2); evidence
/// rejections are reported by the command itself as [`Outcome::Rejected`].
fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<confidant_attest::Error>() {
        Some(e) if e.is_rejection() => 1,
        _ => EXIT_MALFORMED,
    }
}
