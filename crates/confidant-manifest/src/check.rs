//! The validation rules of a manifest, applied whole: every problem is collected.

use std::collections::BTreeSet;

use confidant_attest::Tee;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use x509_cert::Certificate;
use x509_cert::der::DecodePem;

use crate::ValidationError;
use crate::model::{API_VERSION, Manifest, Secret, VolumePolicy, Workload};
use crate::syntax::{is_identifier, is_name, is_san, is_sha256_digest, parse_size};
use crate::template::{BUILTINS_NAME, dry_run};

/// The size of a volume key, and so of the value of a volume's `key_secret`.
pub const VOLUME_KEY_BYTES: usize = 32;

/// Smallest RSA modulus accepted for recovery keys.
const MIN_RSA_BITS: usize = 2048;

/// Words a template cannot use as a variable name.
const RESERVED: [&str; 9] = [
    BUILTINS_NAME,
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "loop",
    "self",
];

struct Errors(Vec<ValidationError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError::new(path, message));
    }
}

impl Manifest {
    /// Validates the whole manifest and returns every problem found, each with its path.
    ///
    /// Besides references between sections (workloads → packages, roles → users and secrets,
    /// mesh → workloads, mounts → volumes) and value ranges, it dry-runs every template.
    pub fn check(&self) -> Result<(), Vec<ValidationError>> {
        let mut e = Errors(Vec::new());
        if self.api_version != API_VERSION {
            e.push(
                "apiVersion",
                format!("expected {API_VERSION:?}, got {:?}", self.api_version),
            );
        }
        self.check_names(&mut e);
        self.check_packages(&mut e);
        for (name, w) in &self.workloads {
            self.check_workload(name, w, &mut e);
        }
        self.check_secrets(&mut e);
        self.check_users(&mut e);
        self.check_roles(&mut e);
        self.check_recovery(&mut e);
        self.check_volumes(&mut e);
        self.check_config(&mut e);
        for (workload, err) in dry_run(self) {
            e.push(
                format!("workloads.{workload}.{}", err.location),
                err.message,
            );
        }
        if e.0.is_empty() { Ok(()) } else { Err(e.0) }
    }

    fn check_names(&self, e: &mut Errors) {
        let sections: [(&str, Vec<&String>); 6] = [
            ("packages", self.packages.keys().collect()),
            ("workloads", self.workloads.keys().collect()),
            ("users", self.users.keys().collect()),
            ("roles", self.roles.keys().collect()),
            ("volumes", self.volumes.keys().collect()),
            (
                "recovery.keys",
                self.recovery.iter().flat_map(|r| r.keys.keys()).collect(),
            ),
        ];
        for (section, names) in sections {
            for name in names {
                if !is_name(name) {
                    e.push(
                        format!("{section}.{name}"),
                        "expected a name of 1 to 63 letters, digits, '-' or '_', starting with a letter or digit",
                    );
                }
            }
        }
        for name in self.secrets.keys() {
            if !is_identifier(name) {
                e.push(
                    format!("secrets.{name}"),
                    "expected an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters): templates name secrets as variables",
                );
            } else if RESERVED.contains(&name.as_str()) {
                e.push(
                    format!("secrets.{name}"),
                    format!("'{name}' is reserved in templates"),
                );
            }
        }
    }

    fn check_packages(&self, e: &mut Errors) {
        for (name, p) in &self.packages {
            let path = format!("packages.{name}");
            if p.tee == Tee::Sim && !self.config.allow_simulation {
                e.push(
                    format!("{path}.tee"),
                    "sim packages require config.allow_simulation: true (simulation gives no hardware protection)",
                );
            }
            let rv = &p.reference_values;
            if let Some(t) = rv.tee
                && t != p.tee
            {
                e.push(
                    format!("{path}.reference_values.tee"),
                    format!("expected {} (the package's tee), got {t}", p.tee),
                );
            }
            if rv.tdx.is_some() && p.tee != Tee::Tdx {
                e.push(
                    format!("{path}.reference_values.tdx"),
                    format!(
                        "a tdx section needs tee: tdx, the package has tee: {}",
                        p.tee
                    ),
                );
            }
            if rv.snp.is_some() && p.tee != Tee::Snp {
                e.push(
                    format!("{path}.reference_values.snp"),
                    format!(
                        "an snp section needs tee: snp, the package has tee: {}",
                        p.tee
                    ),
                );
            }
            if rv.report_data.is_some() {
                e.push(
                    format!("{path}.reference_values.report_data"),
                    "report data is bound per activation by the coordinator; it cannot be fixed in a package",
                );
            }
            for (i, d) in p.image_digests.iter().enumerate() {
                if !is_sha256_digest(d) {
                    e.push(
                        format!("{path}.image_digests[{i}]"),
                        format!("expected sha256:<64 lowercase hex digits>, got {d:?}"),
                    );
                }
            }
        }
    }

    fn check_workload(&self, name: &str, w: &Workload, e: &mut Errors) {
        let path = format!("workloads.{name}");
        if !self.packages.contains_key(&w.package) {
            e.push(
                format!("{path}.package"),
                format!("unknown package '{}'", w.package),
            );
        }
        if w.max_activations == Some(0) {
            e.push(
                format!("{path}.max_activations"),
                "expected at least 1, got 0",
            );
        }
        for file in w.files.keys() {
            if !file.starts_with('/') || file.split('/').any(|c| c == "..") || file.contains('\0') {
                e.push(
                    format!("{path}.files.{file}"),
                    "expected an absolute path without '..' components",
                );
            }
        }
        for key in w.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                e.push(
                    format!("{path}.env.{key}"),
                    "expected an environment variable name (not empty, no '=' or NUL)",
                );
            }
        }
        let mut mount_paths = BTreeSet::new();
        for (i, m) in w.volumes.iter().enumerate() {
            let mp = format!("{path}.volumes[{i}]");
            match self.volumes.get(&m.volume) {
                None => e.push(
                    format!("{mp}.volume"),
                    format!("unknown volume '{}'", m.volume),
                ),
                Some(v) if m.read_only && v.policy == VolumePolicy::Ephemeral => e.push(
                    format!("{mp}.read_only"),
                    format!(
                        "volume '{}' is ephemeral (empty at every activation): a read-only mount of it is always empty",
                        m.volume
                    ),
                ),
                Some(_) => {}
            }
            if !m.path.starts_with('/') || m.path.split('/').any(|c| c == "..") {
                e.push(
                    format!("{mp}.path"),
                    format!(
                        "expected an absolute path without '..' components, got {:?}",
                        m.path
                    ),
                );
            } else if !mount_paths.insert(m.path.as_str()) {
                e.push(format!("{mp}.path"), format!("{} is mounted twice", m.path));
            }
        }
        if let Some(mesh) = &w.mesh {
            for (i, san) in mesh.sans.iter().enumerate() {
                if !is_san(san) {
                    e.push(
                        format!("{path}.mesh.sans[{i}]"),
                        format!("expected a DNS name or an IP address, got {san:?}"),
                    );
                }
            }
            let mut names = BTreeSet::new();
            let mut ports = BTreeSet::new();
            for (i, p) in mesh.ingress.iter().enumerate() {
                let ip = format!("{path}.mesh.ingress[{i}]");
                if !is_name(&p.name) {
                    e.push(
                        format!("{ip}.name"),
                        format!(
                            "expected a name of letters, digits, '-' or '_', got {:?}",
                            p.name
                        ),
                    );
                } else if !names.insert(p.name.as_str()) {
                    e.push(format!("{ip}.name"), format!("'{}' is used twice", p.name));
                }
                check_port(&format!("{ip}.port"), p.port, e);
                check_port(&format!("{ip}.target_port"), p.target_port, e);
                if !ports.insert(p.port) {
                    e.push(
                        format!("{ip}.port"),
                        format!("port {} is used twice", p.port),
                    );
                }
            }
            for (i, p) in mesh.egress.iter().enumerate() {
                let ep = format!("{path}.mesh.egress[{i}]");
                check_port(&format!("{ep}.port"), p.port, e);
                check_port(&format!("{ep}.local_port"), p.local_port, e);
                match self.workloads.get(&p.workload) {
                    None => e.push(
                        format!("{ep}.workload"),
                        format!("unknown workload '{}'", p.workload),
                    ),
                    Some(peer) => {
                        let offered: BTreeSet<u32> = peer
                            .mesh
                            .iter()
                            .flat_map(|m| m.ingress.iter().map(|i| i.port))
                            .collect();
                        if !offered.contains(&p.port) {
                            e.push(
                                format!("{ep}.port"),
                                format!(
                                    "workload '{}' has no mesh ingress port {} (it has {:?})",
                                    p.workload, p.port, offered
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    fn check_secrets(&self, e: &mut Errors) {
        for (name, s) in &self.secrets {
            let path = format!("secrets.{name}");
            match s {
                Secret::SymmetricKey { size, .. } => {
                    if *size % 8 != 0 || !(128..=1024).contains(size) {
                        e.push(
                            format!("{path}.size"),
                            format!("expected a multiple of 8 bits from 128 to 1024, got {size}"),
                        );
                    }
                }
                Secret::CertEcdsa { size, .. } => {
                    if let Some(size) = size
                        && ![256, 384].contains(size)
                    {
                        e.push(
                            format!("{path}.size"),
                            format!("expected 256 or 384, got {size}"),
                        );
                    }
                }
                Secret::CertRsa { size, .. } => {
                    if let Some(size) = size
                        && ![2048, 3072, 4096].contains(size)
                    {
                        e.push(
                            format!("{path}.size"),
                            format!("expected 2048, 3072 or 4096, got {size}"),
                        );
                    }
                }
                Secret::CertEd25519 { .. } | Secret::Plain {} => {}
            }
            if let Secret::CertEcdsa {
                sans,
                validity_days,
                ..
            }
            | Secret::CertEd25519 {
                sans,
                validity_days,
                ..
            }
            | Secret::CertRsa {
                sans,
                validity_days,
                ..
            } = s
            {
                if let Some(days) = validity_days
                    && !(1..=3650).contains(days)
                {
                    e.push(
                        format!("{path}.validity_days"),
                        format!("expected 1 to 3650, got {days}"),
                    );
                }
                for (i, san) in sans.iter().enumerate() {
                    if !is_san(san) {
                        e.push(
                            format!("{path}.sans[{i}]"),
                            format!("expected a DNS name or an IP address, got {san:?}"),
                        );
                    }
                }
            }
        }
    }

    fn check_users(&self, e: &mut Errors) {
        for (name, u) in &self.users {
            if let Err(err) = Certificate::from_pem(u.certificate.as_bytes()) {
                e.push(
                    format!("users.{name}.certificate"),
                    format!("expected a PEM X.509 certificate: {err}"),
                );
            }
        }
    }

    fn check_roles(&self, e: &mut Errors) {
        for (name, role) in &self.roles {
            let path = format!("roles.{name}");
            for (i, u) in role.users.iter().enumerate() {
                if !self.users.contains_key(u) {
                    e.push(format!("{path}.users[{i}]"), format!("unknown user '{u}'"));
                }
            }
            for (i, rule) in role.rules.iter().enumerate() {
                let rp = format!("{path}.rules[{i}]");
                let valid: &[&str] = match rule.resource.as_str() {
                    "manifest" => &["update"],
                    "secrets" => &["read", "write"],
                    "packages" => &["update-svn"],
                    "recovery" => &["recover"],
                    "volumes" => &["read", "write"],
                    other => {
                        e.push(
                            format!("{rp}.resource"),
                            format!(
                                "expected manifest, secrets, packages, recovery or volumes, got {other:?}"
                            ),
                        );
                        continue;
                    }
                };
                if rule.actions.is_empty() {
                    e.push(format!("{rp}.actions"), "expected at least one action");
                }
                for (j, a) in rule.actions.iter().enumerate() {
                    if !valid.contains(&a.as_str()) {
                        e.push(
                            format!("{rp}.actions[{j}]"),
                            format!(
                                "action {a:?} is not valid for resource {}; expected {}",
                                rule.resource,
                                valid.join(" or ")
                            ),
                        );
                    }
                }
                match rule.resource.as_str() {
                    "secrets" => {
                        let writes = rule.actions.iter().any(|a| a == "write");
                        for (j, n) in rule.names.iter().enumerate() {
                            match self.secrets.get(n) {
                                None => e.push(format!("{rp}.names[{j}]"), format!("unknown secret '{n}'")),
                                Some(s) if writes && !matches!(s, Secret::Plain {}) => e.push(
                                    format!("{rp}.names[{j}]"),
                                    format!("secret '{n}' is {}: only plain secrets can be written by users", s.type_name()),
                                ),
                                Some(_) => {}
                            }
                        }
                    }
                    "volumes" => {
                        for (j, n) in rule.names.iter().enumerate() {
                            if !self.volumes.contains_key(n) {
                                e.push(format!("{rp}.names[{j}]"), format!("unknown volume '{n}'"));
                            }
                        }
                    }
                    "packages" => {
                        for (j, n) in rule.names.iter().enumerate() {
                            if !self.packages.contains_key(n) {
                                e.push(
                                    format!("{rp}.names[{j}]"),
                                    format!("unknown package '{n}'"),
                                );
                            }
                        }
                    }
                    _ => {
                        if !rule.names.is_empty() {
                            e.push(
                                format!("{rp}.names"),
                                format!("resource {} takes no names", rule.resource),
                            );
                        }
                    }
                }
                if rule.resource == "manifest"
                    && self.config.update_policy.manifest == "frozen"
                    && rule.actions.iter().any(|a| a == "update")
                {
                    e.push(
                        format!("{rp}.actions"),
                        "manifest updates are frozen by config.update_policy.manifest",
                    );
                }
            }
        }
    }

    fn check_recovery(&self, e: &mut Errors) {
        let Some(r) = &self.recovery else { return };
        let n = r.keys.len();
        if n == 0 {
            e.push("recovery.keys", "expected at least one recovery key");
        }
        if r.threshold < 1 || r.threshold as usize > n {
            e.push(
                "recovery.threshold",
                format!(
                    "expected 1 to {n} (the number of keys), got {}",
                    r.threshold
                ),
            );
        }
        for (name, pem) in &r.keys {
            let key = rsa::RsaPublicKey::from_public_key_pem(pem.trim())
                .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem.trim()));
            match key {
                Err(_) => e.push(
                    format!("recovery.keys.{name}"),
                    "expected an RSA public key in PEM (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)",
                ),
                Ok(k) if k.size() * 8 < MIN_RSA_BITS => e.push(
                    format!("recovery.keys.{name}"),
                    format!(
                        "expected at least {MIN_RSA_BITS} bits, got {}",
                        k.size() * 8
                    ),
                ),
                Ok(_) => {}
            }
        }
    }

    fn check_volumes(&self, e: &mut Errors) {
        for (name, v) in &self.volumes {
            match parse_size(&v.size) {
                Some(0) | None => e.push(
                    format!("volumes.{name}.size"),
                    format!("expected a positive size (bytes, or a number with KiB, MiB, GiB or TiB), got {:?}", v.size),
                ),
                Some(_) => {}
            }
            let Some(secret_name) = &v.key_secret else {
                continue;
            };
            let path = format!("volumes.{name}.key_secret");
            if v.policy == VolumePolicy::Ephemeral {
                e.push(
                    path.as_str(),
                    format!("volume '{name}' is ephemeral: it gets a fresh key at every activation, it cannot take its key from a secret"),
                );
            }
            match self.secrets.get(secret_name) {
                None => e.push(path, format!("unknown secret '{secret_name}'")),
                Some(Secret::Plain {}) => {}
                Some(s) => e.push(
                    path,
                    format!(
                        "secret '{secret_name}' is {}: a volume key must be a plain secret users set (to the {VOLUME_KEY_BYTES} bytes of the key the volume was sealed with)",
                        s.type_name()
                    ),
                ),
            }
        }
    }

    fn check_config(&self, e: &mut Errors) {
        let p = &self.config.update_policy;
        if p.manifest != "roles" && p.manifest != "frozen" {
            e.push(
                "config.update_policy.manifest",
                format!("expected roles or frozen, got {:?}", p.manifest),
            );
            return;
        }
        if p.manifest == "roles" {
            let updaters: BTreeSet<&String> = self
                .roles
                .values()
                .filter(|r| {
                    r.rules.iter().any(|x| {
                        x.resource == "manifest" && x.actions.iter().any(|a| a == "update")
                    })
                })
                .flat_map(|r| r.users.iter())
                .filter(|u| self.users.contains_key(*u))
                .collect();
            let needed = p.approvals as usize;
            if needed == 0 {
                e.push(
                    "config.update_policy.approvals",
                    "expected at least 1, got 0",
                );
            } else if needed > 1 && needed > updaters.len() {
                e.push(
                    "config.update_policy.approvals",
                    format!(
                        "{needed} approvals needed but only {} users may update the manifest",
                        updaters.len()
                    ),
                );
            }
        }
    }
}

fn check_port(path: &str, port: u32, e: &mut Errors) {
    if !(1..=65535).contains(&port) {
        e.push(path, format!("expected a port from 1 to 65535, got {port}"));
    }
}
