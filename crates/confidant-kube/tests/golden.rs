//! `generate` over a corpus of ordinary Kubernetes YAML (apps with Services, a StatefulSet, a
//! CronJob beside an untouched Job, multi-container pods, a file nothing in opted in), for every
//! platform: the output equals the golden file, running it again changes nothing, and every
//! refusal names its file, object and field.
//!
//! `UPDATE_GOLDEN=1 cargo test -p confidant-kube --test golden` rewrites the golden files; review
//! the diff before committing it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{options, table};
use confidant_kube::{Platform, Refusal, generate};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn corpus() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the corpus is missing: {files:?}");
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_corpus_matches_the_golden_files_on_every_platform_and_is_idempotent() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for platform in Platform::ALL {
        let options = options(platform);
        for (name, text) in corpus() {
            let out = generate(&name, &text, &options, &table())
                .unwrap_or_else(|r| panic!("{platform} {name}: refused: {r:#?}"));
            let golden = dir("golden").join(platform.as_str()).join(&name);
            if update {
                std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
                std::fs::write(&golden, &out.text).unwrap();
            }
            let want = std::fs::read_to_string(&golden)
                .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 makes it)", golden.display()));
            assert_eq!(
                out.text,
                want,
                "{platform} {name} differs from {}",
                golden.display()
            );
            // Idempotent: its own output is left as it is, byte for byte, with no lookups.
            let again = generate(&name, &out.text, &options, &confidant_kube::Offline)
                .unwrap_or_else(|r| panic!("{platform} {name}, second run: {r:#?}"));
            assert!(!again.changed, "{platform} {name}: a second run changed it");
            assert_eq!(again.text, out.text);
            assert_eq!(again.pods, out.pods);
        }
    }
}

#[test]
fn what_opted_in_is_found_and_the_rest_is_left_byte_for_byte() {
    let options = options(Platform::Aks);
    let found: BTreeMap<String, Vec<(String, String, bool)>> = corpus()
        .into_iter()
        .map(|(name, text)| {
            let out = generate(&name, &text, &options, &table()).unwrap();
            if name == "plain.yaml" {
                assert!(!out.changed);
                assert_eq!(out.text, text);
            }
            let pods = out
                .pods
                .iter()
                .map(|p| (p.object.clone(), p.workload.clone(), p.mesh))
                .collect();
            (name, pods)
        })
        .collect();
    let pods = |n: &str| found[n].clone();
    let pod = |o: &str, w: &str, m: bool| (o.to_string(), w.to_string(), m);
    assert_eq!(pods("redis.yaml"), [pod("Deployment/redis", "redis", true)]);
    assert_eq!(pods("web.yaml"), [pod("Deployment/web", "web", false)]);
    assert_eq!(
        pods("postgres.yaml"),
        [pod("StatefulSet/postgres", "postgres", false)]
    );
    assert_eq!(pods("batch.yaml"), [pod("CronJob/report", "report", false)]);
    assert!(pods("plain.yaml").is_empty());
    // The untouched Job in batch.yaml keeps its comment.
    let out = generate("batch.yaml", &corpus()[0].1, &options, &table()).unwrap();
    assert!(
        out.text
            .contains("# not confidential: untouched, comment kept")
    );
}

fn refused(yaml: &str) -> Vec<Refusal> {
    generate("pod.yaml", yaml, &options(Platform::Aks), &table()).unwrap_err()
}

const POD_HEAD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations:
    confidant/workload: p
spec:
";

#[test]
fn each_refusal_names_the_object_and_field() {
    let cases = [
        (
            "  hostNetwork: true\n  containers: [{name: a, image: docker.io/library/redis:7.2}]\n",
            "spec.hostNetwork",
            "network namespace",
        ),
        (
            "  hostPID: true\n  containers: [{name: a, image: docker.io/library/redis:7.2}]\n",
            "spec.hostPID",
            "process namespace",
        ),
        (
            "  hostIPC: true\n  containers: [{name: a, image: docker.io/library/redis:7.2}]\n",
            "spec.hostIPC",
            "IPC",
        ),
        (
            "  containers: [{name: a, image: docker.io/library/redis:7.2}]\n  volumes: [{name: h, hostPath: {path: /etc}}]\n",
            "spec.volumes[0].hostPath",
            "host's files",
        ),
        (
            "  containers: [{name: a, image: docker.io/library/redis:7.2}]\n  volumes: [{name: s, secret: {secretName: x}}]\n",
            "spec.volumes[0].secret",
            "Confidant manifest",
        ),
        (
            "  containers: [{name: a, image: docker.io/library/redis:7.2}]\n  volumes: [{name: s, projected: {sources: [{secret: {name: x}}]}}]\n",
            "spec.volumes[0].projected.sources[0].secret",
            "Confidant manifest",
        ),
        (
            "  containers: [{name: a, image: docker.io/library/redis:7.2, securityContext: {privileged: true}}]\n",
            "spec.containers[0].securityContext.privileged",
            "privileged",
        ),
        (
            "  containers: [{name: a, image: docker.io/library/redis:7.2, env: [{name: X, valueFrom: {secretKeyRef: {name: s, key: k}}}]}]\n",
            "spec.containers[0].env[0].valueFrom.secretKeyRef",
            "Confidant manifest",
        ),
        (
            "  containers: [{name: a, image: docker.io/library/redis:7.2, envFrom: [{secretRef: {name: s}}]}]\n",
            "spec.containers[0].envFrom[0].secretRef",
            "Confidant manifest",
        ),
        (
            "  containers: [{name: a, image: docker.io/library/unknown:1}]\n",
            "spec.containers[0].image",
            "cannot pin docker.io/library/unknown:1 by digest: manifest unknown",
        ),
        (
            "  containers: [{name: a, image: \"redis@sha256:abc\"}]\n",
            "spec.containers[0].image",
            "expected a digest sha256:<64 lowercase hex>",
        ),
        (
            "  containers: [{name: a}]\n",
            "spec.containers[0].image",
            "expected an image",
        ),
    ];
    for (spec, field, words) in cases {
        let r = refused(&format!("{POD_HEAD}{spec}"));
        assert_eq!(r.len(), 1, "{field}: {r:#?}");
        assert_eq!(r[0].field, field);
        assert_eq!(r[0].object, "Pod/p");
        let text = r[0].to_string();
        assert!(text.starts_with("pod.yaml (document 1): Pod/p: "), "{text}");
        assert!(text.contains(words), "{field}: {text}");
    }
    // All problems of a file at once, each in its document.
    let two = format!(
        "{POD_HEAD}  hostPID: true\n  containers: [{{name: a, image: docker.io/library/redis:7.2}}]\n---\n{}",
        POD_HEAD.replace("name: p", "name: q")
            + "  containers: [{name: a, image: docker.io/library/redis:7.2, securityContext: {privileged: true}}]\n"
    );
    let r = refused(&two);
    assert_eq!(r.len(), 2, "{r:#?}");
    assert!(
        r[1].to_string()
            .starts_with("pod.yaml (document 2): Pod/q: "),
        "{}",
        r[1]
    );
    // A bad workload name, a bad mesh value, a document that is not YAML.
    let r = refused(&POD_HEAD.replace("confidant/workload: p", "confidant/workload: \"Not OK\""));
    assert_eq!(r[0].field, "metadata.annotations.confidant/workload");
    let r = refused(&format!(
        "{}    confidant/mesh: yes-please\nspec:\n  containers: [{{name: a, image: docker.io/library/redis:7.2}}]\n",
        POD_HEAD.trim_end_matches("spec:\n")
    ));
    assert_eq!(r[0].field, "metadata.annotations.confidant/mesh", "{r:#?}");
    let r = refused("a: [unclosed\n");
    assert!(
        r[0].message.starts_with("expected a YAML document"),
        "{r:#?}"
    );
}

#[test]
fn a_pod_that_is_not_opted_in_is_not_checked() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n  containers: [{name: a, image: busybox}]\n";
    let out = generate(
        "pod.yaml",
        yaml,
        &options(Platform::Aks),
        &confidant_kube::Offline,
    )
    .unwrap();
    assert!(!out.changed);
    assert!(out.pods.is_empty());
}
