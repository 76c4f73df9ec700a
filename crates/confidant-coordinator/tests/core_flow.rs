//! The coordinator's logic end to end, without sockets: manifests, activations with real
//! simulation evidence and CSRs, secrets, roles, history, refusals.

use std::time::{Duration, SystemTime};

use confidant_attest::Verifiers;
use confidant_attest::attester::Attester;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::binding::{Purpose, report_data};
use confidant_attest::verify::sim::SimVerifier;
use confidant_coordinator::core::{
    ActivateRequest, Coordinator, CoreError, ErrorCode, ErrorKind, Principal, State,
};
use confidant_coordinator::store::MemStore;
use confidant_image::crypt::keys::PublicKey;
use confidant_image::crypt::{Recipients, encrypt_layer};

mod common;
use common::sim::{MEASURED, Platform, Workload, coordinator, indent, user_cert};

struct Fixture {
    c: Coordinator<MemStore>,
    platform: Platform,
    alice: Principal,
    bob: Principal,
    alice_pem: String,
    bob_pem: String,
}

fn fixture() -> Fixture {
    let platform = Platform::new();
    let c = coordinator(&platform);
    let (alice_pem, alice) = user_cert();
    let (bob_pem, bob) = user_cert();
    Fixture {
        c,
        platform,
        alice,
        bob,
        alice_pem,
        bob_pem,
    }
}

fn manifest(f: &Fixture, extra_workload: &str) -> String {
    let m = hex::encode(SimAttester::measure(MEASURED));
    format!(
        r#"apiVersion: confidant/v1
packages:
  app:
    tee: sim
    reference_values:
      measurements: ["{m}"]
workloads:
  web:
    package: app
    max_activations: 3
    files:
      /etc/web/key: "{{{{ k.hex }}}}"
      /etc/web/token: "{{{{ token.value }}}}"
      /etc/web/ca.pem: "{{{{ confidant.root_ca }}}}"
      /etc/web/tls.pem: "{{{{ tls.cert }}}}{{{{ session_tls.key }}}}"
    env:
      WHO: "{{{{ confidant.workload }}}}@{{{{ confidant.coordinator }}}}"
    args: ["--session={{{{ session.hex }}}}"]
{extra_workload}secrets:
  k: {{type: symmetric-key, size: 256}}
  session: {{type: symmetric-key, size: 128, per_activation: true}}
  tls: {{type: cert-ecdsa, sans: [web.internal]}}
  session_tls: {{type: cert-ed25519, sans: [web.internal], per_activation: true}}
  token: {{type: plain}}
users:
  alice:
    certificate: |
{alice}  bob:
    certificate: |
{bob}roles:
  admin:
    users: [alice]
    rules:
      - {{resource: manifest, actions: [update]}}
      - {{resource: secrets, actions: [read, write]}}
      - {{resource: packages, actions: [update-svn]}}
config:
  allow_simulation: true
"#,
        alice = indent(&f.alice_pem),
        bob = indent(&f.bob_pem),
    )
}

fn running(f: &Fixture) {
    f.c.set_manifest(&Principal::Anonymous, &manifest(f, ""), SystemTime::now())
        .unwrap();
    f.c.secret_put(&f.alice, "token", b"t0ken", SystemTime::now())
        .unwrap();
}

fn assert_refused(e: &CoreError, kind: ErrorKind, code: &str, field: &str) {
    assert_eq!(e.kind(), kind, "{e:?}");
    assert_eq!(e.code.as_str(), code, "{e:?}");
    assert_eq!(e.field.as_deref(), Some(field), "{e:?}");
}

#[test]
fn whole_flow_activates_a_workload_with_its_secrets_and_certificate() {
    let f = fixture();
    assert_eq!(f.c.state(), State::AcceptingManifest);
    running(&f);
    assert_eq!(f.c.state(), State::Running);
    let w = Workload::new(&f.platform);
    let a =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap();
    assert_eq!(a.activation, "web/1");
    assert!(a.simulation);
    assert!(a.warnings.iter().any(|w| w.contains("SIMULATION")));
    let k = f.c.secret_get(&f.alice, "k", SystemTime::now()).unwrap();
    let k_bytes = base64_decode(k.value.as_deref().unwrap());
    assert_eq!(a.parameters.files["/etc/web/key"], hex::encode(k_bytes));
    assert_eq!(a.parameters.files["/etc/web/token"], "t0ken");
    assert_eq!(a.parameters.files["/etc/web/ca.pem"], f.c.ca().root_pem());
    assert!(a.parameters.files["/etc/web/tls.pem"].contains("BEGIN PRIVATE KEY"));
    assert_eq!(a.parameters.env["WHO"], "web@127.0.0.1:4433");
    assert_eq!(a.parameters.args[0].len(), "--session=".len() + 32);
    // The certificate is for the CSR's key, names the workload and chains to the root.
    let pem = pem::parse(a.certificate.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(pem.contents()).unwrap();
    assert_eq!(
        cert.tbs_certificate.subject_pki.raw,
        &w.key.public_key_der()[..]
    );
    let sans = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(sans.contains("confidant://workload/web/1"), "{sans}");
    assert!(a.chain.starts_with(&a.certificate));
    // Per-activation secrets differ between activations; shared ones do not.
    let b =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap();
    assert_eq!(b.activation, "web/2");
    assert_ne!(a.parameters.args, b.parameters.args);
    assert_eq!(
        a.parameters.files["/etc/web/key"],
        b.parameters.files["/etc/web/key"]
    );
    let status = f.c.status().unwrap();
    assert_eq!(status.activations["web"], 2);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn wrong_measurement_is_refused_with_the_field() {
    let f = fixture();
    running(&f);
    let mut w = Workload::new(&f.platform);
    w.attester = SimAttester::new(f.platform.load(), SimAttester::measure(b"another binary"));
    let e =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap_err();
    assert_refused(
        &e,
        ErrorKind::Rejected,
        "evidence_rejected",
        "evidence.measurement",
    );
    let d = e.details.unwrap();
    assert_eq!(d.mismatches[0].field, "measurement");
    assert_eq!(f.c.status().unwrap().activations.get("web"), None);
}

#[test]
fn debug_evidence_is_refused_unless_allowed() {
    let f = fixture();
    running(&f);
    let mut w = Workload::new(&f.platform);
    w.attester =
        SimAttester::new(f.platform.load(), SimAttester::measure(MEASURED)).with_debug(true);
    let e =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap_err();
    assert_refused(
        &e,
        ErrorKind::Rejected,
        "evidence_rejected",
        "evidence.debug",
    );
}

#[test]
fn evidence_from_an_untrusted_platform_key_is_refused() {
    let f = fixture();
    running(&f);
    let other = Platform::new();
    let w = Workload::new(&other);
    let e =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap_err();
    assert_refused(&e, ErrorKind::Rejected, "evidence_rejected", "evidence");
}

#[test]
fn sim_evidence_is_refused_when_simulation_is_not_allowed() {
    let f = fixture();
    let yaml = format!(
        r#"apiVersion: confidant/v1
packages:
  enclave:
    tee: sgx
    reference_values:
      measurements: ["{}"]
workloads:
  web: {{package: enclave}}
"#,
        "ab".repeat(32)
    );
    f.c.set_manifest(&Principal::Anonymous, &yaml, SystemTime::now())
        .unwrap();
    let w = Workload::new(&f.platform);
    let e =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap_err();
    assert_refused(&e, ErrorKind::Rejected, "evidence_rejected", "evidence.tee");
    assert!(e.message.contains("allow_simulation"), "{e}");
}

#[test]
fn replayed_evidence_and_foreign_nonces_are_refused() {
    let f = fixture();
    running(&f);
    let w = Workload::new(&f.platform);
    let req = w.request(&f.c, "web");
    f.c.activate(&req, SystemTime::now()).unwrap();
    let e = f.c.activate(&req, SystemTime::now()).unwrap_err();
    assert_refused(&e, ErrorKind::Rejected, "nonce", "nonce");
    assert!(e.message.contains("already used"), "{e}");
    // A nonce the workload made up itself.
    let mut forged = w.request(&f.c, "web");
    forged.nonce = vec![7; 32];
    let rd = report_data(Purpose::Activate, &forged.nonce, &w.key.public_key_der());
    forged.evidence = w.attester.attest(&rd).unwrap();
    let e = f.c.activate(&forged, SystemTime::now()).unwrap_err();
    assert_refused(&e, ErrorKind::Rejected, "nonce", "nonce");
    // A stale one.
    let stale = w.request(&f.c, "web");
    let later = SystemTime::now() + Duration::from_secs(3600);
    let e = f.c.activate(&stale, later).unwrap_err();
    assert!(e.message.contains("expired"), "{e}");
}

#[test]
fn a_csr_whose_key_the_evidence_does_not_bind_is_refused() {
    let f = fixture();
    running(&f);
    let w = Workload::new(&f.platform);
    let thief = Workload::new(&f.platform);
    let mut req = w.request(&f.c, "web");
    req.csr = thief.csr.clone().into_bytes();
    let e = f.c.activate(&req, SystemTime::now()).unwrap_err();
    assert_refused(&e, ErrorKind::Rejected, "binding", "csr");
    let mut req = w.request(&f.c, "web");
    req.csr =
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".to_vec();
    let e = f.c.activate(&req, SystemTime::now()).unwrap_err();
    assert_refused(&e, ErrorKind::Malformed, "malformed", "csr");
}

#[test]
fn maximum_activations_are_enforced() {
    let f = fixture();
    running(&f);
    let w = Workload::new(&f.platform);
    for _ in 0..3 {
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap();
    }
    let e =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap_err();
    assert_refused(&e, ErrorKind::Conflict, "activations_exhausted", "workload");
    assert!(e.message.contains("max_activations = 3"), "{e}");
    assert_eq!(f.c.status().unwrap().activations["web"], 3);
    let e =
        f.c.activate(&w.request(&f.c, "nope"), SystemTime::now())
            .unwrap_err();
    assert_refused(&e, ErrorKind::NotFound, "not_found", "workload");
}

#[test]
fn users_need_the_right_role_and_a_known_certificate() {
    let f = fixture();
    running(&f);
    let e = f.c.secret_get(&f.bob, "k", SystemTime::now()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(e.message.contains("user 'bob'"), "{e}");
    let (_, stranger) = user_cert();
    let e =
        f.c.secret_get(&stranger, "k", SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let e =
        f.c.secret_get(&Principal::Anonymous, "k", SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let e =
        f.c.secret_put(&f.bob, "token", b"x", SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    // Manifest updates: anonymous 401, bob 403, alice ok.
    let next = manifest(&f, "  api: {package: app}\n");
    let e =
        f.c.set_manifest(&Principal::Anonymous, &next, SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let e =
        f.c.set_manifest(&f.bob, &next, SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    let set =
        f.c.set_manifest(&f.alice, &next, SystemTime::now())
            .unwrap();
    assert_eq!(set.record.version, 2);
    assert_eq!(set.record.set_by.as_deref(), Some("alice"));
}

#[test]
fn a_template_naming_an_unknown_secret_refuses_the_manifest() {
    let f = fixture();
    let bad = manifest(
        &f,
        "  api:\n    package: app\n    env: {DB: \"{{ db.value }}\"}\n",
    );
    let e =
        f.c.set_manifest(&Principal::Anonymous, &bad, SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert_eq!(e.code, ErrorCode::InvalidManifest);
    assert_eq!(e.field.as_deref(), Some("workloads.api.env.DB"), "{e:?}");
    assert!(e.message.contains("unknown secret 'db'"), "{e}");
    assert_eq!(f.c.state(), State::AcceptingManifest);
}

#[test]
fn manifest_history_is_chained_and_signed_by_the_root() {
    let f = fixture();
    running(&f);
    let v1 = f.c.manifest_record(None).unwrap();
    let next = manifest(&f, "  api: {package: app}\n");
    f.c.set_manifest(&f.alice, &next, SystemTime::now())
        .unwrap();
    let v2 = f.c.manifest_record(None).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.previous.as_deref(), Some(v1.hash.as_str()));
    assert_eq!(f.c.manifest_record(Some(1)).unwrap(), v1);
    let e = f.c.manifest_record(Some(9)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // The signature verifies with the root CA's public key, and not over other bytes.
    let root = pem::parse(f.c.ca().root_pem().as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(root.contents()).unwrap();
    let point = cert
        .tbs_certificate
        .subject_pki
        .subject_public_key
        .data
        .to_vec();
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);
    for r in [&v1, &v2] {
        let mut msg = confidant_coordinator::core::RECORD_SIGNATURE_DOMAIN.to_vec();
        msg.extend_from_slice(&r.signed_header());
        key.verify(&msg, &base64_decode(&r.signature)).unwrap();
    }
    let mut msg = confidant_coordinator::core::RECORD_SIGNATURE_DOMAIN.to_vec();
    msg.extend_from_slice(&v1.signed_header());
    assert!(key.verify(&msg, &base64_decode(&v2.signature)).is_err());
    // Setting the same manifest again is a conflict, not a new version.
    let e =
        f.c.set_manifest(&f.alice, &next, SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

#[test]
fn package_svn_only_goes_up_and_is_enforced() {
    let f = fixture();
    running(&f);
    let set =
        f.c.update_svn(&f.alice, "app", 5, SystemTime::now())
            .unwrap();
    assert_eq!(set.record.version, 2);
    assert_eq!(set.record.set_by.as_deref(), Some("alice"));
    let e =
        f.c.update_svn(&f.alice, "app", 4, SystemTime::now())
            .unwrap_err();
    assert_refused(&e, ErrorKind::Conflict, "conflict", "min_svn");
    let e =
        f.c.update_svn(&f.bob, "app", 6, SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    // A workload at SVN 0 is now refused; at SVN 5 accepted.
    let mut w = Workload::new(&f.platform);
    let e =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap_err();
    assert_refused(&e, ErrorKind::Rejected, "evidence_rejected", "evidence.svn");
    w.attester =
        SimAttester::new(f.platform.load(), SimAttester::measure(MEASURED)).with_version(0, 5);
    f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
        .unwrap();
}

#[test]
fn a_frozen_manifest_cannot_be_replaced() {
    let f = fixture();
    let frozen = manifest(&f, "")
        .replace(
            "config:\n  allow_simulation: true\n",
            "config:\n  allow_simulation: true\n  update_policy: {manifest: frozen}\n",
        )
        .replace("      - {resource: manifest, actions: [update]}\n", "");
    f.c.set_manifest(&Principal::Anonymous, &frozen, SystemTime::now())
        .unwrap();
    let e =
        f.c.set_manifest(&f.alice, &manifest(&f, ""), SystemTime::now())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert!(e.message.contains("frozen"), "{e}");
}

#[test]
fn secrets_kinds_and_lifetimes() {
    let f = fixture();
    running(&f);
    let now = SystemTime::now();
    let e = f.c.secret_put(&f.alice, "k", b"x", now).unwrap_err();
    assert_refused(&e, ErrorKind::Conflict, "conflict", "name");
    let e = f.c.secret_get(&f.alice, "session", now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = f.c.secret_get(&f.alice, "nope", now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let tls = f.c.secret_get(&f.alice, "tls", now).unwrap();
    assert!(tls.cert.unwrap().contains("BEGIN CERTIFICATE"));
    assert!(tls.key.unwrap().contains("BEGIN PRIVATE KEY"));
    let k1 = f.c.secret_get(&f.alice, "k", now).unwrap().value;
    // Same definition in the next version: same value. Changed definition: a new value.
    f.c.set_manifest(&f.alice, &manifest(&f, "  api: {package: app}\n"), now)
        .unwrap();
    assert_eq!(f.c.secret_get(&f.alice, "k", now).unwrap().value, k1);
    assert_eq!(
        f.c.secret_get(&f.alice, "token", now)
            .unwrap()
            .value
            .as_deref(),
        Some("dDBrZW4=")
    );
    let changed = manifest(&f, "").replace(
        "k: {type: symmetric-key, size: 256}",
        "k: {type: symmetric-key, size: 512}",
    );
    f.c.set_manifest(&f.alice, &changed, now).unwrap();
    let k2 = f.c.secret_get(&f.alice, "k", now).unwrap().value.unwrap();
    assert_ne!(Some(k2.clone()), k1);
    assert_eq!(base64_decode(&k2).len(), 64);
}

#[test]
fn unset_plain_secret_is_named_when_rendering_fails() {
    let f = fixture();
    f.c.set_manifest(&Principal::Anonymous, &manifest(&f, ""), SystemTime::now())
        .unwrap();
    let w = Workload::new(&f.platform);
    let e =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::Template);
    assert!(
        e.message.contains("plain secrets not set yet: token"),
        "{e}"
    );
}

#[test]
fn a_refused_activation_is_not_counted() {
    let f = fixture();
    let now = SystemTime::now();
    // max_activations is 3: refusals after the evidence checks must not spend any of them.
    f.c.set_manifest(&Principal::Anonymous, &manifest(&f, ""), now)
        .unwrap();
    let w = Workload::new(&f.platform);
    // A template that cannot render yet (the plain secret `token` is not set), more often
    // than max_activations: counted before rendering, the fourth would be `exhausted`.
    for _ in 0..4 {
        let e = f.c.activate(&w.request(&f.c, "web"), now).unwrap_err();
        assert_eq!(e.code, ErrorCode::Template, "{e}");
    }
    assert_eq!(f.c.status().unwrap().activations.get("web"), None);
    f.c.secret_put(&f.alice, "token", b"t0ken", now).unwrap();
    // All three activations are still there.
    for n in 1..=3 {
        let a = f.c.activate(&w.request(&f.c, "web"), now).unwrap();
        assert_eq!(a.activation, format!("web/{n}"));
    }
    let e = f.c.activate(&w.request(&f.c, "web"), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::ActivationsExhausted, "{e}");
    // The audit log has exactly the three.
    let log = f.c.audit(&f.alice, 0, 100).unwrap();
    assert_eq!(log.iter().filter(|e| e.action == "activate").count(), 3);
}

#[test]
fn the_audit_log_records_who_did_what() {
    let f = fixture();
    running(&f);
    let w = Workload::new(&f.platform);
    f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
        .unwrap();
    let log = f.c.audit(&f.alice, 0, 100).unwrap();
    let actions: Vec<(String, String)> = log
        .iter()
        .map(|e| (e.actor.clone(), e.action.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("anonymous".to_string(), "manifest.set".to_string()),
            ("alice".into(), "secret.write".into()),
            ("workload:web/1".into(), "activate".into()),
        ]
    );
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(f.c.audit(&f.alice, 2, 100).unwrap().len(), 1);
    assert_eq!(
        f.c.audit(&Principal::Anonymous, 0, 10).unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );
}

#[test]
fn layer_keys_are_released_only_for_the_package_images() {
    let f = fixture();
    let (pem, _) = f.c.image_key();
    let recipients = Recipients {
        jwe: Vec::new(),
        coordinator: Some(PublicKey::from_pem_or_der(pem.as_bytes()).unwrap()),
    };
    let mut blob = Vec::new();
    let layer = encrypt_layer(&b"layer content"[..], &mut blob, &recipients).unwrap();
    let image = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip+encrypted", "digest": layer.digest, "size": layer.size, "annotations": layer.annotations}],
    });
    let image = serde_json::to_vec(&image).unwrap();
    let digest = format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &image))
    );
    let m = manifest(&f, "").replace(
        "workloads:\n",
        &format!("    image_digests: [\"{digest}\"]\nworkloads:\n"),
    );
    f.c.set_manifest(&Principal::Anonymous, &m, SystemTime::now())
        .unwrap();
    f.c.secret_put(&f.alice, "token", b"t", SystemTime::now())
        .unwrap();
    let w = Workload::new(&f.platform);
    let mut req = w.request(&f.c, "web");
    req.image_manifest = Some(image.clone());
    let a = f.c.activate(&req, SystemTime::now()).unwrap();
    let opts = &a.layer_keys[&layer.digest];
    assert_eq!(opts.digest, layer.plaintext_digest);
    // Another image (one byte changed) is not in the package's list.
    let mut other = image.clone();
    other.push(b' ');
    let mut req = w.request(&f.c, "web");
    req.image_manifest = Some(other);
    let e = f.c.activate(&req, SystemTime::now()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert_eq!(e.field.as_deref(), Some("image_manifest"));
}

#[test]
fn attestation_binds_nonce_manifest_and_root() {
    let f = fixture();
    let nonce = [9u8; 32];
    let a = f.c.attestation(&nonce).unwrap();
    assert!(a.manifest_hash.is_none());
    let verifiers = Verifiers::new().with_sim(SimVerifier::new(vec![f.platform.public_key()]));
    let claims = verifiers.verify(&a.evidence, SystemTime::now()).unwrap();
    let mut bound = nonce.to_vec();
    bound.extend_from_slice(&[0u8; 32]);
    assert_eq!(
        claims.report_data.to_vec(),
        report_data(Purpose::Coordinator, &bound, &f.c.ca().root_spki_der()).to_vec()
    );
    running(&f);
    let a = f.c.attestation(&nonce).unwrap();
    let hash = hex::decode(a.manifest_hash.unwrap()).unwrap();
    let claims = verifiers.verify(&a.evidence, SystemTime::now()).unwrap();
    let mut bound = nonce.to_vec();
    bound.extend_from_slice(&hash);
    assert_eq!(
        claims.report_data.to_vec(),
        report_data(Purpose::Coordinator, &bound, &f.c.ca().root_spki_der()).to_vec()
    );
    assert!(f.c.attestation(&[1u8; 8]).is_err());
}

#[test]
fn concurrent_activations_are_counted_exactly_once_each() {
    let f = fixture();
    running(&f);
    let w = Workload::new(&f.platform);
    let requests: Vec<ActivateRequest> = (0..16).map(|_| w.request(&f.c, "web")).collect();
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| {
                let c = &f.c;
                s.spawn(move || {
                    c.activate(r, SystemTime::now())
                        .map(|a| a.activation)
                        .map_err(|e| e.code.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ok: Vec<String> = results.iter().filter_map(|r| r.clone().ok()).collect();
    ok.sort();
    assert_eq!(ok, ["web/1", "web/2", "web/3"]);
    assert!(
        results
            .iter()
            .filter_map(|r| r.clone().err())
            .all(|e| e == "activations_exhausted")
    );
    assert_eq!(f.c.status().unwrap().activations["web"], 3);
    assert_eq!(f.c.audit(&f.alice, 0, 1000).unwrap().len(), 2 + 3);
}

#[test]
fn volume_keys_are_made_once_and_kept_across_versions() {
    let f = fixture();
    let with_volume = |extra: &str| {
        manifest(&f, "")
            .replace(
                "    args: [\"--session={{ session.hex }}\"]\n",
                "    args: [\"--session={{ session.hex }}\"]\n    volumes: [{volume: data, path: /data}]\n",
            )
            .replace("users:\n", &format!("volumes:\n  data: {{size: 1GiB}}\n{extra}users:\n"))
    };
    f.c.set_manifest(&Principal::Anonymous, &with_volume(""), SystemTime::now())
        .unwrap();
    f.c.secret_put(&f.alice, "token", b"t", SystemTime::now())
        .unwrap();
    let w = Workload::new(&f.platform);
    let a =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap();
    assert_eq!(a.volumes.len(), 1);
    assert_eq!(a.volumes[0].path, "/data");
    assert_eq!(base64_decode(&a.volumes[0].key).len(), 32);
    assert!(!format!("{:?}", a.volumes[0]).contains(a.volumes[0].key.expose()));
    f.c.set_manifest(
        &f.alice,
        &with_volume("  logs: {size: 1MiB}\n"),
        SystemTime::now(),
    )
    .unwrap();
    let b =
        f.c.activate(&w.request(&f.c, "web"), SystemTime::now())
            .unwrap();
    assert_eq!(a.volumes[0].key, b.volumes[0].key);
}
