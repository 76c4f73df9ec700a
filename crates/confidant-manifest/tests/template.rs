//! Rendering a workload's parameters for an activation.

use confidant_manifest::{
    Builtins, Manifest, SecretValue, SecretValues, template::render_parameters,
};

const YAML: &str = "apiVersion: confidant/v1
packages:
  p: {tee: tdx}
secrets:
  k: {type: symmetric-key, size: 128}
  tls: {type: cert-ecdsa}
  token: {type: plain}
workloads:
  web:
    package: p
    files:
      /etc/web/key.hex: '{{ k.hex }}'
      /etc/web/tls.pem: '{{ tls.cert }}{{ tls.key }}'
      /etc/web/ca.pem: '{{ confidant.root_ca }}'
    env:
      TOKEN: '{{ token.value }}'
      TOKEN_B64: '{{ token.base64 }}'
      WHO: '{{ confidant.workload }}@{{ confidant.coordinator }}'
    args: ['--cert={{ confidant.cert }}', '<&>']
";

fn values() -> SecretValues {
    let mut v = SecretValues::new();
    v.insert("k".into(), SecretValue::SymmetricKey(vec![0xab; 16]));
    v.insert(
        "tls".into(),
        SecretValue::Certificate {
            cert: "CERT\n".into(),
            key: "KEY\n".into(),
            public_key: "PUB\n".into(),
        },
    );
    v.insert("token".into(), SecretValue::Plain(b"s3cret".to_vec()));
    v
}

fn builtins() -> Builtins {
    Builtins {
        cert: "WCERT".into(),
        root_ca: "ROOT".into(),
        coordinator: "10.0.0.1:4433".into(),
    }
}

#[test]
fn renders_files_env_and_args_from_secrets_and_builtins() {
    let m = Manifest::from_yaml(YAML).unwrap();
    m.check().unwrap();
    let r = render_parameters("web", &m.workloads["web"], &values(), &builtins()).unwrap();
    assert_eq!(r.files["/etc/web/key.hex"], "ab".repeat(16));
    assert_eq!(r.files["/etc/web/tls.pem"], "CERT\nKEY\n");
    assert_eq!(r.files["/etc/web/ca.pem"], "ROOT");
    assert_eq!(r.env["TOKEN"], "s3cret");
    assert_eq!(r.env["TOKEN_B64"], "czNjcmV0");
    assert_eq!(r.env["WHO"], "web@10.0.0.1:4433");
    assert_eq!(r.args, ["--cert=WCERT", "<&>"]);
}

#[test]
fn refuses_to_render_with_a_secret_value_missing() {
    let m = Manifest::from_yaml(YAML).unwrap();
    let mut v = values();
    v.remove("token");
    let e = render_parameters("web", &m.workloads["web"], &v, &builtins()).unwrap_err();
    assert_eq!(e.to_string(), "env.TOKEN: unknown secret 'token'");
}

#[test]
fn plain_secret_that_is_not_utf8_has_no_value_attribute() {
    let m = Manifest::from_yaml(YAML).unwrap();
    let mut v = values();
    v.insert("token".into(), SecretValue::Plain(vec![0xff, 0xfe]));
    let e = render_parameters("web", &m.workloads["web"], &v, &builtins()).unwrap_err();
    assert_eq!(e.location, "env.TOKEN");
    assert!(e.message.starts_with("template: undefined value"), "{e}");
}

#[test]
fn the_workload_private_key_is_not_a_builtin() {
    // The agent's key never leaves the agent: a template naming it is refused at validation.
    let m = Manifest::from_yaml(&YAML.replace("'<&>'", "'{{ confidant.key }}'")).unwrap();
    let errors = m.check().unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.path.contains("workloads.web.args[1]")),
        "{errors:?}"
    );
}
