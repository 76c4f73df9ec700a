//! Rollback protection of protected volumes in the coordinator's logic (MemStore, no sockets):
//! policies in activations, who a workload certificate names, and every rule of the
//! compare-and-swap on a volume's version and root.

use std::time::{Duration, SystemTime};

use confidant_attest::attester::sim::SimAttester;
use confidant_coordinator::ca::CoordinatorCa;
use confidant_coordinator::core::{
    Activation, CommitVolume, Coordinator, CoreError, ErrorKind, Principal,
};
use confidant_coordinator::store::MemStore;

mod common;
use common::sim::{MEASURED, Platform, Workload, coordinator, indent, user_cert};

struct Fixture {
    c: Coordinator<MemStore>,
    platform: Platform,
    alice: Principal,
    bob: Principal,
    carol: Principal,
}

fn fixture() -> Fixture {
    let platform = Platform::new();
    let c = coordinator(&platform);
    let (alice_pem, alice) = user_cert();
    let (bob_pem, bob) = user_cert();
    let (carol_pem, carol) = user_cert();
    let m = hex::encode(SimAttester::measure(MEASURED));
    let manifest = format!(
        r#"apiVersion: confidant/v1
packages:
  app:
    tee: sim
    reference_values:
      measurements: ["{m}"]
workloads:
  db:
    package: app
    volumes:
      - {{volume: data, path: /data}}
      - {{volume: cache, path: /cache}}
      - {{volume: scratch, path: /scratch}}
  reader:
    package: app
    volumes: [{{volume: data, path: /data, read_only: true}}]
  other: {{package: app}}
  code:
    package: app
    volumes: [{{volume: code, path: /code, read_only: true}}]
volumes:
  code: {{size: 1MiB, key_secret: code_key}}
  data: {{size: 1GiB}}
  cache: {{size: 1GiB, policy: reinitializable}}
  scratch: {{size: 1MiB, policy: ephemeral}}
users:
  alice:
    certificate: |
{alice}  bob:
    certificate: |
{bob}  carol:
    certificate: |
{carol}secrets:
  code_key: {{type: plain}}
roles:
  auditor:
    users: [alice]
    rules:
      - {{resource: volumes, names: [data, cache], actions: [read]}}
  owner:
    users: [carol]
    rules:
      - {{resource: volumes, names: [code], actions: [write]}}
      - {{resource: secrets, names: [code_key], actions: [write]}}
config:
  allow_simulation: true
"#,
        alice = indent(&alice_pem),
        bob = indent(&bob_pem),
        carol = indent(&carol_pem),
    );
    c.set_manifest(&Principal::Anonymous, &manifest, SystemTime::now())
        .unwrap();
    Fixture {
        c,
        platform,
        alice,
        bob,
        carol,
    }
}

fn activate(f: &Fixture, workload: &str) -> Activation {
    try_activate(f, workload).unwrap()
}

fn try_activate(f: &Fixture, workload: &str) -> Result<Activation, CoreError> {
    let w = Workload::new(&f.platform);
    f.c.activate(&w.request(&f.c, workload), SystemTime::now())
}

fn der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text.as_bytes()).unwrap().into_contents()
}

/// The principal the API derives from an activation's certificate.
fn principal(c: &Coordinator<MemStore>, a: &Activation) -> Principal {
    let id = c
        .ca()
        .workload_of(&der(&a.certificate), &[], SystemTime::now())
        .unwrap();
    Principal::Workload {
        workload: id.workload,
        activation: id.activation,
    }
}

fn workload(name: &str, n: u64) -> Principal {
    Principal::Workload {
        workload: name.into(),
        activation: n.to_string(),
    }
}

fn commit(expected: u64, version: u64, root: u8) -> CommitVolume {
    CommitVolume {
        expected_version: expected,
        version,
        root: [root; 32],
        reinitialize: false,
    }
}

fn assert_err(e: CoreError, kind: ErrorKind, code: &str) -> CoreError {
    assert_eq!((e.kind(), e.code.as_str()), (kind, code), "{e}");
    e
}

#[test]
fn activation_grants_policies_and_a_fresh_key_per_activation_for_ephemeral_volumes() {
    let f = fixture();
    let a = activate(&f, "db");
    let b = activate(&f, "db");
    let by_name =
        |x: &Activation, v: &str| x.volumes.iter().find(|g| g.volume == v).cloned().unwrap();
    for (v, policy) in [
        ("data", "rollback_protected"),
        ("cache", "reinitializable"),
        ("scratch", "ephemeral"),
    ] {
        assert_eq!(by_name(&a, v).policy.as_str(), policy);
    }
    assert_eq!(by_name(&a, "data").key, by_name(&b, "data").key);
    assert_eq!(by_name(&a, "cache").key, by_name(&b, "cache").key);
    assert_ne!(by_name(&a, "scratch").key, by_name(&b, "scratch").key);
    assert_ne!(by_name(&a, "scratch").key, by_name(&a, "data").key);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["volumes"][0]["policy"], "rollback_protected");
    assert!(!format!("{:?}", by_name(&a, "scratch")).contains(by_name(&a, "scratch").key.expose()));
}

#[test]
fn workload_certificates_name_their_activation_and_nothing_else_does() {
    let f = fixture();
    let a = activate(&f, "db");
    assert_eq!(principal(&f.c, &a), workload("db", 1));
    let now = SystemTime::now();
    let ca = f.c.ca();
    // The chain as presented in TLS (leaf + intermediate) works as well as the leaf alone.
    let chain: Vec<Vec<u8>> = pem::parse_many(a.chain.as_bytes())
        .unwrap()
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect();
    let rest: Vec<&[u8]> = chain[1..].iter().map(Vec::as_slice).collect();
    assert_eq!(
        ca.workload_of(&chain[0], &rest, now).unwrap().activation,
        "1"
    );
    // Expired (the certificate is valid 30 days), or not yet valid.
    assert!(
        ca.workload_of(&chain[0], &[], now + Duration::from_secs(31 * 86_400))
            .is_err()
    );
    assert!(
        ca.workload_of(&chain[0], &[], now - Duration::from_secs(3600))
            .is_err()
    );
    // A self-signed certificate with the same URI SAN.
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "confidant://workload/db/1".try_into().unwrap(),
    )];
    let key = rcgen::KeyPair::generate().unwrap();
    let forged = params.self_signed(&key).unwrap();
    assert!(ca.workload_of(forged.der(), &[], now).is_err());
    // Another coordinator's workload certificate for the same name.
    let other = CoordinatorCa::generate("Other", now - Duration::from_secs(60)).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let foreign = other
        .sign_csr(
            csr.as_bytes(),
            &confidant_coordinator::ca::WorkloadIdentity {
                workload: "db".into(),
                activation: "1".into(),
                sans: vec![],
            },
            now,
            Duration::from_secs(86_400),
        )
        .unwrap();
    let foreign_der = der(&foreign.cert_pem);
    assert!(ca.workload_of(&foreign_der, &[], now).is_err());
    // ... even when it brings its own intermediate along.
    let other_inter = der(&other.intermediate_pem());
    assert!(ca.workload_of(&foreign_der, &[&other_inter], now).is_err());
    // The coordinator's own TLS certificate chains, but is no workload's (server auth only,
    // no workload URI).
    let tls = ca
        .issue_tls_server(&["localhost".into()], now, Duration::from_secs(86_400))
        .unwrap();
    assert!(ca.workload_of(&der(&tls.cert_pem), &[], now).is_err());
    // A `cert-*` secret chains and allows client auth, but names no workload.
    let secret = ca
        .issue_secret_cert(
            confidant_coordinator::ca::SecretKeyKind::Ecdsa { size: 256 },
            &["db.internal".into()],
            30,
            now,
        )
        .unwrap();
    assert!(ca.workload_of(&der(&secret.cert_pem), &[], now).is_err());
}

#[test]
fn commits_move_one_version_at_a_time_with_a_compare_and_swap() {
    let f = fixture();
    let a = activate(&f, "db");
    let db = principal(&f.c, &a);
    let s = f.c.volume_state(&db, "data").unwrap();
    assert_eq!(
        (
            s.version,
            s.root.clone(),
            s.reinitialized,
            s.updated.clone()
        ),
        (0, None, 0, None)
    );
    assert_eq!(s.policy.as_str(), "rollback_protected");
    let s1 =
        f.c.commit_volume_state(&db, "data", &commit(0, 1, 0xaa), SystemTime::now())
            .unwrap();
    assert_eq!(s1.version, 1);
    assert_eq!(s1.root.as_deref(), Some("aa".repeat(32).as_str()));
    assert!(s1.updated.is_some());
    assert_eq!(f.c.volume_state(&db, "data").unwrap(), s1);
    // A stale writer (expected 0 again) conflicts and learns the current version.
    let e = assert_err(
        f.c.commit_volume_state(&db, "data", &commit(0, 1, 0xbb), SystemTime::now())
            .unwrap_err(),
        ErrorKind::Conflict,
        "volume_version_conflict",
    );
    assert_eq!(e.field.as_deref(), Some("expected_version"));
    let details = e.details.unwrap();
    assert_eq!(details.current_version, Some(1));
    assert_eq!(details.current_root, Some("aa".repeat(32)));
    // Versions move by exactly one.
    for (expected, version) in [(1, 3), (1, 1), (1, 0), (u64::MAX, 0)] {
        let e = assert_err(
            f.c.commit_volume_state(
                &db,
                "data",
                &commit(expected, version, 0xcc),
                SystemTime::now(),
            )
            .unwrap_err(),
            ErrorKind::Rejected,
            "invalid_volume_version",
        );
        assert_eq!(e.field.as_deref(), Some("version"));
    }
    // A version ahead of the coordinator's (expected 5, current 1) is a conflict too.
    assert_err(
        f.c.commit_volume_state(&db, "data", &commit(5, 6, 0xcc), SystemTime::now())
            .unwrap_err(),
        ErrorKind::Conflict,
        "volume_version_conflict",
    );
    // Nothing of the refused commits stuck.
    assert_eq!(f.c.volume_state(&db, "data").unwrap(), s1);
    // Another activation of the same workload continues from there.
    let b = activate(&f, "db");
    let db2 = principal(&f.c, &b);
    assert_eq!(db2, workload("db", 2));
    let s2 =
        f.c.commit_volume_state(&db2, "data", &commit(1, 2, 0xdd), SystemTime::now())
            .unwrap();
    assert_eq!(s2.version, 2);
    // Each commit is audited, by the activation that made it.
    let log = f.c.audit(&f.alice, 0, 1000).unwrap();
    let commits: Vec<(String, String, String)> = log
        .iter()
        .filter(|e| e.action.starts_with("volume."))
        .map(|e| (e.actor.clone(), e.action.clone(), e.target.clone()))
        .collect();
    assert_eq!(
        commits,
        [
            (
                "workload:db/1".to_string(),
                "volume.commit".to_string(),
                format!("data version 1 root {}", "aa".repeat(32))
            ),
            (
                "workload:db/2".to_string(),
                "volume.commit".to_string(),
                format!("data version 2 root {}", "dd".repeat(32))
            ),
        ]
    );
}

#[test]
fn concurrent_commits_from_the_same_version_have_one_winner() {
    let f = fixture();
    let db = workload("db", 1);
    let results: Vec<Result<u64, &'static str>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let (c, db) = (&f.c, &db);
                s.spawn(move || {
                    c.commit_volume_state(db, "data", &commit(0, 1, i), SystemTime::now())
                        .map(|v| v.version)
                        .map_err(|e| e.code.as_str())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.err())
            .all(|c| c == "volume_version_conflict")
    );
}

#[test]
fn reinitialize_is_for_reinitializable_volumes_only_and_is_counted() {
    let f = fixture();
    let db = workload("db", 1);
    let now = SystemTime::now();
    f.c.commit_volume_state(&db, "data", &commit(0, 1, 1), now)
        .unwrap();
    let reinit = |expected, version| CommitVolume {
        reinitialize: true,
        ..commit(expected, version, 9)
    };
    let e = assert_err(
        f.c.commit_volume_state(&db, "data", &reinit(1, 2), now)
            .unwrap_err(),
        ErrorKind::Conflict,
        "reinitialize_refused",
    );
    assert_eq!(e.field.as_deref(), Some("reinitialize"));
    assert_eq!(f.c.volume_state(&db, "data").unwrap().version, 1);
    // The reinitializable volume: normal commits, then a reset, which keeps counting up.
    f.c.commit_volume_state(&db, "cache", &commit(0, 1, 1), now)
        .unwrap();
    f.c.commit_volume_state(&db, "cache", &commit(1, 2, 2), now)
        .unwrap();
    let s =
        f.c.commit_volume_state(&db, "cache", &reinit(2, 3), now)
            .unwrap();
    assert_eq!((s.version, s.reinitialized), (3, 1));
    assert_eq!(s.policy.as_str(), "reinitializable");
    assert_eq!(s.root.as_deref(), Some("09".repeat(32).as_str()));
    // A reset is still a compare-and-swap: a stale one is refused.
    assert_err(
        f.c.commit_volume_state(&db, "cache", &reinit(2, 3), now)
            .unwrap_err(),
        ErrorKind::Conflict,
        "volume_version_conflict",
    );
    let s =
        f.c.commit_volume_state(&db, "cache", &commit(3, 4, 4), now)
            .unwrap();
    assert_eq!((s.version, s.reinitialized), (4, 1));
    let log = f.c.audit(&f.alice, 0, 1000).unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.action == "volume.reinitialize")
            .map(|e| e.target.clone())
            .collect::<Vec<_>>(),
        [format!(
            "cache reinitialized, version 3 root {}",
            "09".repeat(32)
        )]
    );
}

#[test]
fn ephemeral_and_unknown_volumes_have_no_state() {
    let f = fixture();
    let db = workload("db", 1);
    let now = SystemTime::now();
    assert_err(
        f.c.volume_state(&db, "scratch").unwrap_err(),
        ErrorKind::Conflict,
        "ephemeral_volume",
    );
    assert_err(
        f.c.commit_volume_state(&db, "scratch", &commit(0, 1, 1), now)
            .unwrap_err(),
        ErrorKind::Conflict,
        "ephemeral_volume",
    );
    for who in [&db, &f.alice] {
        let e = assert_err(
            f.c.volume_state(who, "nope").unwrap_err(),
            ErrorKind::NotFound,
            "not_found",
        );
        assert_eq!(e.field.as_deref(), Some("name"));
    }
    assert_err(
        f.c.commit_volume_state(&db, "nope", &commit(0, 1, 1), now)
            .unwrap_err(),
        ErrorKind::NotFound,
        "not_found",
    );
}

#[test]
fn only_workloads_mounting_the_volume_read_write_commit() {
    let f = fixture();
    let now = SystemTime::now();
    let c1 = commit(0, 1, 1);
    // A workload that mounts it read-only reads the state but cannot commit.
    let reader = workload("reader", 1);
    assert_eq!(f.c.volume_state(&reader, "data").unwrap().version, 0);
    let e = assert_err(
        f.c.commit_volume_state(&reader, "data", &c1, now)
            .unwrap_err(),
        ErrorKind::Forbidden,
        "forbidden",
    );
    assert!(e.message.contains("read-only"), "{e}");
    // A workload that does not mount it, or is not in the manifest, does neither.
    for who in [workload("other", 1), workload("ghost", 1)] {
        assert_err(
            f.c.volume_state(&who, "data").unwrap_err(),
            ErrorKind::Forbidden,
            "forbidden",
        );
        assert_err(
            f.c.commit_volume_state(&who, "data", &c1, now).unwrap_err(),
            ErrorKind::Forbidden,
            "forbidden",
        );
    }
    // reader mounts data, not cache.
    assert_err(
        f.c.volume_state(&reader, "cache").unwrap_err(),
        ErrorKind::Forbidden,
        "forbidden",
    );
    // Users: alice holds `read` on volumes data and cache; bob holds nothing; neither commits.
    assert_eq!(f.c.volume_state(&f.alice, "data").unwrap().version, 0);
    assert_err(
        f.c.commit_volume_state(&f.alice, "data", &c1, now)
            .unwrap_err(),
        ErrorKind::Forbidden,
        "forbidden",
    );
    assert_err(
        f.c.volume_state(&f.bob, "data").unwrap_err(),
        ErrorKind::Forbidden,
        "forbidden",
    );
    // Anonymous callers and unknown certificates are unauthenticated, before anything else.
    let (_, stranger) = user_cert();
    for who in [&Principal::Anonymous, &stranger] {
        assert_err(
            f.c.volume_state(who, "data").unwrap_err(),
            ErrorKind::Unauthenticated,
            "unauthenticated",
        );
        assert_err(
            f.c.volume_state(who, "nope").unwrap_err(),
            ErrorKind::Unauthenticated,
            "unauthenticated",
        );
        assert_err(
            f.c.commit_volume_state(who, "data", &c1, now).unwrap_err(),
            ErrorKind::Unauthenticated,
            "unauthenticated",
        );
    }
    // Workload certificates are not users.
    assert_err(
        f.c.audit(&workload("db", 1), 0, 10).unwrap_err(),
        ErrorKind::Unauthenticated,
        "unauthenticated",
    );
    // Nothing was committed.
    assert_eq!(f.c.volume_state(&f.alice, "data").unwrap().version, 0);
}

/// A volume sealed outside the coordinator: its key is a `plain` secret the owner sets (exactly
/// 32 bytes), activation refuses to start before it is set, and a user whose role allows `write`
/// on the volume registers its state (audited as that user), under the same CAS rules.
#[test]
fn sealed_volumes_take_their_key_from_a_secret_and_owners_commit_their_state() {
    let f = fixture();
    let now = SystemTime::now();
    // The coordinator made keys for its own volumes, none for the one sealed with a user's key.
    let stored = |name: &str| {
        confidant_coordinator::store::Store::get(
            f.c.store(),
            confidant_coordinator::core::tables::VOLUMES,
            name,
        )
        .unwrap()
        .is_some()
    };
    assert!(stored("data") && stored("cache"));
    assert!(!stored("code"), "a generated key for a key_secret volume");
    // Not set yet: the activation is refused, naming the secret, and spends no activation.
    let e = assert_err(
        try_activate(&f, "code").unwrap_err(),
        ErrorKind::Conflict,
        "volume_key_unset",
    );
    assert_eq!(e.field.as_deref(), Some("volumes.code.key_secret"), "{e}");
    assert!(e.message.contains("secret 'code_key'"), "{e}");
    assert!(e.message.contains("not set"), "{e}");
    // A value that is not a 32-byte key is refused when it is set.
    let e = assert_err(
        f.c.secret_put(&f.carol, "code_key", &[7u8; 16], now)
            .unwrap_err(),
        ErrorKind::Malformed,
        "malformed",
    );
    assert!(
        e.message.contains("expected exactly 32 bytes, got 16"),
        "{e}"
    );
    let key = [0x5au8; 32];
    f.c.secret_put(&f.carol, "code_key", &key, now).unwrap();
    let a = activate(&f, "code");
    assert_eq!(
        a.activation, "code/1",
        "the refused activation was not counted"
    );
    let g = &a.volumes[0];
    assert_eq!((g.volume.as_str(), g.read_only), ("code", true));
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(g.key.expose())
            .unwrap(),
        key
    );
    // Other volumes keep the coordinator's generated keys.
    let db = activate(&f, "db");
    assert!(db.volumes.iter().all(|v| v.key != g.key));

    // The owner registers the sealed volume's state (write implies read).
    assert_eq!(f.c.volume_state(&f.carol, "code").unwrap().version, 0);
    let s1 =
        f.c.commit_volume_state(&f.carol, "code", &commit(0, 1, 0x11), now)
            .unwrap();
    assert_eq!((s1.version, s1.policy.as_str()), (1, "rollback_protected"));
    // Same rules as for workloads: one version at a time, compare-and-swap.
    assert_err(
        f.c.commit_volume_state(&f.carol, "code", &commit(1, 3, 0x12), now)
            .unwrap_err(),
        ErrorKind::Rejected,
        "invalid_volume_version",
    );
    assert_err(
        f.c.commit_volume_state(&f.carol, "code", &commit(0, 1, 0x13), now)
            .unwrap_err(),
        ErrorKind::Conflict,
        "volume_version_conflict",
    );
    assert_err(
        f.c.commit_volume_state(
            &f.carol,
            "code",
            &CommitVolume {
                reinitialize: true,
                ..commit(1, 2, 0x14)
            },
            now,
        )
        .unwrap_err(),
        ErrorKind::Conflict,
        "reinitialize_refused",
    );
    // Its rule names `code` only; alice may only read; bob holds nothing.
    for (who, volume) in [
        (&f.carol, "data"),
        (&f.alice, "data"),
        (&f.alice, "code"),
        (&f.bob, "code"),
    ] {
        let e = assert_err(
            f.c.commit_volume_state(who, volume, &commit(0, 1, 0x15), now)
                .unwrap_err(),
            ErrorKind::Forbidden,
            "forbidden",
        );
        assert!(e.message.contains("'write'"), "{e}");
    }
    // The workload mounting it read-only reads the owner's state and cannot commit.
    let reader = principal(&f.c, &a);
    let s = f.c.volume_state(&reader, "code").unwrap();
    assert_eq!((s.version, s.root), (1, Some("11".repeat(32))));
    assert_err(
        f.c.commit_volume_state(&reader, "code", &commit(1, 2, 0x16), now)
            .unwrap_err(),
        ErrorKind::Forbidden,
        "forbidden",
    );
    // Audited with the user as actor.
    let log = f.c.audit(&f.alice, 0, 1000).unwrap();
    let commits: Vec<(&str, &str, &str)> = log
        .iter()
        .filter(|e| e.action.starts_with("volume."))
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        commits,
        [(
            "carol",
            "volume.commit",
            format!("code version 1 root {}", "11".repeat(32)).as_str()
        )]
    );
}
