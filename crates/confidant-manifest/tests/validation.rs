//! Every validation rule, each with a manifest that breaks it and the exact `path: message`.

use confidant_manifest::{Manifest, ValidationError};

const ALICE_CRT: &str = include_str!("data/alice.crt");
const RSA_A: &str = include_str!("data/rsa2048-a.pub");
const RSA_B: &str = include_str!("data/rsa2048-b.pub");
const RSA_A_PKCS1: &str = include_str!("data/rsa2048-a.pkcs1.pem");
const RSA_1024: &str = include_str!("data/rsa1024.pub");
const ED25519: &str = include_str!("data/ed25519.pub");

const BASE: &str = "apiVersion: confidant/v1
packages:
  web: {tee: tdx}
workloads:
  web: {package: web}
";

/// Parses `yaml` (which must parse) and returns its validation errors as `path: message`.
fn errors(yaml: &str) -> Vec<String> {
    let m = Manifest::from_yaml(yaml).unwrap_or_else(|e| panic!("does not parse: {e}"));
    match m.check() {
        Ok(()) => vec![],
        Err(errs) => errs.iter().map(ValidationError::to_string).collect(),
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn base_manifest_is_valid() {
    assert_eq!(errors(BASE), Vec::<String>::new());
}

#[test]
fn rejects_other_api_version() {
    let y = BASE.replace("confidant/v1", "confidant/v2");
    assert_eq!(
        errors(&y),
        ["apiVersion: expected \"confidant/v1\", got \"confidant/v2\""]
    );
}

#[test]
fn rejects_workload_naming_unknown_package() {
    let y = format!("{BASE}  api: {{package: nope}}\n");
    assert_eq!(
        errors(&y),
        ["workloads.api.package: unknown package 'nope'"]
    );
}

#[test]
fn rejects_sim_package_without_allow_simulation() {
    let y = "apiVersion: confidant/v1\npackages:\n  dev: {tee: sim}\n";
    assert_eq!(
        errors(y),
        [
            "packages.dev.tee: sim packages require config.allow_simulation: true (simulation gives no hardware protection)"
        ]
    );
    let allowed = format!("{y}config: {{allow_simulation: true}}\n");
    assert_eq!(errors(&allowed), Vec::<String>::new());
}

#[test]
fn rejects_reference_values_for_another_tee() {
    let y = "apiVersion: confidant/v1
packages:
  web:
    tee: sgx
    reference_values:
      tee: tdx
      tdx: {rtmr_0: '00'}
      snp: {max_vmpl: 0}
";
    assert_eq!(
        errors(y),
        [
            "packages.web.reference_values.tee: expected sgx (the package's tee), got tdx",
            "packages.web.reference_values.tdx: a tdx section needs tee: tdx, the package has tee: sgx",
            "packages.web.reference_values.snp: an snp section needs tee: snp, the package has tee: sgx",
        ]
    );
}

#[test]
fn rejects_fixed_report_data_in_package() {
    let y = "apiVersion: confidant/v1\npackages:\n  web: {tee: snp, reference_values: {report_data: 'aa'}}\n";
    assert_eq!(
        errors(y),
        [
            "packages.web.reference_values.report_data: report data is bound per activation by the coordinator; it cannot be fixed in a package"
        ]
    );
}

#[test]
fn rejects_malformed_image_digests() {
    let good = format!("sha256:{}", "ab".repeat(32));
    let y = format!(
        "apiVersion: confidant/v1\npackages:\n  web:\n    tee: tdx\n    image_digests: ['{good}', 'sha256:abc', 'sha512:{}', 'sha256:{}']\n",
        "ab".repeat(32),
        "AB".repeat(32)
    );
    assert_eq!(
        errors(&y),
        [
            "packages.web.image_digests[1]: expected sha256:<64 lowercase hex digits>, got \"sha256:abc\"".to_string(),
            format!("packages.web.image_digests[2]: expected sha256:<64 lowercase hex digits>, got \"sha512:{}\"", "ab".repeat(32)),
            format!("packages.web.image_digests[3]: expected sha256:<64 lowercase hex digits>, got \"sha256:{}\"", "AB".repeat(32)),
        ]
    );
}

#[test]
fn rejects_zero_max_activations() {
    let y = BASE.replace("{package: web}", "{package: web, max_activations: 0}");
    assert_eq!(
        errors(&y),
        ["workloads.web.max_activations: expected at least 1, got 0"]
    );
    let one = BASE.replace("{package: web}", "{package: web, max_activations: 1}");
    assert_eq!(errors(&one), Vec::<String>::new());
}

#[test]
fn template_naming_missing_secret_refuses_manifest() {
    let y = BASE.replace(
        "{package: web}",
        "{package: web, files: {/etc/x: 'url={{ db.cert }}'}}",
    );
    assert_eq!(
        errors(&y),
        ["workloads.web.files./etc/x: unknown secret 'db'"]
    );
}

#[test]
fn template_dry_run_covers_env_and_args() {
    let y = BASE.replace(
        "{package: web}",
        "{package: web, env: {TOKEN: '{{ token.value }}'}, args: [ok, '--key={{ k.hex }}{{ j.hex }}']}",
    );
    assert_eq!(
        errors(&y),
        [
            "workloads.web.env.TOKEN: unknown secret 'token'",
            "workloads.web.args[1]: unknown secrets 'j', 'k'",
        ]
    );
}

#[test]
fn template_with_attribute_the_secret_type_lacks_refuses_manifest() {
    let y = format!(
        "{}secrets:\n  k: {{type: symmetric-key, size: 256}}\n",
        BASE.replace("{package: web}", "{package: web, env: {K: '{{ k.cert }}'}}")
    );
    let errs = errors(&y);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("workloads.web.env.K: template: undefined value"),
        "{errs:?}"
    );
}

#[test]
fn template_syntax_error_refuses_manifest() {
    let y = BASE.replace("{package: web}", "{package: web, args: ['{{ oops']}");
    let errs = errors(&y);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("workloads.web.args[0]: template syntax: "),
        "{errs:?}"
    );
}

#[test]
fn templates_may_use_declared_secrets_and_builtins() {
    let y = format!(
        "{}secrets:\n  k: {{type: symmetric-key, size: 256}}\n  c: {{type: cert-ed25519}}\n  p: {{type: plain}}\n",
        BASE.replace(
            "{package: web}",
            "{package: web, files: {/a: '{{ k.hex }}{{ k.base64 }}{{ c.cert }}{{ c.key }}{{ c.public_key }}{{ p.value }}{{ p.base64 }}'}, args: ['{{ confidant.cert }}{{ confidant.root_ca }}{{ confidant.coordinator }}{{ confidant.workload }}', '{% for i in range(2) %}{{ i }}{% endfor %}']}"
        )
    );
    assert_eq!(errors(&y), Vec::<String>::new());
}

#[test]
fn rejects_relative_file_paths_and_bad_env_names() {
    let y = BASE.replace(
        "{package: web}",
        "{package: web, files: {etc/x: a, /a/../b: b}, env: {'A=B': c}}",
    );
    assert_eq!(
        errors(&y),
        [
            "workloads.web.files./a/../b: expected an absolute path without '..' components",
            "workloads.web.files.etc/x: expected an absolute path without '..' components",
            "workloads.web.env.A=B: expected an environment variable name (not empty, no '=' or NUL)",
        ]
    );
}

#[test]
fn rejects_secret_names_templates_cannot_use() {
    let y = format!("{BASE}secrets:\n  my-key: {{type: plain}}\n  confidant: {{type: plain}}\n");
    assert_eq!(
        errors(&y),
        [
            "secrets.confidant: 'confidant' is reserved in templates",
            "secrets.my-key: expected an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters): templates name secrets as variables",
        ]
    );
}

#[test]
fn rejects_bad_section_names() {
    let y = "apiVersion: confidant/v1\npackages:\n  'web app': {tee: tdx}\n";
    assert_eq!(
        errors(y),
        [
            "packages.web app: expected a name of 1 to 63 letters, digits, '-' or '_', starting with a letter or digit"
        ]
    );
}

#[test]
fn rejects_secret_parameters_out_of_range() {
    let y = format!(
        "{BASE}secrets:
  a: {{type: symmetric-key, size: 100}}
  b: {{type: cert-ecdsa, size: 521, validity_days: 0}}
  c: {{type: cert-rsa, size: 1024, sans: ['ok.example', '10.0.0.1', 'bad name', '-x.example']}}
"
    );
    assert_eq!(
        errors(&y),
        [
            "secrets.a.size: expected a multiple of 8 bits from 128 to 1024, got 100",
            "secrets.b.size: expected 256 or 384, got 521",
            "secrets.b.validity_days: expected 1 to 3650, got 0",
            "secrets.c.size: expected 2048, 3072 or 4096, got 1024",
            "secrets.c.sans[2]: expected a DNS name or an IP address, got \"bad name\"",
            "secrets.c.sans[3]: expected a DNS name or an IP address, got \"-x.example\"",
        ]
    );
}

#[test]
fn rejects_user_certificate_that_is_not_pem_x509() {
    let y = format!(
        "{BASE}users:\n  alice: {{certificate: {}}}\n  bob: {{certificate: {}}}\n",
        json_str(ALICE_CRT),
        json_str(RSA_A)
    );
    let errs = errors(&y);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("users.bob.certificate: expected a PEM X.509 certificate: "),
        "{errs:?}"
    );
}

#[test]
fn rejects_roles_naming_unknown_users() {
    let y = format!(
        "{BASE}users:\n  alice: {{certificate: {}}}\nroles:\n  ops:\n    users: [alice, mallory]\n    rules: [{{resource: recovery, actions: [recover]}}]\n",
        json_str(ALICE_CRT)
    );
    assert_eq!(errors(&y), ["roles.ops.users[1]: unknown user 'mallory'"]);
}

#[test]
fn rejects_invalid_role_resources_actions_and_names() {
    let y = format!(
        "{BASE}secrets:
  cert: {{type: cert-ecdsa}}
  token: {{type: plain}}
roles:
  ops:
    rules:
      - {{resource: manifest, actions: [update, delete]}}
      - {{resource: clusters, actions: [read]}}
      - {{resource: secrets, names: [token, cert, nope], actions: [read, write]}}
      - {{resource: packages, names: [web, db], actions: [update-svn]}}
      - {{resource: recovery, names: [x], actions: []}}
"
    );
    assert_eq!(
        errors(&y),
        [
            "roles.ops.rules[0].actions[1]: action \"delete\" is not valid for resource manifest; expected update",
            "roles.ops.rules[1].resource: expected manifest, secrets, packages, recovery or volumes, got \"clusters\"",
            "roles.ops.rules[2].names[1]: secret 'cert' is cert-ecdsa: only plain secrets can be written by users",
            "roles.ops.rules[2].names[2]: unknown secret 'nope'",
            "roles.ops.rules[3].names[1]: unknown package 'db'",
            "roles.ops.rules[4].actions: expected at least one action",
            "roles.ops.rules[4].names: resource recovery takes no names",
        ]
    );
}

fn recovery(threshold: u32, keys: &[(&str, &str)]) -> String {
    let mut y = format!("{BASE}recovery:\n  threshold: {threshold}\n  keys:\n");
    for (name, pem) in keys {
        y.push_str(&format!("    {name}: {}\n", json_str(pem)));
    }
    y
}

#[test]
fn accepts_spki_and_pkcs1_rsa_recovery_keys() {
    assert_eq!(
        errors(&recovery(
            2,
            &[("a", RSA_A), ("b", RSA_B), ("c", RSA_A_PKCS1)]
        )),
        Vec::<String>::new()
    );
}

#[test]
fn rejects_recovery_threshold_out_of_range() {
    assert_eq!(
        errors(&recovery(3, &[("a", RSA_A), ("b", RSA_B)])),
        ["recovery.threshold: expected 1 to 2 (the number of keys), got 3"]
    );
    assert_eq!(
        errors(&recovery(0, &[("a", RSA_A)])),
        ["recovery.threshold: expected 1 to 1 (the number of keys), got 0"]
    );
    assert_eq!(
        errors(&recovery(1, &[])),
        [
            "recovery.keys: expected at least one recovery key",
            "recovery.threshold: expected 1 to 0 (the number of keys), got 1",
        ]
    );
}

#[test]
fn rejects_recovery_keys_that_are_not_rsa_or_too_small() {
    assert_eq!(
        errors(&recovery(
            1,
            &[
                ("a", RSA_A),
                ("ed", ED25519),
                ("junk", "hello"),
                ("small", RSA_1024)
            ]
        )),
        [
            "recovery.keys.ed: expected an RSA public key in PEM (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)",
            "recovery.keys.junk: expected an RSA public key in PEM (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)",
            "recovery.keys.small: expected at least 2048 bits, got 1024",
        ]
    );
}

#[test]
fn rejects_bad_volumes_and_mounts() {
    let y = format!(
        "{}volumes:\n  data: {{size: 1GiB}}\n  zero: {{size: '0'}}\n  odd: {{size: 5XB}}\n",
        BASE.replace(
            "{package: web}",
            "{package: web, volumes: [{volume: data, path: /d}, {volume: nope, path: rel}, {volume: data, path: /d}]}"
        )
    );
    assert_eq!(
        errors(&y),
        [
            "workloads.web.volumes[1].volume: unknown volume 'nope'",
            "workloads.web.volumes[1].path: expected an absolute path without '..' components, got \"rel\"",
            "workloads.web.volumes[2].path: /d is mounted twice",
            "volumes.odd.size: expected a positive size (bytes, or a number with KiB, MiB, GiB or TiB), got \"5XB\"",
            "volumes.zero.size: expected a positive size (bytes, or a number with KiB, MiB, GiB or TiB), got \"0\"",
        ]
    );
}

#[test]
fn volume_policies_default_to_rollback_protected_and_keep_the_hash() {
    use confidant_manifest::VolumePolicy;
    let plain = format!("{BASE}volumes:\n  data: {{size: 1GiB}}\n");
    let explicit = format!("{BASE}volumes:\n  data: {{size: 1GiB, policy: rollback_protected}}\n");
    let (a, b) = (
        Manifest::from_yaml(&plain).unwrap(),
        Manifest::from_yaml(&explicit).unwrap(),
    );
    assert_eq!(a.volumes["data"].policy, VolumePolicy::RollbackProtected);
    // The default is left out of the canonical form: manifests from before the field keep
    // their hash (the coordinator re-checks stored manifests' hashes when it loads them).
    assert_eq!(a.canonical_json(), b.canonical_json());
    assert!(!a.canonical_json().contains("\"policy\""));
    assert_eq!(errors(&plain), Vec::<String>::new());
    for (word, policy) in [
        ("reinitializable", VolumePolicy::Reinitializable),
        ("ephemeral", VolumePolicy::Ephemeral),
    ] {
        let y = format!("{BASE}volumes:\n  data: {{size: 1GiB, policy: {word}}}\n");
        let m = Manifest::from_yaml(&y).unwrap();
        assert_eq!(m.volumes["data"].policy, policy);
        assert!(
            m.canonical_json()
                .contains(&format!("\"policy\":\"{word}\""))
        );
        assert_ne!(m.canonical_hash(), a.canonical_hash());
        assert_eq!(errors(&y), Vec::<String>::new());
    }
    let e = Manifest::from_yaml(&format!(
        "{BASE}volumes:\n  data: {{size: 1GiB, policy: forever}}\n"
    ))
    .unwrap_err();
    assert_eq!(e.path, "volumes.data.policy");
    assert!(e.message.contains("rollback_protected"), "{e}");
}

#[test]
fn rejects_read_only_mounts_of_ephemeral_volumes_and_unknown_volume_rules() {
    let y = format!(
        "{}volumes:\n  scratch: {{size: 1MiB, policy: ephemeral}}\nroles:\n  ops:\n    rules:\n      - {{resource: volumes, names: [scratch, nope], actions: [read, write, delete]}}\n",
        BASE.replace(
            "{package: web}",
            "{package: web, volumes: [{volume: scratch, path: /s, read_only: true}]}"
        )
    );
    assert_eq!(
        errors(&y),
        [
            "workloads.web.volumes[0].read_only: volume 'scratch' is ephemeral (empty at every activation): a read-only mount of it is always empty",
            "roles.ops.rules[0].actions[2]: action \"delete\" is not valid for resource volumes; expected read or write",
            "roles.ops.rules[0].names[1]: unknown volume 'nope'",
        ]
    );
}

#[test]
fn a_volume_key_secret_names_a_plain_secret_and_keeps_old_hashes() {
    let y = format!(
        "{BASE}secrets:\n  code_key: {{type: plain}}\n  gen: {{type: symmetric-key, size: 256}}\nvolumes:\n  code: {{size: 1MiB, key_secret: code_key}}\n  a: {{size: 1MiB, key_secret: gen}}\n  b: {{size: 1MiB, key_secret: nope}}\n  c: {{size: 1MiB, policy: ephemeral, key_secret: code_key}}\nroles:\n  ops:\n    rules:\n      - {{resource: volumes, names: [code], actions: [read, write]}}\n"
    );
    assert_eq!(
        errors(&y),
        [
            "volumes.a.key_secret: secret 'gen' is symmetric-key: a volume key must be a plain secret users set (to the 32 bytes of the key the volume was sealed with)",
            "volumes.b.key_secret: unknown secret 'nope'",
            "volumes.c.key_secret: volume 'c' is ephemeral: it gets a fresh key at every activation, it cannot take its key from a secret",
        ]
    );
    let ok = format!(
        "{BASE}secrets:\n  code_key: {{type: plain}}\nvolumes:\n  code: {{size: 1MiB, key_secret: code_key}}\n"
    );
    assert_eq!(errors(&ok), Vec::<String>::new());
    let m = Manifest::from_yaml(&ok).unwrap();
    assert_eq!(m.volumes["code"].key_secret.as_deref(), Some("code_key"));
    // Absent, it is left out of the canonical form (manifests from before keep their hash).
    let without =
        Manifest::from_yaml(&format!("{BASE}volumes:\n  code: {{size: 1MiB}}\n")).unwrap();
    assert!(!without.canonical_json().contains("key_secret"));
    assert!(m.canonical_json().contains("\"key_secret\":\"code_key\""));
}

#[test]
fn rejects_bad_mesh_ports_and_peers() {
    let y = "apiVersion: confidant/v1
packages:
  p: {tee: tdx}
workloads:
  api:
    package: p
    mesh:
      ingress:
        - {name: https, port: 443, target_port: 0}
        - {name: https, port: 443, target_port: 70000}
  web:
    package: p
    mesh:
      egress:
        - {workload: api, port: 8443, local_port: 1}
        - {workload: ghost, port: 1, local_port: 65536}
";
    assert_eq!(
        errors(y),
        [
            "workloads.api.mesh.ingress[0].target_port: expected a port from 1 to 65535, got 0",
            "workloads.api.mesh.ingress[1].name: 'https' is used twice",
            "workloads.api.mesh.ingress[1].target_port: expected a port from 1 to 65535, got 70000",
            "workloads.api.mesh.ingress[1].port: port 443 is used twice",
            "workloads.web.mesh.egress[0].port: workload 'api' has no mesh ingress port 8443 (it has {443})",
            "workloads.web.mesh.egress[1].local_port: expected a port from 1 to 65535, got 65536",
            "workloads.web.mesh.egress[1].workload: unknown workload 'ghost'",
        ]
    );
}

#[test]
fn rejects_bad_update_policy() {
    let y = format!("{BASE}config:\n  update_policy: {{manifest: sometimes}}\n");
    assert_eq!(
        errors(&y),
        ["config.update_policy.manifest: expected roles or frozen, got \"sometimes\""]
    );
    let y = format!("{BASE}config:\n  update_policy: {{approvals: 0}}\n");
    assert_eq!(
        errors(&y),
        ["config.update_policy.approvals: expected at least 1, got 0"]
    );
    let y = format!(
        "{BASE}users:\n  alice: {{certificate: {}}}\nroles:\n  o: {{users: [alice], rules: [{{resource: manifest, actions: [update]}}]}}\nconfig:\n  update_policy: {{approvals: 2}}\n",
        json_str(ALICE_CRT)
    );
    assert_eq!(
        errors(&y),
        [
            "config.update_policy.approvals: 2 approvals needed but only 1 users may update the manifest"
        ]
    );
}

#[test]
fn rejects_manifest_update_role_when_frozen() {
    let y = format!(
        "{BASE}roles:\n  o: {{rules: [{{resource: manifest, actions: [update]}}]}}\nconfig:\n  update_policy: {{manifest: frozen}}\n"
    );
    assert_eq!(
        errors(&y),
        ["roles.o.rules[0].actions: manifest updates are frozen by config.update_policy.manifest"]
    );
}

#[test]
fn collects_every_error_not_only_the_first() {
    let y = "apiVersion: confidant/v1
packages:
  dev: {tee: sim, image_digests: [latest]}
workloads:
  web: {package: ghost, files: {/etc/x: '{{ db.cert }}'}}
";
    assert_eq!(
        errors(y),
        [
            "packages.dev.tee: sim packages require config.allow_simulation: true (simulation gives no hardware protection)",
            "packages.dev.image_digests[0]: expected sha256:<64 lowercase hex digits>, got \"latest\"",
            "workloads.web.package: unknown package 'ghost'",
            "workloads.web.files./etc/x: unknown secret 'db'",
        ]
    );
}

#[test]
fn manifest_with_three_problems_reports_three() {
    let y = "apiVersion: confidant/v1
packages:
  p: {tee: snp}
workloads:
  a: {package: p, max_activations: 0}
  b: {package: q}
  c: {package: p, env: {X: '{{ nope.value }}'}}
";
    let m = Manifest::from_yaml(y).unwrap();
    assert_eq!(m.check().unwrap_err().len(), 3);
}

#[test]
fn template_that_loops_too_long_refuses_manifest() {
    let y = BASE.replace(
        "{package: web}",
        "{package: web, args: ['{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}']}",
    );
    assert_eq!(
        errors(&y),
        ["workloads.web.args[0]: template: runs more than 100000 instructions"]
    );
}

#[test]
fn template_that_renders_too_much_refuses_manifest() {
    let y = BASE.replace(
        "{package: web}",
        "{package: web, files: {/big: \"{{ 'x' * 5000000 }}\"}}",
    );
    assert_eq!(
        errors(&y),
        ["workloads.web.files./big: template: renders to more than 4194304 bytes"]
    );
}
