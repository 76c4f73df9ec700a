//! `confidant recover`: a recovery owner sends their share of the state's data key.
//!
//! In recovery the coordinator's root CA is sealed away, so nothing saved can be pinned. The
//! client trusts on first use, within one client: it attests the coordinator on this connection
//! (the evidence must bind the nonce and the public key of the TLS certificate it presents, as
//! `confidant verify` checks), then fetches the encrypted shares, decrypts the owner's with
//! their private key, and posts it over the same client, which refuses any other certificate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use confidant_coordinator::recovery::{self, EncryptedShare, RecoveryError, Share};
use serde_json::json;
use zeroize::Zeroizing;

use confidant_client::Trust;

use crate::client::{Address, Client, CoordinatorArg, Saved};
use crate::verify::{self, PolicyArgs, Report as _};
use crate::{Format, Outcome};

/// Arguments of `confidant recover`.
#[derive(Debug, Args)]
pub(crate) struct RecoverArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The recovery owner's RSA private key (PEM: PKCS#8 `PRIVATE KEY` or PKCS#1).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// Runs `confidant recover`.
pub(crate) fn run(args: RecoverArgs, home: &Path, format: Format) -> Result<Outcome> {
    let address = args.coordinator.address()?;
    let private_key = Zeroizing::new(
        std::fs::read_to_string(&args.key)
            .with_context(|| format!("reading {}", args.key.display()))?,
    );
    // Without --reference-values, the TEE and measurement recorded by an earlier
    // `confidant verify` of this coordinator are expected.
    let saved = Saved::load(home, &address).ok();
    let refs = args
        .policy
        .reference_values(saved.as_ref().and_then(|s| s.info.as_ref()))?;
    let sim_keys = args.policy.sim_keys(home)?;
    let client = Client::new(&address, &Trust::FirstContact, None)?;
    let mut att = verify::attest(&client, home, &refs, &sim_keys)?;
    if args.policy.skips_measurement() {
        att.warnings.push(
            "the measurement was NOT checked (--insecure-skip-measurement): any code passes".into(),
        );
    }
    if !att.accepted() {
        report(format, &address, &att, None);
        return Ok(Outcome::Rejected);
    }

    let shares = client
        .recovery_shares()
        .context("fetching the recovery shares")?;
    let share = find_share(&shares, &private_key, &args.key)?;
    let answer = client
        .recover(share.as_bytes())
        .context("sending the recovery share")?;
    report(format, &address, &att, Some(&answer));
    Ok(Outcome::Ok)
}

/// Decrypts the share of `GET recovery` that is encrypted to `private_key`.
fn find_share(
    shares: &confidant_api::RecoveryShares,
    private_key: &str,
    key_path: &Path,
) -> Result<Share> {
    let list = &shares.shares;
    let mut own_id: Option<String> = None;
    for (i, s) in list.iter().enumerate() {
        let encrypted = EncryptedShare {
            owner_key_id: s.owner_key_id.clone(),
            ciphertext: B64
                .decode(s.ciphertext.trim())
                .with_context(|| format!("recovery share #{i}: the ciphertext is not base64"))?,
        };
        match recovery::decrypt_share(&encrypted, private_key) {
            Ok(share) => return Ok(share),
            Err(RecoveryError::WrongOwner { got, .. }) => own_id = Some(got),
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!("decrypting recovery share #{i} with {}", key_path.display())
                });
            }
        }
    }
    match own_id {
        Some(id) => bail!(
            "none of the coordinator's {} recovery shares is for the key in {} (key id {id})",
            list.len(),
            key_path.display()
        ),
        None => bail!("the coordinator holds no recovery shares"),
    }
}

/// Prints the attestation and, once sent, what the coordinator said about the share.
fn report(
    format: Format,
    address: &Address,
    att: &verify::Attestation,
    answer: Option<&confidant_api::RecoverProgress>,
) {
    match format {
        Format::Json => {
            let mut doc = json!({"attestation": att.to_json(address)});
            if let Some(a) = answer {
                doc["recovery"] = serde_json::to_value(a).unwrap_or_default();
            }
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Human => {
            att.print_human(address, &[]);
            let Some(a) = answer else {
                return;
            };
            let state = a.state.as_str();
            match (a.received, a.threshold) {
                (Some(r), Some(t)) => {
                    crate::outln!("share accepted: {r} of {t} received (state: {state})")
                }
                _ => crate::outln!("share accepted; state: {state}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_share_needs_a_share() {
        let none = confidant_api::RecoveryShares {
            threshold: 1,
            shares: vec![],
        };
        let err = find_share(&none, "", Path::new("k.pem")).unwrap_err();
        assert!(err.to_string().contains("no recovery shares"), "{err}");
    }
}
