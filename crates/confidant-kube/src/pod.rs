//! One pod template: where it sits in its object, whether it opted in, what a confidential pod
//! may not have, and what Confidant adds to it.

use serde_yaml_ng::{Mapping, Value};

use crate::platform::CONFIDENTIAL_RUNTIME_CLASSES;
use crate::policy::{self, ContainerRule, ImageDefaults, LOGS_ANNOTATION, PolicyData};
use crate::{Options, Refusal, Resolve};

/// The pod-template annotation that opts a pod in and names its workload in the manifest.
pub const WORKLOAD_ANNOTATION: &str = "confidant/workload";
/// The pod-template annotation that asks for the mesh sidecar (`"true"`).
pub const MESH_ANNOTATION: &str = "confidant/mesh";
/// The init container's name.
pub const INIT_CONTAINER: &str = "confidant-init";
/// The mesh sidecar's name.
pub const MESH_CONTAINER: &str = "confidant-mesh";
/// The memory volume the init container writes the credentials into.
pub const CREDENTIALS_VOLUME: &str = "confidant-credentials";
/// Where the credentials volume is mounted in every container of the pod.
pub const CREDENTIALS_PATH: &str = "/confidant";
/// The Secret volume with the simulation platform key (`sim` only).
pub const SIM_PLATFORM_VOLUME: &str = "confidant-sim-platform";
/// The Secret that holds the simulation platform key (`platform.pk8`).
pub const SIM_PLATFORM_SECRET: &str = "confidant-sim-platform";
/// Where the simulation platform key is mounted in the init container.
pub const SIM_PLATFORM_PATH: &str = "/confidant-sim";

/// The kinds whose pod template `generate` finds, and the path to it.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// A pod template made confidential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfidentialPod {
    /// The object it belongs to (`Deployment/web`).
    pub object: String,
    /// Its workload in the manifest.
    pub workload: String,
    /// Its own containers' images, pinned (`repo:tag@sha256:…`), in the pod's order.
    pub images: Vec<String>,
    /// Whether it has the mesh sidecar.
    pub mesh: bool,
    /// SHA-256 (hex) of what the platform measures of its Kata agent policy (the Rego, or the
    /// initdata carrying it): the pod's reference value (SNP HOSTDATA, TDX MRCONFIGID).
    pub policy_sha256: String,
}

/// The binary in Confidant's image (its containers name their command, so no image config is
/// needed to pin it).
pub const CONFIDANT_BINARY: &str = "/usr/bin/confidant";
/// The PATH containerd gives a container whose image sets none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn get_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(*k))
}

/// The sequence at `k` in `m`, made if missing.
fn sequence_at<'a>(m: &'a mut Mapping, k: &str) -> &'a mut Vec<Value> {
    let v = m.entry(key(k)).or_insert(Value::Sequence(Vec::new()));
    if !v.is_sequence() {
        *v = Value::Sequence(Vec::new());
    }
    match v {
        Value::Sequence(s) => s,
        _ => unreachable!("made a sequence above"),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn name_of(v: &Value) -> Option<&str> {
    str_at(v, &["name"])
}

/// `path` as a field path (`spec.template.spec`).
fn dotted(path: &[&str]) -> String {
    path.join(".")
}

/// A workload name the manifest takes: 1–63 of `a-z 0-9 - _ .`, starting with a letter or
/// digit.
fn check_workload_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a workload name of 1 to 63 characters a-z, 0-9, '-', '_', '.' starting with a letter or digit, got {name:?}"
        ))
    }
}

/// Finds the pod template of `doc` (a Kubernetes object) and makes it confidential if it opted
/// in. `Ok(None)`: not a pod-bearing kind, or not opted in (the document is left alone).
pub(crate) fn rewrite(
    doc: &mut Value,
    location: &str,
    options: &Options,
    resolve: &dyn Resolve,
    refusals: &mut Vec<Refusal>,
) -> Option<ConfidentialPod> {
    let kind = str_at(doc, &["kind"])?.to_string();
    let path = template_path(&kind)?;
    let name = str_at(doc, &["metadata", "name"]).unwrap_or("(unnamed)");
    let object = format!("{kind}/{name}");
    let object_name = name.to_string();
    let at = |field: &str| Refusal {
        location: location.to_string(),
        object: object.clone(),
        field: field.to_string(),
        message: String::new(),
    };
    let template = get_mut(doc, path)?;
    let meta_path: Vec<&str> = path.iter().copied().chain(["metadata"]).collect();
    let spec_path: Vec<&str> = path.iter().copied().chain(["spec"]).collect();
    let annotation =
        str_at(template, &["metadata", "annotations", WORKLOAD_ANNOTATION]).map(str::to_string);
    let runtime_class = str_at(template, &["spec", "runtimeClassName"]).map(str::to_string);
    let confidential_class = runtime_class
        .as_deref()
        .is_some_and(|c| CONFIDENTIAL_RUNTIME_CLASSES.contains(&c));
    let workload = match (annotation, confidential_class) {
        (Some(w), _) => w,
        (None, true) => object_name,
        (None, false) => return None,
    };
    if let Err(message) = check_workload_name(&workload) {
        let mut field = meta_path.clone();
        field.extend(["annotations", WORKLOAD_ANNOTATION]);
        refusals.push(Refusal {
            message,
            ..at(&dotted(&field))
        });
        return None;
    }
    let mesh = match str_at(template, &["metadata", "annotations", MESH_ANNOTATION]) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            let mut field = meta_path.clone();
            field.extend(["annotations", MESH_ANNOTATION]);
            refusals.push(Refusal {
                message: format!("expected \"true\" or \"false\", got {other:?}"),
                ..at(&dotted(&field))
            });
            return None;
        }
    };
    let logs = match str_at(template, &["metadata", "annotations", LOGS_ANNOTATION]) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            let mut field = meta_path.clone();
            field.extend(["annotations", LOGS_ANNOTATION]);
            refusals.push(Refusal {
                message: format!("expected \"true\" or \"false\", got {other:?}"),
                ..at(&dotted(&field))
            });
            return None;
        }
    };
    // What an earlier run recorded in the policy (the images' defaults), then its annotations
    // removed: they are written anew below.
    let earlier = [
        policy::AKS_POLICY_ANNOTATION,
        policy::COCO_INITDATA_ANNOTATION,
    ]
    .into_iter()
    .find_map(|a| {
        str_at(template, &["metadata", "annotations", a]).and_then(|v| policy::read_back(a, v))
    });
    if let Some(Value::Mapping(annotations)) = get_mut(template, &["metadata", "annotations"]) {
        annotations.remove(policy::AKS_POLICY_ANNOTATION);
        annotations.remove(policy::COCO_INITDATA_ANNOTATION);
    }
    let Some(Value::Mapping(spec)) = template.get_mut("spec") else {
        refusals.push(Refusal {
            message: "expected a pod spec (a mapping)".into(),
            ..at(&dotted(&spec_path))
        });
        return None;
    };
    strip(spec);
    let before = refusals.len();
    check(spec, &dotted(&spec_path), &at, refusals);
    let images = pin_images(spec, &dotted(&spec_path), resolve, &at, refusals);
    if refusals.len() > before {
        return None;
    }
    inject(spec, &workload, mesh, options);
    let data = match policy_data(spec, &dotted(&spec_path), logs, earlier.as_ref(), resolve) {
        Ok(d) => d,
        Err((field, message)) => {
            refusals.push(Refusal {
                message,
                ..at(&field)
            });
            return None;
        }
    };
    let attached = policy::attach(options.platform, &policy::rego(&data));
    if let Value::Mapping(template) = template {
        let metadata = mapping_at(template, "metadata");
        mapping_at(metadata, "annotations").insert(key(attached.annotation), key(&attached.value));
    }
    Some(ConfidentialPod {
        object,
        workload,
        images,
        mesh,
        policy_sha256: attached.sha256,
    })
}

/// The mapping at `k` in `m`, made if missing (a `null` is replaced).
fn mapping_at<'a>(m: &'a mut Mapping, k: &str) -> &'a mut Mapping {
    let v = m.entry(key(k)).or_insert(Value::Mapping(Mapping::new()));
    if !v.is_mapping() {
        *v = Value::Mapping(Mapping::new());
    }
    match v {
        Value::Mapping(m) => m,
        _ => unreachable!("made a mapping above"),
    }
}

fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Sequence(items) => Some(
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim_end()
                        .to_string(),
                })
                .collect(),
        ),
        _ => None,
    }
}

/// What the policy allows of each container of the (already injected) pod spec.
fn policy_data(
    spec: &Mapping,
    prefix: &str,
    logs: bool,
    earlier: Option<&PolicyData>,
    resolve: &dyn Resolve,
) -> Result<PolicyData, (String, String)> {
    let mut containers = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(Value::Sequence(items)) = spec.get(list) else {
            continue;
        };
        for (i, c) in items.iter().enumerate() {
            let here = format!("{prefix}.{list}[{i}]");
            let name = name_of(c).unwrap_or_default().to_string();
            let image = str_at(c, &["image"]).unwrap_or_default().to_string();
            let command = string_list(c.get("command"));
            let args = string_list(c.get("args"));
            let defaults = if command.is_some()
                && matches!(name.as_str(), INIT_CONTAINER | MESH_CONTAINER)
            {
                ImageDefaults::default()
            } else if let Some(d) = earlier.and_then(|e| {
                e.containers
                    .iter()
                    .find(|r| r.name == name && r.image == image)
                    .map(|r| r.defaults.clone())
            }) {
                d
            } else if command.is_some() && args.is_some() {
                // Nothing of the image's Entrypoint or Cmd is used; its Env still is.
                resolve.image_defaults(&image).unwrap_or_default()
            } else {
                resolve.image_defaults(&image).map_err(|e| {
                    (
                        format!("{here}.image"),
                        format!("cannot read what {image} runs (its config's Entrypoint and Cmd), which the policy must pin: {e}"),
                    )
                })?
            };
            let mut env: Vec<String> = defaults.env.clone();
            env.push(DEFAULT_PATH.to_string());
            if c.get("tty").and_then(Value::as_bool) == Some(true) {
                env.push("TERM=xterm".into());
            }
            let mut env_names = Vec::new();
            if let Some(Value::Sequence(vars)) = c.get("env") {
                for v in vars {
                    let Some(n) = name_of(v) else { continue };
                    match v.get("value").and_then(Value::as_str) {
                        Some(value) if !value.contains("$(") => env.push(format!("{n}={value}")),
                        Some(_) => env_names.push(n.to_string()),
                        None if v.get("valueFrom").is_some() => env_names.push(n.to_string()),
                        None => env.push(format!("{n}=")),
                    }
                }
            }
            env.sort();
            env.dedup();
            env_names.sort();
            env_names.dedup();
            let mut mounts: Vec<String> = match c.get("volumeMounts") {
                Some(Value::Sequence(m)) => m
                    .iter()
                    .filter_map(|m| str_at(m, &["mountPath"]).map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            mounts.sort();
            mounts.dedup();
            containers.push(ContainerRule {
                args: policy::process_args(command.as_deref(), args.as_deref(), &defaults),
                name,
                image,
                env,
                env_names,
                mounts,
                defaults,
            });
        }
    }
    Ok(PolicyData { containers, logs })
}

/// Removes what an earlier `generate` added, so that running it again gives the same pod.
fn strip(spec: &mut Mapping) {
    let ours_container = |c: &Value| matches!(name_of(c), Some(INIT_CONTAINER | MESH_CONTAINER));
    let ours_volume =
        |v: &Value| matches!(name_of(v), Some(CREDENTIALS_VOLUME | SIM_PLATFORM_VOLUME));
    if let Some(Value::Sequence(s)) = spec.get_mut("initContainers") {
        s.retain(|c| !ours_container(c));
        if s.is_empty() {
            spec.remove("initContainers");
        }
    }
    if let Some(Value::Sequence(s)) = spec.get_mut("volumes") {
        s.retain(|v| !ours_volume(v));
        if s.is_empty() {
            spec.remove("volumes");
        }
    }
    for list in ["initContainers", "containers"] {
        if let Some(Value::Sequence(containers)) = spec.get_mut(list) {
            for c in containers {
                if let Value::Mapping(c) = c
                    && let Some(Value::Sequence(mounts)) = c.get_mut("volumeMounts")
                {
                    mounts.retain(|m| !ours_volume(m));
                    if mounts.is_empty() {
                        c.remove("volumeMounts");
                    }
                }
            }
        }
    }
}

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

/// Records everything a confidential pod may not have.
fn check(spec: &Mapping, prefix: &str, at: &dyn Fn(&str) -> Refusal, refusals: &mut Vec<Refusal>) {
    for (field, why) in [
        (
            "hostNetwork",
            "a confidential pod cannot share the host's network namespace: its traffic would be the host's to read",
        ),
        (
            "hostPID",
            "a confidential pod cannot share the host's process namespace",
        ),
        (
            "hostIPC",
            "a confidential pod cannot share the host's IPC namespace",
        ),
    ] {
        if is_true(spec.get(field)) {
            refusals.push(Refusal {
                message: format!("{why}; remove it or set it to false"),
                ..at(&format!("{prefix}.{field}"))
            });
        }
    }
    if let Some(Value::Sequence(volumes)) = spec.get("volumes") {
        for (i, v) in volumes.iter().enumerate() {
            let here = format!("{prefix}.volumes[{i}]");
            if v.get("hostPath").is_some() {
                refusals.push(Refusal {
                    message: "a confidential pod cannot mount the host's files: the host can read and change them; use a protected volume (manifest `volumes`) or an emptyDir".into(),
                    ..at(&format!("{here}.hostPath"))
                });
            }
            if v.get("secret").is_some() {
                refusals.push(Refusal {
                    message: secret_hint("mounts a Kubernetes Secret"),
                    ..at(&format!("{here}.secret"))
                });
            }
            if let Some(Value::Sequence(sources)) = get(v, &["projected", "sources"]) {
                for (j, s) in sources.iter().enumerate() {
                    if s.get("secret").is_some() {
                        refusals.push(Refusal {
                            message: secret_hint("mounts a Kubernetes Secret"),
                            ..at(&format!("{here}.projected.sources[{j}].secret"))
                        });
                    }
                }
            }
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(Value::Sequence(containers)) = spec.get(list) else {
            continue;
        };
        for (i, c) in containers.iter().enumerate() {
            let here = format!("{prefix}.{list}[{i}]");
            if is_true(get(c, &["securityContext", "privileged"])) {
                refusals.push(Refusal {
                    message: "a privileged container can reach the pod VM's devices and kernel, outside what the policy allows; remove `privileged`".into(),
                    ..at(&format!("{here}.securityContext.privileged"))
                });
            }
            if let Some(Value::Sequence(env)) = c.get("env") {
                for (j, e) in env.iter().enumerate() {
                    if get(e, &["valueFrom", "secretKeyRef"]).is_some() {
                        refusals.push(Refusal {
                            message: secret_hint(
                                "takes an environment variable from a Kubernetes Secret",
                            ),
                            ..at(&format!("{here}.env[{j}].valueFrom.secretKeyRef"))
                        });
                    }
                }
            }
            if let Some(Value::Sequence(env_from)) = c.get("envFrom") {
                for (j, e) in env_from.iter().enumerate() {
                    if e.get("secretRef").is_some() {
                        refusals.push(Refusal {
                            message: secret_hint(
                                "takes environment variables from a Kubernetes Secret",
                            ),
                            ..at(&format!("{here}.envFrom[{j}].secretRef"))
                        });
                    }
                    if e.get("configMapRef").is_some() {
                        refusals.push(Refusal {
                            message: "takes every key of a ConfigMap as environment variables, which the pod's policy cannot name; list the variables the app needs with env[].valueFrom.configMapKeyRef (or move them into the manifest's `env`)".into(),
                            ..at(&format!("{here}.envFrom[{j}].configMapRef"))
                        });
                    }
                }
            }
        }
    }
}

fn secret_hint(what: &str) -> String {
    format!(
        "the pod {what}, which the cluster's admins and the host can read; keep the secret in the Confidant manifest (`secrets`) and hand it to the workload through its `env` or `files` templates, which the coordinator renders only for an attested pod"
    )
}

/// Pins every image of the pod's own containers by digest; returns them in order.
fn pin_images(
    spec: &mut Mapping,
    prefix: &str,
    resolve: &dyn Resolve,
    at: &dyn Fn(&str) -> Refusal,
    refusals: &mut Vec<Refusal>,
) -> Vec<String> {
    let mut images = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(Value::Sequence(containers)) = spec.get_mut(list) else {
            continue;
        };
        for (i, c) in containers.iter_mut().enumerate() {
            let field = format!("{prefix}.{list}[{i}].image");
            let Some(image) = c.get("image").and_then(Value::as_str).map(str::to_string) else {
                refusals.push(Refusal {
                    message: "expected an image".into(),
                    ..at(&field)
                });
                continue;
            };
            match pin(&image, resolve) {
                Ok(pinned) => {
                    if let Value::Mapping(c) = c {
                        c.insert(key("image"), key(&pinned));
                    }
                    images.push(pinned);
                }
                Err(message) => refusals.push(Refusal {
                    message,
                    ..at(&field)
                }),
            }
        }
    }
    images
}

/// `image` with its digest: as is when it has one, otherwise `image@<digest>` from `resolve`.
pub(crate) fn pin(image: &str, resolve: &dyn Resolve) -> Result<String, String> {
    if let Some((_, digest)) = image.rsplit_once('@') {
        return check_digest(digest)
            .map(|()| image.to_string())
            .map_err(|e| format!("{image}: {e}"));
    }
    let digest = resolve
        .digest(image)
        .map_err(|e| format!("cannot pin {image} by digest: {e}"))?;
    check_digest(&digest).map_err(|e| format!("{image}: the registry answered {e}"))?;
    Ok(format!("{image}@{digest}"))
}

fn check_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "expected a digest sha256:<64 lowercase hex>, got {digest:?}"
        )),
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> Value {
    let mut m = Mapping::new();
    m.insert(key("name"), key(name));
    m.insert(key("mountPath"), key(path));
    if read_only {
        m.insert(key("readOnly"), Value::Bool(true));
    }
    Value::Mapping(m)
}

fn strings(items: &[&str]) -> Value {
    Value::Sequence(items.iter().map(|s| key(s)).collect())
}

/// Adds the init container, the mesh sidecar, the volumes and mounts, the runtime class.
fn inject(spec: &mut Mapping, workload: &str, mesh: bool, options: &Options) {
    let sim = options.platform.is_simulation();
    if let Some(class) = options.platform.runtime_class() {
        spec.insert(key("runtimeClassName"), key(class));
    }
    // The app's containers read the credentials (certificate, key, rendered files).
    for list in ["initContainers", "containers"] {
        if let Some(Value::Sequence(containers)) = spec.get_mut(list) {
            for c in containers {
                if let Value::Mapping(c) = c {
                    sequence_at(c, "volumeMounts").push(mount(
                        CREDENTIALS_VOLUME,
                        CREDENTIALS_PATH,
                        true,
                    ));
                }
            }
        }
    }
    let mut args = vec![
        "init",
        "--coordinator",
        &options.coordinator,
        "--coordinator-root-sha256",
        &options.coordinator_root_sha256,
        "--workload",
        workload,
        "--out",
        CREDENTIALS_PATH,
        "--tee",
    ];
    args.push(if sim { "sim" } else { "auto" });
    if sim {
        args.extend(["--sim-platform", SIM_PLATFORM_PATH]);
    }
    let mut init = Mapping::new();
    init.insert(key("name"), key(INIT_CONTAINER));
    init.insert(key("image"), key(&options.confidant_image));
    init.insert(key("command"), strings(&[CONFIDANT_BINARY]));
    init.insert(key("args"), strings(&args));
    let mut mounts = vec![mount(CREDENTIALS_VOLUME, CREDENTIALS_PATH, false)];
    if sim {
        mounts.push(mount(SIM_PLATFORM_VOLUME, SIM_PLATFORM_PATH, true));
    }
    init.insert(key("volumeMounts"), Value::Sequence(mounts));
    let mut ours = vec![Value::Mapping(init)];
    if mesh {
        // A native sidecar (Kubernetes ≥ 1.29): an init container that keeps running.
        let mut side = Mapping::new();
        side.insert(key("name"), key(MESH_CONTAINER));
        side.insert(key("image"), key(&options.confidant_image));
        side.insert(key("command"), strings(&[CONFIDANT_BINARY]));
        side.insert(
            key("args"),
            strings(&["mesh", "--credentials", CREDENTIALS_PATH]),
        );
        side.insert(key("restartPolicy"), key("Always"));
        side.insert(
            key("volumeMounts"),
            Value::Sequence(vec![mount(CREDENTIALS_VOLUME, CREDENTIALS_PATH, true)]),
        );
        ours.push(Value::Mapping(side));
    }
    let init_containers = sequence_at(spec, "initContainers");
    let users = std::mem::take(init_containers);
    init_containers.extend(ours);
    init_containers.extend(users);
    let volumes = sequence_at(spec, "volumes");
    let mut credentials = Mapping::new();
    credentials.insert(key("name"), key(CREDENTIALS_VOLUME));
    let mut empty_dir = Mapping::new();
    empty_dir.insert(key("medium"), key("Memory"));
    empty_dir.insert(key("sizeLimit"), key("64Mi"));
    credentials.insert(key("emptyDir"), Value::Mapping(empty_dir));
    volumes.push(Value::Mapping(credentials));
    if sim {
        let mut platform = Mapping::new();
        platform.insert(key("name"), key(SIM_PLATFORM_VOLUME));
        let mut secret = Mapping::new();
        secret.insert(key("secretName"), key(SIM_PLATFORM_SECRET));
        secret.insert(key("defaultMode"), Value::Number(0o400.into()));
        platform.insert(key("secret"), Value::Mapping(secret));
        volumes.push(Value::Mapping(platform));
    }
}
