//! Who is asking, and what the manifest's roles let them do.

use std::collections::HashMap;

use confidant_manifest::Manifest;

use super::error::{CoreError, CoreResult};

/// The caller of an API request, as the transport authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No client certificate.
    Anonymous,
    /// A client certificate whose key the TLS handshake proved; identified by SHA-256 of its
    /// DER bytes. Users are matched by it.
    Certificate([u8; 32]),
    /// A workload activation: a client certificate this coordinator's CA issued at activation
    /// (it chains to the coordinator's root, is valid now, allows client authentication and
    /// names `confidant://workload/<workload>/<activation>`), whose key the handshake proved.
    Workload {
        /// The workload's name, as the certificate names it.
        workload: String,
        /// The activation's number, as the certificate names it.
        activation: String,
    },
}

/// Users by the SHA-256 of their certificate's DER bytes.
pub(crate) fn users_by_certificate(m: &Manifest) -> HashMap<[u8; 32], String> {
    let mut out = HashMap::new();
    for (name, user) in &m.users {
        // `check()` already refused certificates that do not parse.
        if let Ok(p) = pem::parse(user.certificate.as_bytes()) {
            let d = ring::digest::digest(&ring::digest::SHA256, p.contents());
            let mut h = [0u8; 32];
            h.copy_from_slice(d.as_ref());
            out.insert(h, name.clone());
        }
    }
    out
}

/// Whether `user` holds a role with a rule allowing `action` on `resource` (and on `name`, for
/// rules limited to names).
pub(crate) fn allowed(
    m: &Manifest,
    user: &str,
    resource: &str,
    name: Option<&str>,
    action: &str,
) -> bool {
    m.roles.values().any(|role| {
        role.users.iter().any(|u| u == user)
            && role.rules.iter().any(|rule| {
                rule.resource == resource
                    && rule.actions.iter().any(|a| a == action)
                    && (rule.names.is_empty()
                        || name.is_some_and(|n| rule.names.iter().any(|x| x == n)))
            })
    })
}

/// The user name of `who` in `users`, or 401.
pub(crate) fn user_of<'a>(
    users: &'a HashMap<[u8; 32], String>,
    who: &Principal,
    action: &str,
) -> CoreResult<&'a str> {
    match who {
        Principal::Certificate(h) => users
            .get(h)
            .map(String::as_str)
            .ok_or_else(|| CoreError::unauthenticated(action)),
        // Workload certificates are not users' (they are made per activation, after the
        // manifest that would have to pin them).
        Principal::Anonymous | Principal::Workload { .. } => {
            Err(CoreError::unauthenticated(action))
        }
    }
}

/// Checks that `user` may do `action` on `resource`/`name`, or 403 naming what is missing.
pub(crate) fn require(
    m: &Manifest,
    user: &str,
    resource: &str,
    name: Option<&str>,
    action: &str,
) -> CoreResult<()> {
    if allowed(m, user, resource, name, action) {
        Ok(())
    } else {
        let target = match name {
            Some(n) => format!("{resource} '{n}'"),
            None => resource.to_string(),
        };
        Err(CoreError::forbidden(format!(
            "user '{user}' holds no role allowing '{action}' on {target}"
        )))
    }
}
