//! The CLI's side of the coordinator client ([`confidant_client`]): the `--coordinator` and
//! `--cert/--key` arguments, the client for a verified coordinator, and how the client's errors
//! are printed.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
pub(crate) use confidant_client::{
    Address, ApiError, Client, ClientError, ClientIdentity, INFO_FILE, INTERMEDIATE_FILE,
    ROOT_FILE, Saved, SavedInfo, Trust, check_name, saved_dir, to_pem,
};

use crate::Format;

/// `--coordinator ADDR`: which coordinator to talk to.
#[derive(Debug, Clone, Args)]
pub(crate) struct CoordinatorArg {
    /// The coordinator's address, `HOST:PORT` (port default 4433; `https://` may be given).
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: String,
}

impl CoordinatorArg {
    /// The parsed address.
    pub(crate) fn address(&self) -> Result<Address> {
        Ok(Address::parse(&self.coordinator)?)
    }
}

/// `--cert FILE --key FILE`: the user's client certificate and private key (PEM).
#[derive(Debug, Clone, Args)]
pub(crate) struct UserArgs {
    /// The user's certificate (PEM; the manifest's `users.NAME.certificate`), with any chain.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl UserArgs {
    /// The identity to present, if --cert and --key were given.
    pub(crate) fn identity(&self) -> Result<Option<ClientIdentity>> {
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Ok(Some(ClientIdentity::load(c, k)?)),
            _ => Ok(None),
        }
    }
}

/// A client for a verified coordinator (pinned to its saved root CA), as `user` if given.
pub(crate) fn pinned_client(
    home: &Path,
    coordinator: &CoordinatorArg,
    user: Option<&UserArgs>,
) -> Result<(Client, Saved)> {
    let address = coordinator.address()?;
    let saved = Saved::load(home, &address)?;
    let identity = match user {
        Some(u) => u.identity()?,
        None => None,
    };
    let client = Client::new(&address, &saved.trust(), identity)?;
    Ok((client, saved))
}

/// The client error in an error's chain, if any.
pub(crate) fn find_client_error(err: &anyhow::Error) -> Option<&ClientError> {
    err.chain().find_map(|e| e.downcast_ref::<ClientError>())
}

/// The coordinator's error answer in an error's chain, if any.
pub(crate) fn find_api_error(err: &anyhow::Error) -> Option<&ApiError> {
    find_client_error(err).and_then(ClientError::api)
}

/// Prints the coordinator's error answer: `error: …` and its details on stderr, or the JSON
/// error on stdout.
pub(crate) fn print_api_error(api: &ApiError, format: Format) {
    match format {
        Format::Human => {
            eprintln!("error: {api}");
            if let Some(f) = &api.field {
                eprintln!("  field: {f}");
            }
            for line in api.detail_lines() {
                eprintln!("  - {line}");
            }
        }
        Format::Json => {
            let doc = serde_json::json!({"error": {
                "status": api.status,
                "code": api.code_text(),
                "message": api.message,
                "field": api.field,
                "details": api.details,
            }});
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
    }
}

/// Prints a coordinator error (an answer or a transport failure) if `err` holds one; false when
/// it does not (the caller prints it the usual way).
pub(crate) fn print_client_error(err: &anyhow::Error, format: Format) -> bool {
    let Some(client_error) = find_client_error(err) else {
        return false;
    };
    let t = match client_error {
        ClientError::Api(api) => {
            print_api_error(api, format);
            return true;
        }
        ClientError::Transport(t) => t,
        _ => return false,
    };
    match format {
        Format::Human => {
            let top = err.to_string();
            if top != *t {
                eprintln!("error: {top}");
                eprintln!("  caused by: {t}");
            } else {
                eprintln!("error: {t}");
            }
            eprintln!(
                "  (the coordinator could not be reached or its TLS certificate was refused)"
            );
        }
        Format::Json => {
            let doc = serde_json::json!({"error": {"code": "transport", "message": err.to_string(),
                "causes": [t]}});
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
    }
    true
}
