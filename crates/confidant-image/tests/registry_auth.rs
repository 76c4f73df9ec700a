//! Authentication and transport security against a real registry (Debian's docker-registry,
//! distribution 2.8): htpasswd Basic auth, Bearer tokens from a token server, HTTPS with a custom
//! CA, and plain HTTP refused off loopback.

mod registry_support;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use confidant_image::Error;
use confidant_image::registry::{
    Credentials, ImageRef, OCI_MANIFEST, RegistryClient, RegistryOptions,
};
use registry_support::{
    Config, Image, Registry, htpasswd_file, oci_image, percent_decode, read_request_head, tls_files,
};

async fn push_and_pull(client: &RegistryClient, target: &ImageRef, image: &Image) {
    for blob in [&image.config, &image.layer] {
        client
            .put_blob(
                target,
                &blob.digest,
                blob.size(),
                std::io::Cursor::new(blob.bytes.clone()),
            )
            .await
            .unwrap();
    }
    let digest = client
        .put_manifest(target, &image.manifest.bytes, OCI_MANIFEST)
        .await
        .unwrap();
    assert_eq!(client.get_manifest(target).await.unwrap().digest, digest);
    let mut out = Vec::new();
    client
        .get_blob(target, &image.layer.digest, None, &mut out)
        .await
        .unwrap();
    assert_eq!(out, image.layer.bytes);
}

fn client(registry: &Registry, credentials: Option<Credentials>) -> RegistryClient {
    let mut map = BTreeMap::new();
    if let Some(c) = credentials {
        map.insert(registry.host(), c);
    }
    RegistryClient::new(RegistryOptions {
        plain_http: true,
        credentials: map,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn basic_auth_is_refused_without_credentials_or_with_wrong_ones_and_accepted_with_right_ones()
{
    let dir = tempfile::tempdir().unwrap();
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config {
        htpasswd: Some(htpasswd_file(dir.path(), "alice", "s3cret")),
        ..Default::default()
    });
    let image = oci_image("linux", "amd64", b"private layer");
    let target = registry.image("confidant/private:v1");

    let e = client(&registry, None)
        .get_manifest(&target)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Registry { .. }), "{msg}");
    assert!(
        msg.contains("HTTP 401") && msg.contains("UNAUTHORIZED"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("no credentials for {}", registry.host())),
        "{msg}"
    );

    let wrong = client(&registry, Some(Credentials::basic("alice", "guess")));
    let msg = wrong.get_manifest(&target).await.unwrap_err().to_string();
    assert!(
        msg.contains("HTTP 401") && msg.contains("credentials: sent, from the client options"),
        "{msg}"
    );

    let right = client(&registry, Some(Credentials::basic("alice", "s3cret")));
    push_and_pull(&right, &target, &image).await;
}

#[tokio::test]
async fn credentials_are_read_from_a_docker_config_auth_file() {
    let dir = tempfile::tempdir().unwrap();
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config {
        htpasswd: Some(htpasswd_file(dir.path(), "bob", "from-file")),
        ..Default::default()
    });
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths": {{"http://{}": {{"auth": "{}"}}}}}}"#,
            registry.host(),
            STANDARD.encode("bob:from-file")
        ),
    )
    .unwrap();
    let client = RegistryClient::new(RegistryOptions {
        plain_http: true,
        auth_files: vec![dir.path().join("absent-auth.json"), config],
        ..Default::default()
    })
    .unwrap();
    push_and_pull(
        &client,
        &registry.image("confidant/from-file:v1"),
        &oci_image("linux", "amd64", b"l"),
    )
    .await;
}

/// (user, scopes) of each token request; user is None for anonymous ones.
type TokenLog = Arc<Mutex<Vec<(Option<String>, Vec<String>)>>>;

/// A token server as docker's token spec describes: Basic credentials in, an ES256 JWT out,
/// granting the scopes asked for. Its certificate is the registry's `rootcertbundle`.
struct TokenServer {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    requests: TokenLog,
}

const SERVICE: &str = "confidant-test-registry";
const ISSUER: &str = "confidant-test-issuer";

impl TokenServer {
    fn start(
        dir: &std::path::Path,
        user: &'static str,
        password: &'static str,
    ) -> (TokenServer, std::path::PathBuf) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "confidant token signer");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let bundle = dir.join("token-signer.pem");
        std::fs::write(&bundle, cert.pem()).unwrap();
        let cert_der = cert.der().to_vec();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = TokenLog::default();
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut serial = 0u64;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                let (mut stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                let Some(head) = read_request_head(&mut stream) else {
                    continue;
                };
                let target = head[0].split(' ').nth(1).unwrap_or_default().to_string();
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
                let scopes: Vec<String> = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .filter(|(k, _)| *k == "scope")
                    .map(|(_, v)| percent_decode(v))
                    .collect();
                let basic = head.iter().find_map(|h| {
                    let (name, value) = h.split_once(':')?;
                    if !name.eq_ignore_ascii_case("authorization") {
                        return None;
                    }
                    let b64 = value.trim().strip_prefix("Basic ")?;
                    String::from_utf8(STANDARD.decode(b64).ok()?).ok()
                });
                let user_ok = basic.as_deref() == Some(&format!("{user}:{password}"));
                requests2.lock().unwrap().push((
                    basic.map(|b| b.split(':').next().unwrap().to_string()),
                    scopes.clone(),
                ));
                let (status, body) = if user_ok {
                    serial += 1;
                    let token = jwt(&signer, &cert_der, user, &scopes, serial);
                    (
                        "200 OK",
                        format!(r#"{{"token":"{token}","expires_in":300}}"#),
                    )
                } else {
                    ("401 Unauthorized", r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad or missing credentials"}]}"#.to_string())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (
            TokenServer {
                url,
                stop,
                thread: Some(thread),
                requests,
            },
            bundle,
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An ES256 JWT in distribution's token format, its certificate in `x5c`.
fn jwt(
    signer: &ring::signature::EcdsaKeyPair,
    cert_der: &[u8],
    user: &str,
    scopes: &[String],
    serial: u64,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let rest = s.strip_prefix("repository:")?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({"type": "repository", "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let header =
        serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(cert_der)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 60, "iat": now - 60, "jti": format!("t{serial}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = signer
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn token_registry(dir: &std::path::Path) -> (Registry, TokenServer) {
    let (tokens, bundle) = TokenServer::start(dir, "carol", "t0ken-pw");
    let registry = Registry::start(Config {
        token: Some((tokens.url.clone(), SERVICE.into(), ISSUER.into(), bundle)),
        ..Default::default()
    });
    (registry, tokens)
}

#[tokio::test]
async fn token_auth_fetches_one_bearer_token_per_scope_with_basic_credentials() {
    if !registry_support::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (registry, tokens) = token_registry(dir.path());
    let client = client(&registry, Some(Credentials::basic("carol", "t0ken-pw")));
    push_and_pull(
        &client,
        &registry.image("confidant/app:v1"),
        &oci_image("linux", "amd64", b"tok"),
    )
    .await;

    let requests = tokens.requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        vec![
            (
                Some("carol".to_string()),
                vec!["repository:confidant/app:pull,push".to_string()]
            ),
            (
                Some("carol".to_string()),
                vec!["repository:confidant/app:pull".to_string()]
            ),
        ],
        "one token for pushing, one for pulling, each reused for every request of its scope"
    );
}

#[tokio::test]
async fn token_auth_without_credentials_fails_saying_the_token_server_refused() {
    if !registry_support::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (registry, tokens) = token_registry(dir.path());
    let e = client(&registry, None)
        .get_manifest(&registry.image("confidant/app:v1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("GET token from {}", tokens.url)), "{e}");
    assert!(
        e.contains("HTTP 401") && e.contains("bad or missing credentials"),
        "{e}"
    );
    assert!(e.contains("no credentials for"), "{e}");
    assert_eq!(tokens.requests.lock().unwrap()[0].0, None);
}

#[tokio::test]
async fn https_with_a_custom_ca_works_and_without_it_fails_saying_the_certificate_is_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config {
        tls: Some((cert, key)),
        ..Default::default()
    });
    let with_ca = RegistryClient::new(RegistryOptions {
        ca_file: Some(ca),
        ..Default::default()
    })
    .unwrap();
    let image = oci_image("linux", "amd64", b"over TLS");
    push_and_pull(&with_ca, &registry.image("confidant/tls:v1"), &image).await;
    // The certificate names localhost too, which resolves to loopback only.
    let by_name = ImageRef::parse(&format!(
        "localhost:{}/confidant/tls:v1",
        registry.addr.port()
    ))
    .unwrap();
    assert_eq!(
        with_ca.get_manifest(&by_name).await.unwrap().digest,
        image.manifest.digest
    );

    let without = RegistryClient::new(RegistryOptions::default()).unwrap();
    let e = without
        .get_manifest(&registry.image("confidant/tls:v1"))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Registry { .. }), "{msg}");
    assert!(
        msg.contains("certificate") && msg.contains("UnknownIssuer") && msg.contains("ca_file"),
        "{msg}"
    );
}

#[tokio::test]
async fn plain_http_to_a_non_loopback_host_is_refused_before_any_connection() {
    let client = RegistryClient::new(RegistryOptions {
        plain_http: true,
        ..Default::default()
    })
    .unwrap();
    let remote = ImageRef::parse("example.invalid:5000/confidant/app:v1").unwrap();
    let digest = confidant_image::registry::sha256_digest(b"x");
    let started = Instant::now();
    let errors = [
        client.get_manifest(&remote).await.unwrap_err(),
        client.blob_exists(&remote, &digest).await.unwrap_err(),
        client
            .get_blob(&remote, &digest, None, &mut Vec::new())
            .await
            .unwrap_err(),
        client
            .put_blob(&remote, &digest, 1, std::io::Cursor::new(b"x".to_vec()))
            .await
            .unwrap_err(),
        client
            .put_manifest(&remote, b"{}", OCI_MANIFEST)
            .await
            .unwrap_err(),
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(
            msg.contains("plain HTTP refused: example.invalid is not a loopback host")
                && msg.contains("no connection was made"),
            "{msg}"
        );
    }
    // Refused before any name resolution or connection attempt.
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn https_to_a_plain_http_registry_says_it_may_be_plain_http() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let https = RegistryClient::new(RegistryOptions::default()).unwrap();
    let msg = https
        .get_manifest(&registry.image("confidant/app:v1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("does the registry serve plain HTTP on this port"),
        "{msg}"
    );
}
