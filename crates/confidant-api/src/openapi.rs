//! The OpenAPI 3.1 document of `/api/v1`, generated from the message types of this crate, so
//! that the document and what the server and clients (de)serialize cannot drift apart.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::error::ErrorBody;
use crate::messages::*;

/// An HTTP method of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
}

impl Method {
    /// The method's name in OpenAPI (lower case).
    pub fn openapi_name(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
        }
    }

    /// The method's name in HTTP (upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone, without a client certificate.
    Anyone,
    /// A manifest user (client certificate), with the role the description names.
    User,
    /// A workload activation (its activation certificate) or a user with a role.
    WorkloadOrUser,
}

/// One operation of the API.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The method.
    pub method: Method,
    /// The path, with `{name}` parameters, starting with `/api/v1`.
    pub path: &'static str,
    /// Its `operationId`.
    pub id: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Who may call it.
    pub caller: Caller,
    /// The query's parameters, if any.
    query: Option<SchemaFn>,
    /// The JSON request body, if any (`POST manifest` takes text: see [`Operation::text_body`]).
    request: Option<SchemaFn>,
    /// Whether the body is a manifest in YAML or JSON text.
    pub text_body: bool,
    /// The success status.
    pub status: u16,
    /// The success answer's schema (`None`: the OpenAPI document itself).
    answer: Option<SchemaFn>,
}

const fn op(
    method: Method,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    caller: Caller,
) -> Operation {
    Operation {
        method,
        path,
        id,
        summary,
        caller,
        query: None,
        request: None,
        text_body: false,
        status: 200,
        answer: None,
    }
}

/// Every operation the coordinator serves, in the document's order.
pub fn operations() -> Vec<Operation> {
    use Caller::*;
    use Method::*;
    vec![
        Operation {
            answer: Some(schema::<Status>),
            ..op(
                Get,
                "/api/v1/status",
                "getStatus",
                "The coordinator's state, TEE and activations",
                Anyone,
            )
        },
        Operation {
            query: Some(schema::<AttestationQuery>),
            answer: Some(schema::<Attestation>),
            ..op(
                Get,
                "/api/v1/attestation",
                "getAttestation",
                "Evidence binding the client's nonce, the manifest hash and the root CA",
                Anyone,
            )
        },
        Operation {
            answer: Some(schema::<ImageKey>),
            ..op(
                Get,
                "/api/v1/image-key",
                "getImageKey",
                "The coordinator's image key (layers are wrapped for it)",
                Anyone,
            )
        },
        Operation {
            query: Some(schema::<ManifestQuery>),
            answer: Some(schema::<ManifestRecord>),
            ..op(
                Get,
                "/api/v1/manifest",
                "getManifest",
                "A manifest version, signed and chained",
                Anyone,
            )
        },
        Operation {
            text_body: true,
            status: 201,
            answer: Some(schema::<ManifestSet>),
            ..op(
                Post,
                "/api/v1/manifest",
                "setManifest",
                "Set a new manifest (YAML or JSON); the first needs no client certificate",
                User,
            )
        },
        Operation {
            request: Some(schema::<SvnUpdate>),
            status: 201,
            answer: Some(schema::<ManifestSet>),
            ..op(
                Post,
                "/api/v1/packages/{name}/svn",
                "updateSvn",
                "Raise a package's minimum SVN (role `update-svn` on `packages`)",
                User,
            )
        },
        Operation {
            answer: Some(schema::<Nonce>),
            ..op(
                Post,
                "/api/v1/nonce",
                "issueNonce",
                "A one-time nonce for an activation",
                Anyone,
            )
        },
        Operation {
            request: Some(schema::<ActivateRequest>),
            answer: Some(schema::<Activation>),
            ..op(
                Post,
                "/api/v1/activate",
                "activate",
                "Verify a workload's evidence; release its certificate, parameters and keys",
                Anyone,
            )
        },
        Operation {
            answer: Some(schema::<SecretView>),
            ..op(
                Get,
                "/api/v1/secrets/{name}",
                "getSecret",
                "A secret's value (role `read` on `secrets`)",
                User,
            )
        },
        Operation {
            request: Some(schema::<SecretPut>),
            answer: Some(schema::<SecretSet>),
            ..op(
                Put,
                "/api/v1/secrets/{name}",
                "putSecret",
                "Set a `plain` secret (role `write` on `secrets`)",
                User,
            )
        },
        Operation {
            answer: Some(schema::<VolumeState>),
            ..op(
                Get,
                "/api/v1/volumes/{name}/state",
                "getVolumeState",
                "A protected volume's latest committed version and root",
                WorkloadOrUser,
            )
        },
        Operation {
            request: Some(schema::<VolumeCommit>),
            answer: Some(schema::<VolumeState>),
            ..op(
                Post,
                "/api/v1/volumes/{name}/state",
                "commitVolumeState",
                "Commit a volume's next version (compare-and-swap)",
                WorkloadOrUser,
            )
        },
        Operation {
            query: Some(schema::<AuditQuery>),
            answer: Some(schema::<AuditPage>),
            ..op(
                Get,
                "/api/v1/audit",
                "getAudit",
                "The audit log (any user)",
                User,
            )
        },
        Operation {
            answer: Some(schema::<RecoveryShares>),
            ..op(
                Get,
                "/api/v1/recovery",
                "getRecoveryShares",
                "The owners' encrypted recovery shares",
                Anyone,
            )
        },
        Operation {
            request: Some(schema::<RecoverRequest>),
            answer: Some(schema::<RecoverProgress>),
            ..op(
                Post,
                "/api/v1/recover",
                "recover",
                "Send one decrypted recovery share (state `recovery` only)",
                Anyone,
            )
        },
        op(
            Get,
            "/api/v1/openapi.json",
            "getOpenApi",
            "This document",
            Anyone,
        ),
    ]
}

/// The error statuses an operation may answer, besides 500.
fn error_statuses(o: &Operation) -> Vec<u16> {
    let mut out = Vec::new();
    if o.request.is_some() || o.query.is_some() || o.text_body || o.path.contains('{') {
        out.push(400);
    }
    match o.caller {
        Caller::Anyone => {}
        Caller::User | Caller::WorkloadOrUser => out.extend([401, 403]),
    }
    if o.path.contains('{') || o.id == "getManifest" || o.id == "activate" {
        out.push(404);
    }
    if o.id != "getOpenApi" && o.id != "getStatus" {
        out.push(409);
    }
    if matches!(
        o.id,
        "activate" | "setManifest" | "updateSvn" | "recover" | "commitVolumeState"
    ) {
        out.push(422);
    }
    out
}

/// A query's properties as OpenAPI parameters.
fn query_parameters(g: &mut SchemaGenerator, f: SchemaFn) -> Vec<Value> {
    let s = f(g);
    let resolved = resolve(g, &s);
    let props = resolved
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    props
        .into_iter()
        .map(|(name, mut schema)| {
            let description = schema
                .as_object_mut()
                .and_then(|o| o.remove("description"))
                .unwrap_or(Value::Null);
            json!({
                "name": name,
                "in": "query",
                "required": false,
                "description": description,
                "schema": schema,
            })
        })
        .collect()
}

/// The schema a `$ref` points to in the generator's definitions (or the schema itself).
fn resolve(g: &mut SchemaGenerator, s: &Schema) -> Value {
    let v = s.as_value().clone();
    if let Some(r) = v.get("$ref").and_then(Value::as_str)
        && let Some(name) = r.strip_prefix("#/components/schemas/")
        && let Some(def) = g.definitions().get(name)
    {
        return def.clone();
    }
    v
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// The OpenAPI 3.1 document of the API, generated from the types of this crate.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let error = schema::<ErrorBody>(&mut g).to_value();
    let mut paths: Map<String, Value> = Map::new();
    for o in operations() {
        let mut operation = Map::new();
        operation.insert("operationId".into(), o.id.into());
        operation.insert("summary".into(), o.summary.into());
        if o.caller == Caller::Anyone {
            operation.insert("security".into(), json!([{}]));
        }
        let mut parameters = Vec::new();
        for segment in o.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                parameters.push(json!({
                    "name": name, "in": "path", "required": true,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"},
                }));
            }
        }
        if let Some(q) = o.query {
            parameters.extend(query_parameters(&mut g, q));
        }
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(r) = o.request {
            let s = r(&mut g).to_value();
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": json_content(s)}),
            );
        } else if o.text_body {
            let manifest = schema::<confidant_manifest::Manifest>(&mut g).to_value();
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": {
                    "application/json": {"schema": manifest},
                    "application/yaml": {"schema": {"type": "string"}},
                }}),
            );
        }
        let mut responses = Map::new();
        let answer = match o.answer {
            Some(a) => a(&mut g).to_value(),
            None => json!({"type": "object"}),
        };
        responses.insert(
            o.status.to_string(),
            json!({"description": "Success", "content": json_content(answer)}),
        );
        for status in error_statuses(&o).into_iter().chain([500]) {
            responses.insert(
                status.to_string(),
                json!({"description": status_text(status), "content": json_content(error.clone())}),
            );
        }
        operation.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(o.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(e) = entry.as_object_mut() {
            e.insert(o.method.openapi_name().into(), Value::Object(operation));
        }
    }
    let schemas = g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Confidant coordinator API",
            "version": "1",
            "description": "The coordinator's HTTPS API; see docs/formats/coordinator-api.md. Generated from the confidant-api crate's types.",
        },
        "servers": [{"url": "https://127.0.0.1:4433"}],
        "security": [{"clientCertificate": []}, {}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"clientCertificate": {"type": "mutualTLS",
                "description": "A manifest user's certificate, or a workload's activation certificate"}},
        },
    })
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Malformed request",
        401 => "No client certificate, or one no manifest user has",
        403 => "Not allowed",
        404 => "Not found",
        409 => "Conflicts with the coordinator's state",
        422 => "Rejected (evidence, nonce, binding, manifest, key, share, version)",
        _ => "The coordinator failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_in_the_document_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut rest = text.as_str();
        let mut count = 0;
        while let Some(i) = rest.find("\"$ref\":\"#/components/schemas/") {
            let tail = &rest[i + "\"$ref\":\"#/components/schemas/".len()..];
            let end = tail.find('"').unwrap();
            let name = &tail[..end];
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
            count += 1;
            rest = &tail[end..];
        }
        assert!(count > 20, "only {count} references");
        for name in [
            "Error",
            "Activation",
            "Evidence",
            "VolumeCommit",
            "Manifest",
        ] {
            assert!(schemas.contains_key(name), "no schema {name}");
        }
    }

    #[test]
    fn every_operation_is_in_the_document_once() {
        let doc = document();
        let ops = operations();
        let mut n = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    ops.iter()
                        .any(|o| o.path == path && o.method.openapi_name() == method),
                    "{method} {path}"
                );
                n += 1;
            }
        }
        assert_eq!(n, ops.len());
        // Query parameters come from the query types.
        let attestation = &doc["paths"]["/api/v1/attestation"]["get"]["parameters"];
        assert_eq!(attestation[0]["name"], "nonce");
        assert_eq!(
            doc["paths"]["/api/v1/secrets/{name}"]["get"]["parameters"][0]["in"],
            "path"
        );
    }
}
