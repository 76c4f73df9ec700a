//! Rendering a workload's parameters (files, env, args) for an activation.
//!
//! Templates are [minijinja](https://docs.rs/minijinja) (Jinja2 syntax) in strict-undefined
//! mode: naming a secret that does not exist, or an attribute a secret does not have, is an
//! error, never an empty string. The template context holds:
//!
//! - every secret by its name: symmetric keys as `{hex, base64}`; `cert-*` as `{cert, key,
//!   public_key}` (PEM); `plain` as `{value, base64}` (`value` only when the bytes are UTF-8);
//! - `confidant`: the built-ins `cert` (the workload's own mesh certificate, PEM, for the key
//!   the agent generated and never sends; apps that need a key in a file use a `cert-*` secret),
//!   `root_ca` (the coordinator's root CA, PEM), `coordinator` (its address) and
//!   `workload` (the workload's name).
//!
//! The same renderer dry-runs every template when a manifest is checked, with placeholder
//! values of every declared secret, so a manifest whose templates cannot render is refused.

use std::collections::BTreeMap;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value, json};

use crate::model::{Manifest, Secret, Workload};

/// The name of the built-ins object in templates; no secret may have this name.
pub const BUILTINS_NAME: &str = "confidant";

/// Instructions one template may execute: far above what any parameter template needs, far
/// below what would stall the coordinator (`{% for i in range(100000) %}…` twice nested).
pub const TEMPLATE_FUEL: u64 = 100_000;

/// Bytes one rendered template may produce.
pub const MAX_RENDERED_LEN: usize = 4 << 20;

/// Names minijinja defines itself (functions and tests' globals) that are not secrets.
const TEMPLATE_GLOBALS: [&str; 4] = ["range", "dict", "debug", "namespace"];

/// A secret's value, as the coordinator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// A symmetric key's bytes.
    SymmetricKey(Vec<u8>),
    /// A key with its certificate, all PEM.
    Certificate {
        /// The certificate.
        cert: String,
        /// The private key (PKCS#8).
        key: String,
        /// The public key (SubjectPublicKeyInfo).
        public_key: String,
    },
    /// A value a user set.
    Plain(Vec<u8>),
}

/// Secret values by secret name.
pub type SecretValues = BTreeMap<String, SecretValue>;

/// The values every template may use besides secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Builtins {
    /// The workload's own certificate (PEM), issued at activation.
    pub cert: String,
    /// The coordinator's root CA certificate (PEM).
    pub root_ca: String,
    /// The coordinator's address (`host:port`).
    pub coordinator: String,
}

/// A workload's parameters after rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedParameters {
    /// File contents by absolute path.
    pub files: BTreeMap<String, String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Command-line arguments.
    pub args: Vec<String>,
}

/// A template that could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct RenderError {
    /// Which template, relative to the workload: `files./etc/x`, `env.DB_URL`, `args[2]`.
    pub location: String,
    /// What went wrong: `unknown secret 'db'`, or minijinja's message.
    pub message: String,
}

fn secret_context(value: &SecretValue) -> Value {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match value {
        SecretValue::SymmetricKey(k) => json!({"hex": hex::encode(k), "base64": b64(k)}),
        SecretValue::Certificate {
            cert,
            key,
            public_key,
        } => json!({"cert": cert, "key": key, "public_key": public_key}),
        SecretValue::Plain(bytes) => {
            let mut m = Map::new();
            if let Ok(text) = std::str::from_utf8(bytes) {
                m.insert("value".into(), Value::String(text.to_string()));
            }
            m.insert("base64".into(), Value::String(b64(bytes)));
            Value::Object(m)
        }
    }
}

/// A placeholder value of a declared secret's type, for dry runs.
pub(crate) fn placeholder(secret: &Secret) -> SecretValue {
    match secret {
        Secret::SymmetricKey { size, .. } => {
            SecretValue::SymmetricKey(vec![0; (*size as usize / 8).min(128)])
        }
        Secret::CertEcdsa { .. } | Secret::CertEd25519 { .. } | Secret::CertRsa { .. } => {
            SecretValue::Certificate {
                cert: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
                key: "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n".into(),
                public_key: "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".into(),
            }
        }
        Secret::Plain {} => SecretValue::Plain(b"placeholder".to_vec()),
    }
}

/// Renders every template of `workload`, stopping at the first error.
pub fn render_parameters(
    workload_name: &str,
    workload: &Workload,
    secrets: &SecretValues,
    builtins: &Builtins,
) -> Result<RenderedParameters, RenderError> {
    let mut out = RenderedParameters::default();
    let mut first_error = None;
    render_each(
        workload_name,
        workload,
        secrets,
        builtins,
        |loc, result| match result {
            Ok(text) => match loc {
                Location::File(p) => {
                    out.files.insert(p.to_string(), text);
                }
                Location::Env(k) => {
                    out.env.insert(k.to_string(), text);
                }
                Location::Arg(_) => out.args.push(text),
            },
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        },
    );
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Dry-runs every template of every workload against placeholder values of the manifest's
/// secrets; returns every error with the workload's name.
pub(crate) fn dry_run(manifest: &Manifest) -> Vec<(String, RenderError)> {
    let secrets: SecretValues = manifest
        .secrets
        .iter()
        .map(|(name, s)| (name.clone(), placeholder(s)))
        .collect();
    let builtins = Builtins {
        cert: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        root_ca: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        coordinator: "coordinator.invalid:4433".into(),
    };
    let mut errors = Vec::new();
    for (name, workload) in &manifest.workloads {
        render_each(name, workload, &secrets, &builtins, |_, result| {
            if let Err(e) = result {
                errors.push((name.clone(), e));
            }
        });
    }
    errors
}

enum Location<'a> {
    File(&'a str),
    Env(&'a str),
    Arg(usize),
}

impl Location<'_> {
    fn describe(&self) -> String {
        match self {
            Location::File(p) => format!("files.{p}"),
            Location::Env(k) => format!("env.{k}"),
            Location::Arg(i) => format!("args[{i}]"),
        }
    }
}

fn render_each(
    workload_name: &str,
    workload: &Workload,
    secrets: &SecretValues,
    builtins: &Builtins,
    mut sink: impl FnMut(Location<'_>, Result<String, RenderError>),
) {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Files keep their last newline as written (YAML `|` blocks end with one; config parsers
    // such as memcached's password file need it).
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(TEMPLATE_FUEL));
    // Templates produce file contents and arguments, not HTML: no escaping.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let mut ctx = Map::new();
    for (name, value) in secrets {
        ctx.insert(name.clone(), secret_context(value));
    }
    ctx.insert(
        BUILTINS_NAME.into(),
        json!({
            "cert": builtins.cert,
            "root_ca": builtins.root_ca,
            "coordinator": builtins.coordinator,
            "workload": workload_name,
        }),
    );
    let ctx = Value::Object(ctx);
    let templates = workload
        .files
        .iter()
        .map(|(p, t)| (Location::File(p), t))
        .chain(workload.env.iter().map(|(k, t)| (Location::Env(k), t)))
        .chain(
            workload
                .args
                .iter()
                .enumerate()
                .map(|(i, t)| (Location::Arg(i), t)),
        );
    for (loc, source) in templates {
        let result = render_one(&env, source, &ctx).map_err(|message| RenderError {
            location: loc.describe(),
            message,
        });
        sink(loc, result);
    }
}

fn render_one(env: &Environment<'_>, source: &str, ctx: &Value) -> Result<String, String> {
    let tmpl = env
        .template_from_str(source)
        .map_err(|e| format!("template syntax: {}", describe(&e)))?;
    let mut out = LimitedWriter(Vec::new());
    match tmpl.render_captured_to(ctx, &mut out) {
        // minijinja writes only `str`s, so the bytes are UTF-8.
        Ok(_) => Ok(String::from_utf8_lossy(&out.0).into_owned()),
        Err(e) if e.kind() == ErrorKind::WriteFailure => Err(format!(
            "template: renders to more than {MAX_RENDERED_LEN} bytes"
        )),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(format!(
            "template: runs more than {TEMPLATE_FUEL} instructions"
        )),
        Err(e) if e.kind() == ErrorKind::UndefinedError => {
            let Value::Object(known) = ctx else {
                return Err(describe(&e));
            };
            let mut unknown: Vec<String> = tmpl
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !known.contains_key(v) && !TEMPLATE_GLOBALS.contains(&v.as_str()))
                .collect();
            unknown.sort();
            if unknown.is_empty() {
                Err(format!("template: {}", describe(&e)))
            } else {
                let names: Vec<String> = unknown.iter().map(|n| format!("'{n}'")).collect();
                let noun = if names.len() == 1 {
                    "secret"
                } else {
                    "secrets"
                };
                Err(format!("unknown {noun} {}", names.join(", ")))
            }
        }
        Err(e) => Err(format!("template: {}", describe(&e))),
    }
}

/// Collects output up to [`MAX_RENDERED_LEN`] bytes, then fails the render.
struct LimitedWriter(Vec<u8>);

impl std::io::Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_LEN {
            return Err(std::io::Error::other("rendered output too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// minijinja's message with its line, without the `<string>` template name.
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}
