//! The real coordinator binary under stress: kill -9 during a storm of manifest updates,
//! secret writes and activations (every acknowledged write survives, the state stays
//! consistent, no plaintext secret on disk), and recovery with 2 of 3 owners' keys after the
//! sealing key is lost. The client side is `curl`, so these tests do not depend on our client.

mod coord;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::sim::SimPlatform;
use coord::{
    Client, MEASURED, Workload, confidant, indent, put_secret, secret_value, setup, start,
};
use serde_json::{Value, json};

fn manifest(alice_pem: &str, generation: u64, recovery: &str) -> String {
    let m = hex::encode(SimAttester::measure(MEASURED));
    format!(
        r#"apiVersion: confidant/v1
packages:
  app:
    tee: sim
    reference_values:
      measurements: ["{m}"]
workloads:
  w:
    package: app
    env:
      GENERATION: "{generation}"
      KEY: "{{{{ k.hex }}}}"
      TOKEN: "{{{{ token.value }}}}"
secrets:
  k: {{type: symmetric-key, size: 256}}
  token: {{type: plain}}
users:
  alice:
    certificate: |
{alice}roles:
  admin:
    users: [alice]
    rules:
      - {{resource: manifest, actions: [update]}}
      - {{resource: secrets, actions: [read, write]}}
{recovery}config:
  allow_simulation: true
"#,
        alice = indent(alice_pem, 6)
    )
}

#[test]
fn kill_9_during_a_storm_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (home, alice_pem, cert, key) = setup(dir.path());
    let mut coordinator = start(&home);
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (code, v) = anon.call(
        "POST",
        "/api/v1/manifest",
        Some(manifest(&alice_pem, 0, "").as_bytes()),
    );
    assert_eq!(code, 201, "{v}");
    let alice = Client {
        url: coordinator.url.clone(),
        cert: Some((cert.clone(), key.clone())),
    };
    assert_eq!(put_secret(&alice, "token", b"PLAINTEXT-MARKER-0"), 200);
    let mut acked_generation = 0u64;
    let mut acked_token = 0u64;
    let mut acked_activations = 0u64;
    let workload = Arc::new(Workload::new(&home));
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(acked_generation));
        let token = Arc::new(AtomicU64::new(acked_token));
        let activations = Arc::new(AtomicU64::new(0));
        let url = coordinator.url.clone();
        let mut threads = Vec::new();
        {
            let (stop, generation, url, cert, key, pem) = (
                stop.clone(),
                generation.clone(),
                url.clone(),
                cert.clone(),
                key.clone(),
                alice_pem.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let c = Client {
                    url,
                    cert: Some((cert, key)),
                };
                while !stop.load(Ordering::SeqCst) {
                    let next = generation.load(Ordering::SeqCst) + 1;
                    if c.call(
                        "POST",
                        "/api/v1/manifest",
                        Some(manifest(&pem, next, "").as_bytes()),
                    )
                    .0 == 201
                    {
                        generation.store(next, Ordering::SeqCst);
                    }
                }
            }));
        }
        {
            let (stop, token, url, cert, key) = (
                stop.clone(),
                token.clone(),
                url.clone(),
                cert.clone(),
                key.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let c = Client {
                    url,
                    cert: Some((cert, key)),
                };
                while !stop.load(Ordering::SeqCst) {
                    let next = token.load(Ordering::SeqCst) + 1;
                    if put_secret(&c, "token", format!("PLAINTEXT-MARKER-{next}").as_bytes()) == 200
                    {
                        token.store(next, Ordering::SeqCst);
                    }
                }
            }));
        }
        for _ in 0..2 {
            let (stop, activations, url, w) = (
                stop.clone(),
                activations.clone(),
                url.clone(),
                workload.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let c = Client { url, cert: None };
                while !stop.load(Ordering::SeqCst) {
                    if w.activate(&c).0 == 200 {
                        activations.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        // The load runs once each kind of write has been acknowledged (bounded wait) ...
        let deadline = Instant::now() + Duration::from_secs(60);
        while generation.load(Ordering::SeqCst) == acked_generation
            || token.load(Ordering::SeqCst) == acked_token
            || activations.load(Ordering::SeqCst) == 0
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: not every kind of write was acknowledged within 60 s \
                 (manifest generation {}, token {}, activations {})",
                generation.load(Ordering::SeqCst),
                token.load(Ordering::SeqCst),
                activations.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // ... and then goes on for a time that differs per round, so that the SIGKILL lands at
        // a different point of the write traffic: this sleep is the test's pacing, not a wait.
        std::thread::sleep(Duration::from_millis(1000 + 500 * round));
        // SIGKILL while requests are in flight, then let the clients see the failures.
        let _ = coordinator.child.kill();
        let _ = coordinator.child.wait();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        acked_generation = generation.load(Ordering::SeqCst);
        acked_token = token.load(Ordering::SeqCst);
        acked_activations += activations.load(Ordering::SeqCst);
        assert!(
            acked_activations > 0,
            "round {round}: no activation acknowledged"
        );

        coordinator = start(&home);
        let anon = Client {
            url: coordinator.url.clone(),
            cert: None,
        };
        let alice = Client {
            url: coordinator.url.clone(),
            cert: Some((cert.clone(), key.clone())),
        };
        // Every acknowledged write is there (a write in flight at the kill may also be).
        let (_, current) = anon.call("GET", "/api/v1/manifest", None);
        let g: u64 = current["manifest"]["workloads"]["w"]["env"]["GENERATION"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            g == acked_generation || g == acked_generation + 1,
            "round {round}: generation {g}, acknowledged {acked_generation}"
        );
        acked_generation = g;
        let t = String::from_utf8(secret_value(&alice, "token")).unwrap();
        let t: u64 = t.trim_start_matches("PLAINTEXT-MARKER-").parse().unwrap();
        assert!(
            t == acked_token || t == acked_token + 1,
            "round {round}: token {t}, acknowledged {acked_token}"
        );
        acked_token = t;
        let (_, status) = anon.call("GET", "/api/v1/status", None);
        let counted = status["activations"]["w"].as_u64().unwrap();
        assert!(
            counted >= acked_activations && counted <= acked_activations + 2,
            "round {round}: counted {counted}, acknowledged {acked_activations}"
        );
        acked_activations = counted;
        // Consistency: the manifest chain links, the audit log has no gap and one entry per
        // counted activation.
        let version = current["version"].as_u64().unwrap();
        let mut previous = Value::Null;
        for v in 1..=version {
            let (code, r) = anon.call("GET", &format!("/api/v1/manifest?version={v}"), None);
            assert_eq!(code, 200);
            assert_eq!(r["previous"], previous, "version {v}");
            previous = r["hash"].clone();
        }
        let mut seqs = Vec::new();
        let mut activate_entries = 0;
        loop {
            let after = seqs.last().copied().unwrap_or(0);
            let (code, log) = alice.call("GET", &format!("/api/v1/audit?after={after}"), None);
            assert_eq!(code, 200, "{log}");
            let entries = log["entries"].as_array().unwrap().clone();
            if entries.is_empty() {
                break;
            }
            for e in entries {
                seqs.push(e["seq"].as_u64().unwrap());
                if e["action"] == "activate" {
                    activate_entries += 1;
                }
            }
        }
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert_eq!(activate_entries, counted);
    }
    // The state directory holds no plaintext secret.
    let alice = Client {
        url: coordinator.url.clone(),
        cert: Some((cert, key)),
    };
    let k = secret_value(&alice, "k");
    drop(coordinator);
    let needles: Vec<Vec<u8>> = vec![
        b"PLAINTEXT-MARKER".to_vec(),
        k.clone(),
        hex::encode(&k).into_bytes(),
        STANDARD.encode(&k).into_bytes(),
    ];
    let state = home.join("coordinator");
    let mut files = 0;
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        files += 1;
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == &n[..]),
                "{} contains a plaintext secret",
                path.display()
            );
        }
    }
    assert!(files >= 1);
}

fn rsa_owner(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.pem"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    (key, String::from_utf8(public.stdout).unwrap())
}

#[test]
fn two_of_three_owners_recover_the_state_after_the_sealing_key_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (home, alice_pem, cert, key) = setup(dir.path());
    let owners: Vec<(PathBuf, String)> = ["o1", "o2", "o3"]
        .iter()
        .map(|n| rsa_owner(dir.path(), n))
        .collect();
    let mut recovery = String::from("recovery:\n  threshold: 2\n  keys:\n");
    for (i, (_, public)) in owners.iter().enumerate() {
        recovery.push_str(&format!("    o{}: |\n{}", i + 1, indent(public, 6)));
    }
    let coordinator = start(&home);
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (code, set) = anon.call(
        "POST",
        "/api/v1/manifest",
        Some(manifest(&alice_pem, 1, &recovery).as_bytes()),
    );
    assert_eq!(code, 201, "{set}");
    assert_eq!(set["recovery"]["shares"].as_array().unwrap().len(), 3);
    let alice = Client {
        url: coordinator.url.clone(),
        cert: Some((cert.clone(), key.clone())),
    };
    assert_eq!(put_secret(&alice, "token", b"survives recovery"), 200);
    let k = secret_value(&alice, "k");
    let (_, before) = anon.call("GET", "/api/v1/manifest", None);
    drop(coordinator);

    // The sealing key is lost: a new simulation platform (another machine).
    std::fs::remove_dir_all(SimPlatform::dir(&home)).unwrap();
    assert!(
        confidant(&home)
            .args(["attest", "sim", "init"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let coordinator = start(&home);
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (_, status) = anon.call("GET", "/api/v1/status", None);
    assert_eq!(status["state"], "recovery", "{status}");
    let (code, e) = anon.call("GET", "/api/v1/manifest", None);
    assert_eq!(code, 409, "{e}");
    assert_eq!(e["error"]["code"], "wrong_state");
    let (code, shares) = anon.call("GET", "/api/v1/recovery", None);
    assert_eq!(code, 200);
    // Owners 1 and 3 decrypt their shares and send them.
    let mut answers = Vec::new();
    for (i, (key_path, _)) in owners.iter().enumerate().filter(|(i, _)| *i != 1) {
        let owner = format!("o{}", i + 1);
        let record = shares["shares"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["owner"] == owner.as_str())
            .unwrap();
        let encrypted: confidant_coordinator::recovery::EncryptedShare =
            serde_json::from_value(json!({
                "owner_key_id": record["owner_key_id"],
                "ciphertext": record["ciphertext"],
            }))
            .unwrap();
        let private = std::fs::read_to_string(key_path).unwrap();
        let share = confidant_coordinator::recovery::decrypt_share(&encrypted, &private).unwrap();
        let body = json!({"share": STANDARD.encode(share.as_bytes())});
        let (code, a) = anon.call("POST", "/api/v1/recover", Some(body.to_string().as_bytes()));
        assert_eq!(code, 200, "{a}");
        answers.push(a);
        if i == 0 {
            // The same share twice does not count twice.
            let (code, again) =
                anon.call("POST", "/api/v1/recover", Some(body.to_string().as_bytes()));
            assert_eq!(code, 409, "{again}");
        }
    }
    assert_eq!(answers[0]["state"], "recovery");
    assert_eq!(answers[0]["received"], 1);
    assert_eq!(answers[1]["state"], "running");
    // The state is back, and now sealed to this machine: a restart needs no recovery.
    let alice = Client {
        url: coordinator.url.clone(),
        cert: Some((cert.clone(), key.clone())),
    };
    assert_eq!(secret_value(&alice, "token"), b"survives recovery");
    assert_eq!(secret_value(&alice, "k"), k);
    let (_, after) = anon.call("GET", "/api/v1/manifest", None);
    assert_eq!(after["hash"], before["hash"]);
    drop(coordinator);
    let coordinator = start(&home);
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (_, status) = anon.call("GET", "/api/v1/status", None);
    assert_eq!(status["state"], "running", "{status}");
}
