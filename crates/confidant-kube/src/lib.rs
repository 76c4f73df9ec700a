//! Kubernetes YAML made confidential, offline and idempotently: the library of
//! `confidant generate`.
//!
//! [`generate`] takes one file's YAML stream. Every document that is a pod or carries a pod
//! template (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
//! CronJob) and opted in — the template annotation `confidant/workload: NAME`, or a
//! confidential runtime class already set — is checked for what a confidential pod may not
//! have (host namespaces, hostPath, privileged containers, Kubernetes Secrets), and gets:
//! Confidant's init container first (it attests the pod and writes the workload's credentials
//! into a memory volume), that volume mounted read-only at `/confidant` in every container,
//! the mesh sidecar when the template asks for it (`confidant/mesh: "true"`), the platform's
//! runtime class, and every image pinned by digest. Every other document is written back byte
//! for byte. Running it on its own output changes nothing.
//!
//! Nothing here touches the network or the disk: digests come from a [`Resolve`] the caller
//! supplies (the CLI asks the registry).

#![forbid(unsafe_code)]

pub mod platform;
pub mod pod;
pub mod policy;
pub mod stream;

use std::fmt;

pub use platform::Platform;
pub use pod::ConfidentialPod;
pub use policy::ImageDefaults;

/// How the pods are made confidential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where the pods run.
    pub platform: Platform,
    /// The coordinator as pods reach it (`HOST:PORT`, e.g. `confidant.confidant.svc:4433`).
    pub coordinator: String,
    /// SHA-256 (hex) of the coordinator's root CA certificate (DER): the init container trusts
    /// only a coordinator whose chain ends in it.
    pub coordinator_root_sha256: String,
    /// Confidant's own image, pinned by digest (`repo@sha256:…`), for the init container and
    /// the sidecar.
    pub confidant_image: String,
}

/// Finds an image's digest and what it runs (the CLI asks its registry).
pub trait Resolve {
    /// The digest (`sha256:…`) of the manifest (or index) `image` names.
    fn digest(&self, image: &str) -> Result<String, String>;

    /// The Entrypoint, Cmd and Env of the pinned `image` (for linux/amd64), needed when a
    /// container gives no `command`: the policy pins the process's arguments exactly.
    fn image_defaults(&self, image: &str) -> Result<ImageDefaults, String>;
}

/// A resolver for when every image must already be pinned: it refuses every lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl Resolve for Offline {
    fn digest(&self, _image: &str) -> Result<String, String> {
        Err("not pinned, and looking digests up is off (--offline): write the image as NAME@sha256:…".into())
    }

    fn image_defaults(&self, _image: &str) -> Result<ImageDefaults, String> {
        Err("the registry is not asked (--offline): give the container a `command`, or run once online (later runs reuse what the policy recorded)".into())
    }
}

/// Something a confidential pod may not have, or a document that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The file (and document number) it is in.
    pub location: String,
    /// The object (`Deployment/web`), or empty for a document that did not parse.
    pub object: String,
    /// The field at fault (`spec.template.spec.volumes[1].hostPath`).
    pub field: String,
    /// What was expected and what was found, and what to do instead.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location)?;
        if !self.object.is_empty() {
            write!(f, ": {}", self.object)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One file, generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The new text of the file.
    pub text: String,
    /// Whether it differs from the input.
    pub changed: bool,
    /// The confidential pods in it, in order.
    pub pods: Vec<ConfidentialPod>,
}

/// Makes the opted-in pods of one file (`name` for messages, `text` its YAML stream)
/// confidential. Refused with every problem found in the file, each naming its document,
/// object and field.
pub fn generate(
    name: &str,
    text: &str,
    options: &Options,
    resolve: &dyn Resolve,
) -> Result<Generated, Vec<Refusal>> {
    let mut docs = stream::split(text);
    let mut refusals = Vec::new();
    let mut pods = Vec::new();
    for (i, doc) in docs.iter_mut().enumerate() {
        if doc.is_blank() {
            continue;
        }
        let location = format!("{name} (document {})", i + 1);
        let mut value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&doc.text) {
            Ok(v) => v,
            Err(e) => {
                refusals.push(Refusal {
                    location,
                    object: String::new(),
                    field: String::new(),
                    message: format!("expected a YAML document: {e}"),
                });
                continue;
            }
        };
        let Some(pod) = pod::rewrite(&mut value, &location, options, resolve, &mut refusals) else {
            continue;
        };
        let new_text = match serde_yaml_ng::to_string(&value) {
            Ok(t) => t,
            Err(e) => {
                refusals.push(Refusal {
                    location,
                    object: pod.object.clone(),
                    field: String::new(),
                    message: format!("writing the document back: {e}"),
                });
                continue;
            }
        };
        // An unchanged document keeps its text (and comments) exactly.
        let unchanged = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&doc.text)
            .is_ok_and(|old| old == value);
        if !unchanged {
            // The comment lines heading the document stay; comments inside it are lost with
            // its old text (the YAML is written anew).
            let head: String = doc
                .text
                .split_inclusive('\n')
                .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
                .collect();
            doc.text = head + &new_text;
        }
        pods.push(pod);
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let out = stream::join(&docs);
    Ok(Generated {
        changed: out != text,
        text: out,
        pods,
    })
}
