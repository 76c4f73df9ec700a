//! The HTTPS API: translates requests into [`crate::core`] calls and their errors into honest
//! status codes. Nothing here decides anything; see `docs/formats/coordinator-api.md`.

mod body;
mod metrics;
pub mod tls;

use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_api as wire;
use confidant_api::ErrorCode;
use confidant_attest::attester::Attester;
use confidant_attest::binding::{Purpose, report_data};

use crate::core::{
    ActivateRequest, Collected, CommitVolume, Coordinator, CoreError, Principal, RecoveryShares,
};
use crate::recovery::Share;
use crate::store::{DataKey, Store};

pub use self::body::BodyLimits;
pub use self::metrics::{ActivationLabels, LabelText, Metrics, RequestLabels, VolumeCommitLabels};

pub use confidant_api::MAX_BODY;

/// The OpenAPI 3.1 document served at `/api/v1/openapi.json`: generated once from the
/// `confidant-api` types ([`confidant_api::openapi::document`]).
pub fn openapi_document() -> &'static [u8] {
    static DOC: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_vec_pretty(&confidant_api::openapi::document()).unwrap_or_default()
    })
}

/// Opens the coordinator with a recovered data key (the server knows how).
pub type Reopen<S> = Arc<dyn Fn(DataKey) -> Result<Coordinator<S>, String> + Send + Sync>;

/// Makes the TLS configuration (and its leaf's SPKI DER) for an opened coordinator.
pub type TlsFor<S> = Arc<
    dyn Fn(&Coordinator<S>) -> Result<(Arc<rustls::ServerConfig>, Vec<u8>), String> + Send + Sync,
>;

/// The coordinator while its state cannot be unsealed.
pub struct RecoveryMode<S: Store> {
    /// The owners' encrypted shares, kept outside the sealed state (`None`: there is no way
    /// to recover).
    pub shares: Option<RecoveryShares>,
    /// The decrypted shares received so far ([`crate::core::ShareCollector`]).
    pub collector: crate::core::ShareCollector,
    /// Evidence for `GET attestation` in recovery (binds the TLS key).
    pub attester: Box<dyn Attester>,
    /// Opens the state with the recombined key.
    pub reopen: Reopen<S>,
    /// Called with the opened coordinator; returns the TLS configuration to serve next and its
    /// leaf's SubjectPublicKeyInfo (DER).
    pub after: TlsFor<S>,
}

/// Running, or waiting for recovery.
pub enum Mode<S: Store> {
    /// The state is open.
    Running(Arc<Coordinator<S>>),
    /// The state cannot be unsealed.
    Recovery(RecoveryMode<S>),
}

/// The API's shared state.
pub struct Api<S: Store> {
    mode: RwLock<Mode<S>>,
    /// The metrics the API records.
    pub metrics: Metrics,
    tls: RwLock<(Arc<rustls::ServerConfig>, Vec<u8>)>,
    recovery_dir: RwLock<Option<std::path::PathBuf>>,
}

impl<S: Store + 'static> Api<S> {
    /// An API in `mode`, serving TLS with `tls` whose leaf key is `tls_spki` (DER).
    pub fn new(mode: Mode<S>, tls: Arc<rustls::ServerConfig>, tls_spki: Vec<u8>) -> Arc<Api<S>> {
        let api = Api {
            mode: RwLock::new(mode),
            metrics: Metrics::new(),
            tls: RwLock::new((tls, tls_spki)),
            recovery_dir: RwLock::new(None),
        };
        api.update_state_gauge();
        Arc::new(api)
    }

    /// Keeps `recovery.json` in `dir` in step with the manifest's recovery shares.
    pub fn set_recovery_dir(&self, dir: std::path::PathBuf) {
        if let Ok(mut d) = self.recovery_dir.write() {
            *d = Some(dir);
        }
    }

    /// The TLS configuration for new connections.
    pub fn tls_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().ok().map(|t| t.0.clone())
    }

    fn tls_spki(&self) -> Vec<u8> {
        self.tls.read().map(|t| t.1.clone()).unwrap_or_default()
    }

    fn update_state_gauge(&self) {
        let v = match self.mode.read().as_deref() {
            Ok(Mode::Running(c)) => {
                if c.state() == crate::core::State::Running {
                    1
                } else {
                    0
                }
            }
            _ => 2,
        };
        self.metrics.state.set(v);
    }

    fn coordinator(&self) -> Result<Arc<Coordinator<S>>, ApiError> {
        match self.mode.read().as_deref() {
            Ok(Mode::Running(c)) => Ok(c.clone()),
            Ok(Mode::Recovery(_)) => Err(ApiError(CoreError::new(
                ErrorCode::WrongState,
                None,
                "the coordinator is in recovery: its state cannot be unsealed on this machine; recovery owners must `confidant recover`",
            ))),
            Err(_) => Err(ApiError(CoreError::new(
                ErrorCode::Internal,
                None,
                "state lock poisoned",
            ))),
        }
    }

    /// The router of `/api/v1`; request bodies are read within `body`'s time and memory
    /// budget before any handler sees them.
    pub fn router(self: &Arc<Self>, body: &BodyLimits) -> Router {
        Router::new()
            .route("/api/v1/status", get(status::<S>))
            .route("/api/v1/attestation", get(attestation::<S>))
            .route("/api/v1/image-key", get(image_key::<S>))
            .route(
                "/api/v1/manifest",
                get(manifest_get::<S>).post(manifest_set::<S>),
            )
            .route("/api/v1/packages/{name}/svn", post(package_svn::<S>))
            .route("/api/v1/nonce", post(nonce::<S>))
            .route("/api/v1/activate", post(activate::<S>))
            .route(
                "/api/v1/secrets/{name}",
                get(secret_get::<S>).put(secret_put::<S>),
            )
            .route(
                "/api/v1/volumes/{name}/state",
                get(volume_state_get::<S>).post(volume_state_post::<S>),
            )
            .route("/api/v1/audit", get(audit::<S>))
            .route("/api/v1/recovery", get(recovery_get::<S>))
            .route("/api/v1/recover", post(recover::<S>))
            .route("/api/v1/openapi.json", get(openapi))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(middleware::from_fn_with_state(
                body.clone(),
                self::body::buffer_body,
            ))
            .layer(middleware::from_fn_with_state(self.clone(), record::<S>))
            .with_state(self.clone())
    }

    /// The principal of a TLS connection whose client presented `certs` (leaf first; the
    /// handshake proved the leaf's key): a workload activation when the leaf is a workload
    /// certificate of this coordinator's CA valid at `now`, otherwise the leaf's SHA-256
    /// (which users are matched by), or anonymous without a certificate.
    pub fn principal(
        &self,
        certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
        now: SystemTime,
    ) -> Principal {
        let Some([leaf, rest @ ..]) = certs else {
            return Principal::Anonymous;
        };
        if let Ok(Mode::Running(c)) = self.mode.read().as_deref() {
            let intermediates: Vec<&[u8]> = rest.iter().map(|c| c.as_ref()).collect();
            if let Ok(id) = c.ca().workload_of(leaf.as_ref(), &intermediates, now) {
                return Principal::Workload {
                    workload: id.workload,
                    activation: id.activation,
                };
            }
        }
        principal_of(certs)
    }

    /// The router of the metrics listener (`/metrics`).
    pub fn metrics_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/metrics", get(metrics_text::<S>))
            .with_state(self.clone())
    }
}

/// An error answer: `{"error": {code, message, field, details}}` with its status.
#[derive(Debug)]
pub struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        ApiError(e)
    }
}

/// The HTTP status of an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status_of(e.code);
        let body = wire::ErrorBody {
            error: wire::ErrorObject {
                code: e.code,
                message: e.message,
                field: e.field,
                details: e.details.map(|d| *d),
            },
        };
        (status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn malformed(field: &str, message: impl Into<String>) -> ApiError {
    ApiError(CoreError::new(ErrorCode::Malformed, Some(field), message))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        malformed(
            &field,
            format!("expected the JSON of the API spec: {}", e.inner()),
        )
    })
}

fn hex_param(field: &str, v: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(v).map_err(|e| malformed(field, format!("expected hex: {e}")))
}

/// Runs blocking coordinator work (store commits, signatures) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError(CoreError::new(
                ErrorCode::Internal,
                None,
                format!("worker failed: {e}"),
            ))
        })?
        .map_err(ApiError)
}

fn ok_json<T: serde::Serialize>(v: T) -> ApiResult {
    Ok(Json(v).into_response())
}

async fn record<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let start = Instant::now();
    let mut resp = json_error_body(next.run(req).await).await;
    api.metrics.duration.observe(start.elapsed().as_secs_f64());
    api.metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.into(),
            status: resp.status().as_u16(),
        })
        .inc();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `text` fit for one log line: control characters (C0, DEL, C1, so also line breaks and
/// terminal escapes) and Unicode's bidirectional overrides written as `\u{..}` escapes, and a
/// backslash doubled, so that a client cannot forge log lines or reorder what a terminal shows.
pub fn log_text(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || c == '\\'
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.contains(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The largest framework error body kept as the message of the JSON error that replaces it.
const MAX_FRAMEWORK_MESSAGE: usize = 500;

/// Gives an error answer the HTTP framework made itself (405, 413, an undecodable path or
/// query) the API's JSON error body: every non-2xx answer has it.
async fn json_error_body(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let mut message: String = text.chars().take(MAX_FRAMEWORK_MESSAGE).collect();
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_string();
    }
    let code = ErrorCode::for_status(status.as_u16());
    let mut json = ApiError(CoreError::new(code, None, message)).into_response();
    *json.status_mut() = status;
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            json.headers_mut().insert(name, v.clone());
        }
    }
    json
}

async fn not_found() -> ApiError {
    ApiError(CoreError::new(
        ErrorCode::NotFound,
        None,
        "no such endpoint; see /api/v1/openapi.json",
    ))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

async fn metrics_text<S: Store + 'static>(State(api): State<Arc<Api<S>>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.encode(),
    )
        .into_response()
}

async fn status<S: Store + 'static>(State(api): State<Arc<Api<S>>>) -> ApiResult {
    let recovery = match api.mode.read().as_deref() {
        Ok(Mode::Recovery(r)) => Some(wire::Status {
            state: wire::CoordinatorState::Recovery,
            tee: r.attester.tee(),
            simulation: r.attester.tee().is_simulation(),
            version: env!("CARGO_PKG_VERSION").into(),
            manifest: None,
            activations: None,
            received: Some(r.collector.received() as u64),
            threshold: r.collector.threshold(),
        }),
        _ => None,
    };
    if let Some(v) = recovery {
        return ok_json(v);
    }
    let c = api.coordinator()?;
    let s = blocking(move || c.status()).await?;
    ok_json(wire::Status {
        state: wire_state(s.state),
        tee: s.tee,
        simulation: s.simulation,
        version: env!("CARGO_PKG_VERSION").into(),
        manifest: s.manifest.map(|m| wire::ManifestRef {
            version: m.version,
            hash: m.hash,
        }),
        activations: Some(s.activations),
        received: None,
        threshold: None,
    })
}

fn wire_state(s: crate::core::State) -> wire::CoordinatorState {
    match s {
        crate::core::State::AcceptingManifest => wire::CoordinatorState::AcceptingManifest,
        crate::core::State::Running => wire::CoordinatorState::Running,
    }
}

async fn attestation<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Query(q): Query<wire::AttestationQuery>,
) -> ApiResult {
    let nonce = hex_param(
        "nonce",
        q.nonce
            .as_deref()
            .ok_or_else(|| malformed("nonce", "expected ?nonce=<16 to 64 bytes in hex>"))?,
    )?;
    if !(16..=64).contains(&nonce.len()) {
        return Err(malformed(
            "nonce",
            format!("expected 16 to 64 bytes, got {}", nonce.len()),
        ));
    }
    let spki = api.tls_spki();
    let spki_hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, &spki));
    let recovery_evidence = match api.mode.read().as_deref() {
        Ok(Mode::Recovery(r)) => {
            let mut bound = nonce.clone();
            bound.extend_from_slice(&[0u8; 32]);
            let rd = report_data(Purpose::Coordinator, &bound, &spki);
            Some((r.attester.attest(&rd), r.attester.tee().is_simulation()))
        }
        _ => None,
    };
    if let Some((evidence, simulation)) = recovery_evidence {
        let evidence = evidence.map_err(|e| {
            ApiError(CoreError::new(
                ErrorCode::Internal,
                None,
                format!("producing evidence: {e}"),
            ))
        })?;
        return ok_json(wire::Attestation {
            state: wire::CoordinatorState::Recovery,
            simulation,
            evidence,
            root_ca: None,
            intermediate_ca: None,
            manifest_hash: None,
            tls_spki_sha256: spki_hash,
        });
    }
    let c = api.coordinator()?;
    let a = blocking(move || c.attestation(&nonce)).await?;
    ok_json(wire::Attestation {
        state: wire_state(a.state),
        simulation: a.simulation,
        evidence: a.evidence,
        root_ca: Some(a.root_ca),
        intermediate_ca: Some(a.intermediate_ca),
        manifest_hash: a.manifest_hash,
        tls_spki_sha256: spki_hash,
    })
}

async fn image_key<S: Store + 'static>(State(api): State<Arc<Api<S>>>) -> ApiResult {
    let (public_key, key_id) = api.coordinator()?.image_key();
    ok_json(wire::ImageKey { public_key, key_id })
}

async fn manifest_get<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Query(q): Query<wire::ManifestQuery>,
) -> ApiResult {
    let c = api.coordinator()?;
    let r = blocking(move || c.manifest_record(q.version)).await?;
    ok_json(r.to_api())
}

fn manifest_set_answer(set: crate::core::ManifestSet) -> Response {
    let r = set.record;
    let body = wire::ManifestSet {
        version: r.version,
        hash: r.hash,
        previous: r.previous,
        signature: r.signature,
        recovery: set.recovery.as_ref().map(RecoveryShares::to_api),
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn manifest_set<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> ApiResult {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| malformed("body", "expected a UTF-8 manifest (YAML or JSON)"))?;
    let c = api.coordinator()?;
    let dir = api.recovery_dir.read().ok().and_then(|d| d.clone());
    let set = blocking(move || {
        let set = c.set_manifest(&who, &text, SystemTime::now())?;
        if let Some(dir) = dir {
            crate::server::write_recovery_file(&dir, set.recovery.as_ref()).map_err(|e| {
                CoreError::new(
                    ErrorCode::Internal,
                    None,
                    format!(
                        "the manifest was set, but the recovery shares could not be saved: {e}"
                    ),
                )
            })?;
        }
        Ok(set)
    })
    .await?;
    tracing::info!(
        version = set.record.version,
        hash = %set.record.hash,
        set_by = set.record.set_by.as_deref().unwrap_or("anonymous (first manifest)"),
        "manifest set"
    );
    api.update_state_gauge();
    Ok(manifest_set_answer(set))
}

async fn package_svn<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let b: wire::SvnUpdate = parse_json(&body)?;
    let c = api.coordinator()?;
    let set = blocking(move || c.update_svn(&who, &name, b.min_svn, SystemTime::now())).await?;
    Ok(manifest_set_answer(set))
}

async fn nonce<S: Store + 'static>(State(api): State<Arc<Api<S>>>) -> ApiResult {
    let n = api.coordinator()?.issue_nonce(SystemTime::now())?;
    ok_json(wire::Nonce {
        nonce: hex::encode(n),
        expires_in_seconds: crate::core::NONCE_LIFETIME.as_secs(),
    })
}

/// Parses a `POST activate` body (untrusted bytes) into a request; errors name the field.
pub fn parse_activate_request(body: &[u8]) -> Result<ActivateRequest, CoreError> {
    let b: wire::ActivateRequest = parse_json(body).map_err(|e| e.0)?;
    let image_manifest = match &b.image_manifest {
        None => None,
        Some(s) => Some(
            STANDARD
                .decode(s)
                .map_err(|e| malformed("image_manifest", format!("expected base64: {e}")).0)?,
        ),
    };
    Ok(ActivateRequest {
        nonce: hex_param("nonce", &b.nonce).map_err(|e| e.0)?,
        workload: b.workload,
        csr: b.csr.into_bytes(),
        evidence: b.evidence,
        image_manifest,
    })
}

async fn activate<S: Store + 'static>(State(api): State<Arc<Api<S>>>, body: Bytes) -> ApiResult {
    let req = parse_activate_request(&body)?;
    let c = api.coordinator()?;
    let workload = req.workload.clone();
    // Metrics series only for workloads the manifest names: a stranger's made-up names are
    // all one `unknown` series.
    let label = if c.has_workload(&workload) {
        LabelText(workload.clone())
    } else {
        LabelText::from("unknown")
    };
    let result = blocking(move || c.activate(&req, SystemTime::now())).await;
    let outcome = match &result {
        Ok(a) => {
            tracing::info!(activation = %a.activation, simulation = a.simulation, "workload activated");
            "ok"
        }
        Err(e) => {
            // The name and the message may carry what a client sent: logged escaped.
            tracing::warn!(
                workload = %log_text(&workload),
                code = %e.0.code,
                "activation refused: {}",
                log_text(&e.0.message)
            );
            e.0.code.as_str()
        }
    };
    api.metrics
        .activations
        .get_or_create(&ActivationLabels {
            workload: label,
            outcome: outcome.into(),
        })
        .inc();
    ok_json(result?)
}

async fn secret_get<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult {
    let c = api.coordinator()?;
    let v = blocking(move || c.secret_get(&who, &name, SystemTime::now())).await?;
    ok_json(v)
}

async fn secret_put<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let b: wire::SecretPut = parse_json(&body)?;
    let value = STANDARD
        .decode(b.value.expose())
        .map_err(|e| malformed("value", format!("expected base64: {e}")))?;
    let c = api.coordinator()?;
    let n = name.clone();
    blocking(move || c.secret_put(&who, &n, &value, SystemTime::now())).await?;
    ok_json(wire::SecretSet { name })
}

async fn volume_state_get<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult {
    let c = api.coordinator()?;
    let v = blocking(move || c.volume_state(&who, &name)).await?;
    ok_json(v)
}

/// Parses a `POST volumes/{name}/state` body (untrusted bytes); errors name the field.
pub fn parse_volume_commit(body: &[u8]) -> Result<CommitVolume, CoreError> {
    let b: wire::VolumeCommit = parse_json(body).map_err(|e| e.0)?;
    let bytes = hex_param("root", &b.root).map_err(|e| e.0)?;
    let root: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        malformed(
            "root",
            format!("expected 32 bytes (64 hex digits), got {}", bytes.len()),
        )
        .0
    })?;
    Ok(CommitVolume {
        expected_version: b.expected_version,
        version: b.version,
        root,
        reinitialize: b.reinitialize,
    })
}

async fn volume_state_post<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let commit = parse_volume_commit(&body)?;
    let c = api.coordinator()?;
    let result =
        blocking(move || c.commit_volume_state(&who, &name, &commit, SystemTime::now())).await;
    let outcome = match &result {
        Ok(v) => {
            tracing::info!(volume = %v.volume, version = v.version, "volume state committed");
            "ok"
        }
        Err(e) => e.0.code.as_str(),
    };
    api.metrics
        .volume_commits
        .get_or_create(&VolumeCommitLabels {
            outcome: outcome.into(),
        })
        .inc();
    ok_json(result?)
}

async fn audit<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<wire::AuditQuery>,
) -> ApiResult {
    let c = api.coordinator()?;
    let entries = blocking(move || {
        c.audit(
            &who,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(crate::core::MAX_AUDIT_PAGE),
        )
    })
    .await?;
    ok_json(wire::AuditPage { entries })
}

async fn recovery_get<S: Store + 'static>(State(api): State<Arc<Api<S>>>) -> ApiResult {
    let from_recovery = match api.mode.read().as_deref() {
        Ok(Mode::Recovery(r)) => Some(r.shares.clone()),
        _ => None,
    };
    let shares = match from_recovery {
        Some(s) => s,
        None => {
            let c = api.coordinator()?;
            blocking(move || c.recovery_shares()).await?
        }
    };
    match shares {
        Some(s) => ok_json(s.to_api()),
        None => Err(ApiError(CoreError::new(
            ErrorCode::NotFound,
            None,
            "no recovery shares: the manifest has no `recovery` section",
        ))),
    }
}

async fn recover<S: Store + 'static>(State(api): State<Arc<Api<S>>>, body: Bytes) -> ApiResult {
    let b: wire::RecoverRequest = parse_json(&body)?;
    let bytes = STANDARD
        .decode(b.share.expose())
        .map_err(|e| malformed("share", format!("expected base64: {e}")))?;
    let share = Share::from_bytes(&bytes).map_err(|e| malformed("share", e.to_string()))?;
    let api2 = api.clone();
    let answer = tokio::task::spawn_blocking(move || recover_blocking(&api2, share))
        .await
        .map_err(|e| {
            ApiError(CoreError::new(
                ErrorCode::Internal,
                None,
                format!("worker failed: {e}"),
            ))
        })??;
    api.update_state_gauge();
    ok_json(answer)
}

fn recover_blocking<S: Store + 'static>(
    api: &Api<S>,
    share: Share,
) -> Result<wire::RecoverProgress, ApiError> {
    let mut mode = api.mode.write().map_err(|_| {
        ApiError(CoreError::new(
            ErrorCode::Internal,
            None,
            "state lock poisoned",
        ))
    })?;
    let Mode::Recovery(r) = &mut *mode else {
        return Err(ApiError(CoreError::new(
            ErrorCode::WrongState,
            None,
            "the coordinator is not in recovery: its state is open",
        )));
    };
    let key = match r.collector.add(share).map_err(|e| ApiError(e.into()))? {
        Collected::Waiting {
            received,
            threshold,
        } => {
            return Ok(wire::RecoverProgress {
                state: wire::CoordinatorState::Recovery,
                received: Some(received as u64),
                threshold: Some(threshold),
            });
        }
        Collected::Key(key) => key,
    };
    match (r.reopen)(key) {
        Ok(c) => {
            let (tls, spki) = (r.after)(&c)
                .map_err(|e| ApiError(CoreError::new(ErrorCode::Internal, None, e)))?;
            *mode = Mode::Running(Arc::new(c));
            if let Ok(mut t) = api.tls.write() {
                *t = (tls, spki);
            }
            Ok(wire::RecoverProgress {
                state: wire::CoordinatorState::Running,
                received: None,
                threshold: None,
            })
        }
        // The shares do not open this state: forget them all and start over.
        Err(e) => Err(ApiError(r.collector.key_did_not_fit(&e).into())),
    }
}

/// The SubjectPublicKeyInfo DER of a certificate (PEM).
pub fn spki_of_cert_pem(cert_pem: &str) -> Option<Vec<u8>> {
    let p = pem::parse(cert_pem.as_bytes()).ok()?;
    let (_, c) = x509_parser::parse_x509_certificate(p.contents()).ok()?;
    Some(c.tbs_certificate.subject_pki.raw.to_vec())
}

/// The principal of a client certificate by its SHA-256 alone (users are matched by it); see
/// [`Api::principal`], which also recognises workload certificates.
pub fn principal_of(certs: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Principal {
    match certs.and_then(|c| c.first()) {
        Some(leaf) => {
            let d = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
            let mut h = [0u8; 32];
            h.copy_from_slice(d.as_ref());
            Principal::Certificate(h)
        }
        None => Principal::Anonymous,
    }
}

#[cfg(test)]
mod log_tests {
    use super::log_text;

    #[test]
    fn log_text_escapes_what_could_forge_or_hide_a_line() {
        assert_eq!(log_text("web-1"), "web-1");
        assert_eq!(
            log_text("a\nb\r\u{1b}[31m\\\u{202e}x\u{85}"),
            r"a\u{a}b\u{d}\u{1b}[31m\\\u{202e}x\u{85}"
        );
        // Not ambiguous: an escape a client typed is not taken for one made here.
        assert_eq!(log_text(r"\u{a}"), r"\\u{a}");
    }
}
