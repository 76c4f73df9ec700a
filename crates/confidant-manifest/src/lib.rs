//! The Confidant manifest: what may run, with which secrets, for whom.
//!
//! A [`Manifest`] is written in YAML or JSON (`apiVersion: confidant/v1`). Parsing refuses
//! unknown fields and names the path of the offending one; [`Manifest::check`] then validates
//! the manifest *whole* and returns every problem as a [`ValidationError`] (`path: message`),
//! including a dry run of every parameter template against placeholder secrets.
//!
//! - [`model`]: the types (packages, workloads, secrets, users, roles, recovery, volumes, config).
//! - [`check`](Manifest::check): the validation rules.
//! - [`template`]: rendering a workload's files, env and args for an activation.
//! - [`Manifest::canonical_hash`]: SHA-256 over the canonical JSON form, for report-data binding.
//! - [`schema`]: the JSON Schema of the format.
//!
//! The manifest is not secret; see `docs/formats/manifest.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod check;
pub use check::VOLUME_KEY_BYTES;
pub mod model;
mod syntax;
pub mod template;

use std::fmt;

use sha2::{Digest, Sha256};

pub use model::{
    API_VERSION, Config, EgressPeer, IngressPort, Manifest, Mesh, Package, Recovery, Role, Rule,
    Secret, UpdatePolicy, User, Volume, VolumeMount, VolumePolicy, Workload,
};
pub use template::{
    Builtins, RenderError, RenderedParameters, SecretValue, SecretValues, render_parameters,
};

/// One problem in a manifest: where it is and what is wrong. Displayed as `path: message`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidationError {
    /// Dotted path of the field (`workloads.web.files./etc/x`, `roles.ops.rules[0].actions[1]`);
    /// `.` for the document itself.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl ValidationError {
    /// Builds an error.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ValidationError {}

fn parse_error(path: String, message: String) -> ValidationError {
    let path = if path.is_empty() || path == "?" {
        ".".to_string()
    } else {
        path
    };
    // serde_yaml_ng prefixes its own (shorter) path; ours from serde_path_to_error is kept.
    let message = match message.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') && path.starts_with(head) => rest.to_string(),
        _ => message,
    };
    ValidationError::new(path, message)
}

impl Manifest {
    /// Parses a manifest from YAML. Unknown fields and wrong types are refused with their path.
    /// This only parses: call [`Manifest::check`] before trusting the result.
    pub fn from_yaml(text: &str) -> Result<Manifest, ValidationError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| parse_error(e.path().to_string(), e.into_inner().to_string()))
    }

    /// Parses a manifest from JSON. Unknown fields and wrong types are refused with their path.
    pub fn from_json(text: &str) -> Result<Manifest, ValidationError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let m: Manifest = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| parse_error(e.path().to_string(), e.into_inner().to_string()))?;
        de.end()
            .map_err(|e| ValidationError::new(".", e.to_string()))?;
        Ok(m)
    }

    /// Parses JSON when the document starts with `{`, YAML otherwise.
    pub fn parse(text: &str) -> Result<Manifest, ValidationError> {
        if text.trim_start().starts_with('{') {
            Manifest::from_json(text)
        } else {
            Manifest::from_yaml(text)
        }
    }

    /// The manifest's canonical JSON form: the parsed manifest (defaults filled in, absent
    /// optional fields omitted) serialized as JSON with object keys sorted by their UTF-8 bytes,
    /// no insignificant whitespace, strings escaped as `serde_json` escapes them (only `"`, `\`
    /// and control characters), numbers as integers. The same manifest in YAML or JSON, with
    /// any key order or formatting, has the same canonical form.
    pub fn canonical_json(&self) -> String {
        // Serializing these types to a JSON value cannot fail: all map keys are strings.
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut out = String::new();
        write_canonical(&value, &mut out);
        out
    }

    /// SHA-256 over [`Manifest::canonical_json`]: the manifest's identity, which the
    /// coordinator binds into its attestation report data.
    pub fn canonical_hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_json().as_bytes()).into()
    }
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The JSON Schema (2020-12) of the manifest format, as a JSON value.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Manifest)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_nested_keys_and_escapes_strings() {
        let v = serde_json::json!({"b": {"z": 1, "a": [true, null]}, "a": "q\"\n"});
        let mut out = String::new();
        write_canonical(&v, &mut out);
        assert_eq!(out, r#"{"a":"q\"\n","b":{"a":[true,null],"z":1}}"#);
    }

    #[test]
    fn validation_error_displays_path_then_message() {
        let e = ValidationError::new("workloads.web.files./etc/x", "unknown secret 'db'");
        assert_eq!(
            e.to_string(),
            "workloads.web.files./etc/x: unknown secret 'db'"
        );
    }

    #[test]
    fn parse_picks_json_or_yaml() {
        assert!(Manifest::parse(" {\"apiVersion\": \"confidant/v1\"}").is_ok());
        assert!(Manifest::parse("apiVersion: confidant/v1").is_ok());
        let e = Manifest::parse("{\"apiVersion\": \"confidant/v1\"} trailing").unwrap_err();
        assert_eq!(e.path, ".");
    }
}
