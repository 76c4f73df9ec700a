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
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::{API, Address, Client, CoordinatorArg, Saved, Trust};
use crate::verify::{self, PolicyArgs};
use crate::{Format, Outcome};

/// Arguments of `confidant recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The recovery owner's RSA private key (PEM: PKCS#8 `PRIVATE KEY` or PKCS#1).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// Runs `confidant recover`.
pub fn run(args: RecoverArgs, home: &Path, format: Format) -> Result<Outcome> {
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
        .reference_values(saved.as_ref().map(|s| &s.info))?;
    let sim_keys = args.policy.sim_keys(home)?;
    let client = Client::new(&address, &Trust::FirstContact, None)?;
    let mut att = verify::attest(&client, &address, home, &refs, &sim_keys)?;
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
        .get(&format!("{API}/recovery"))
        .context("fetching the recovery shares")?
        .body;
    let share = find_share(&shares, &private_key, &args.key)?;
    let body = json!({"share": B64.encode(share.as_bytes())});
    let answer = client
        .post(&format!("{API}/recover"), &body)
        .context("sending the recovery share")?;
    report(format, &address, &att, Some(&answer.body));
    Ok(Outcome::Ok)
}

/// Decrypts the share of `GET recovery` that is encrypted to `private_key`.
fn find_share(shares: &Value, private_key: &str, key_path: &Path) -> Result<Share> {
    let list = shares
        .get("shares")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the coordinator's recovery answer has no `shares` list"))?;
    let mut own_id: Option<String> = None;
    for (i, s) in list.iter().enumerate() {
        let key_id = s
            .get("owner_key_id")
            .or_else(|| s.get("key_id"))
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("recovery share #{i} has no key id"))?;
        let ciphertext = s
            .get("ciphertext")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("recovery share #{i} has no ciphertext"))?;
        let encrypted = EncryptedShare {
            owner_key_id: key_id.to_string(),
            ciphertext: B64
                .decode(ciphertext.trim())
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
fn report(format: Format, address: &Address, att: &verify::Attestation, answer: Option<&Value>) {
    match format {
        Format::Json => {
            let mut doc = json!({"attestation": att.to_json(address)});
            if let Some(a) = answer {
                doc["recovery"] = a.clone();
            }
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Human => {
            att.print_human(address, &[]);
            let Some(a) = answer else {
                return;
            };
            let state = a.get("state").and_then(Value::as_str).unwrap_or("-");
            match (a.get("received"), a.get("threshold")) {
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
    fn find_share_needs_a_list() {
        let err = find_share(&json!({}), "", Path::new("k.pem")).unwrap_err();
        assert!(err.to_string().contains("no `shares` list"), "{err}");
        let err = find_share(&json!({"shares": []}), "", Path::new("k.pem")).unwrap_err();
        assert!(err.to_string().contains("no recovery shares"), "{err}");
    }
}
