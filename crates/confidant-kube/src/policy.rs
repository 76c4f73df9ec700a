//! The Kata agent policy of a confidential pod: Rego that the agent inside the pod VM evaluates
//! for every request the host sends it. It allows creating exactly the pod's containers (these
//! names, these images by digest, these arguments, this environment, these mounts) and nothing
//! else: no exec, no other image, no other command, no reading the containers' output unless
//! the pod asks for it (`confidant/logs: "true"`).
//!
//! The policy reaches the pod VM in an annotation: AKS reads it from
//! `io.katacontainers.config.agent.policy` (base64 of the Rego) and puts its SHA-256 into the
//! SNP report's HOSTDATA; Confidential Containers read it from the initdata in
//! `io.katacontainers.config.hypervisor.cc_init_data` (base64 of the gzip'ed initdata TOML) and
//! put the initdata's SHA-256 into HOSTDATA (SNP) or MRCONFIGID (TDX). That hash is what the
//! manifest's reference values pin, so a pod whose policy was changed gets nothing from the
//! coordinator.
//!
//! Not covered (said in `docs/formats/kata-policy.md`): the sandbox (pause) container is
//! allowed whatever it is; the values of environment variables the pod takes from ConfigMaps,
//! field references or `$(VAR)` expansions are allowed for their names with any value; the
//! container's user, working directory and capabilities are not checked yet.

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::platform::Platform;

/// The annotation AKS reads the policy from.
pub const AKS_POLICY_ANNOTATION: &str = "io.katacontainers.config.agent.policy";
/// The annotation Confidential Containers read the initdata (with the policy) from.
pub const COCO_INITDATA_ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";
/// The pod-template annotation that allows reading the containers' output (`kubectl logs`).
pub const LOGS_ANNOTATION: &str = "confidant/logs";

/// What an image runs unless the pod says otherwise (its config's Entrypoint, Cmd, Env).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDefaults {
    /// The image's Entrypoint.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The image's Cmd.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The image's Env (`NAME=value`).
    #[serde(default)]
    pub env: Vec<String>,
}

/// One container the policy allows to be created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRule {
    /// The container's name in the pod.
    pub name: String,
    /// Its image, pinned by digest, as the pod names it.
    pub image: String,
    /// Its process's arguments, exactly (command and args as Kubernetes combines them with the
    /// image's Entrypoint and Cmd).
    pub args: Vec<String>,
    /// Environment entries allowed exactly (`NAME=value`).
    pub env: Vec<String>,
    /// Environment variables allowed with any value (taken from ConfigMaps, field references,
    /// or values with `$(VAR)` expansions).
    pub env_names: Vec<String>,
    /// Mount destinations allowed besides the runtime's standard ones.
    pub mounts: Vec<String>,
    /// The image's defaults it was computed from (kept so a re-run needs no registry).
    pub defaults: ImageDefaults,
}

/// Everything the policy allows, in its `policy_data` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyData {
    /// The pod's containers (init containers, sidecars and app containers).
    pub containers: Vec<ContainerRule>,
    /// Whether the host may read the containers' output streams (`kubectl logs`).
    pub logs: bool,
}

/// Requests the agent allows or refuses whatever their content, in the agent's ttRPC names.
const DEFAULTS: &[(&str, bool)] = &[
    ("AddARPNeighborsRequest", true),
    ("AddSwapRequest", false),
    ("CloseStdinRequest", false),
    ("CopyFileRequest", false),
    ("CreateContainerRequest", false),
    ("CreateSandboxRequest", true),
    ("DestroySandboxRequest", true),
    ("ExecProcessRequest", false),
    ("GetMetricsRequest", true),
    ("GetOOMEventRequest", true),
    ("GuestDetailsRequest", true),
    ("ListInterfacesRequest", true),
    ("ListRoutesRequest", true),
    ("MemHotplugByProbeRequest", false),
    ("OnlineCPUMemRequest", true),
    ("PauseContainerRequest", false),
    ("PullImageRequest", true),
    ("RemoveContainerRequest", true),
    ("RemoveStaleVirtiofsShareMountsRequest", true),
    ("ReseedRandomDevRequest", false),
    ("ResumeContainerRequest", false),
    ("SetGuestDateTimeRequest", false),
    ("SetPolicyRequest", false),
    ("SignalProcessRequest", true),
    ("StartContainerRequest", true),
    ("StartTracingRequest", false),
    ("StatsContainerRequest", true),
    ("StopTracingRequest", false),
    ("TtyWinResizeRequest", true),
    ("UpdateContainerRequest", false),
    ("UpdateEphemeralMountsRequest", false),
    ("UpdateInterfaceRequest", true),
    ("UpdateRoutesRequest", true),
    ("WaitProcessRequest", true),
    ("WriteStreamRequest", false),
];

/// Mount destinations every container gets from the runtime.
const STANDARD_MOUNTS: &[&str] = &[
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/mqueue",
    "/dev/shm",
    "/sys",
    "/sys/fs/cgroup",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/dev/termination-log",
    "/var/run/secrets/kubernetes.io/serviceaccount",
];

/// The line that carries the data; [`read_back`] finds it again.
const DATA_PREFIX: &str = "policy_data := ";

/// The Rego text of the policy allowing `data`.
pub fn rego(data: &PolicyData) -> String {
    let mut out = String::from(
        "# The Kata agent policy of a confidential pod, written by `confidant generate`.\n\
         # Its SHA-256 (or its initdata's) is the pod's reference value in the Confidant manifest.\n\
         package agent_policy\n\n\
         import future.keywords.every\n\
         import future.keywords.if\n\
         import future.keywords.in\n\n",
    );
    for (request, allowed) in DEFAULTS {
        out.push_str(&format!("default {request} := {allowed}\n"));
    }
    out.push_str(&format!("default ReadStreamRequest := {}\n", data.logs));
    let standard = serde_json::to_string(STANDARD_MOUNTS).unwrap_or_default();
    out.push_str(&format!(
        r#"
# The pod's sandbox (pause) container.
CreateContainerRequest if {{
	input.OCI.Annotations["io.kubernetes.cri.container-type"] == "sandbox"
}}

# One of the pod's containers, exactly as the pod spec describes it.
CreateContainerRequest if {{
	input.OCI.Annotations["io.kubernetes.cri.container-type"] == "container"
	some c in policy_data.containers
	input.OCI.Annotations["io.kubernetes.cri.container-name"] == c.name
	input.OCI.Annotations["io.kubernetes.cri.image-name"] == c.image
	input.OCI.Process.Args == c.args
	every e in input.OCI.Process.Env {{
		env_allowed(e, c)
	}}
	every m in input.OCI.Mounts {{
		mount_allowed(m.destination, c)
	}}
}}

env_allowed(e, c) if {{
	e in c.env
}}

env_allowed(e, c) if {{
	some n in c.env_names
	startswith(e, concat("", [n, "="]))
}}

# Set by the runtime for every container.
env_allowed(e, _) if {{
	regex.match(`^HOSTNAME=`, e)
}}

# Kubernetes' service links (REDIS_SERVICE_HOST, REDIS_PORT_6379_TCP_ADDR, ...).
env_allowed(e, _) if {{
	regex.match(`^[A-Z][A-Z0-9_]*_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)=`, e)
}}

mount_allowed(d, c) if {{
	d in c.mounts
}}

mount_allowed(d, _) if {{
	d in {standard}
}}

# The runtime copies /etc/hosts, resolv.conf and the like into the pod VM's shared directory.
CopyFileRequest if {{
	startswith(input.path, "/run/kata-containers/shared/containers/")
	not contains(input.path, "..")
}}

"#
    ));
    // Pretty-printed: the agent's Rego engine refuses lines over 1024 columns.
    out.push_str(DATA_PREFIX);
    out.push_str(&serde_json::to_string_pretty(data).unwrap_or_default());
    out.push('\n');
    out
}

/// The policy as the platform reads it: its annotation, and the hash the hardware reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The pod annotation's name.
    pub annotation: &'static str,
    /// Its value.
    pub value: String,
    /// SHA-256 (hex) of what the platform measures: the Rego (AKS, sim) or the initdata TOML
    /// (CoCo).
    pub sha256: String,
}

/// The initdata TOML that carries `rego` on Confidential Containers.
fn initdata(rego: &str) -> String {
    // A TOML multi-line literal string cannot hold `'''`; the Rego written here never has it.
    format!(
        "algorithm = \"sha256\"\nversion = \"0.1.0\"\n\n[data]\n\"policy.rego\" = '''\n{rego}'''\n"
    )
}

/// Attaches `rego` for `platform`.
pub fn attach(platform: Platform, rego: &str) -> Attached {
    match platform {
        Platform::Aks | Platform::Sim => Attached {
            annotation: AKS_POLICY_ANNOTATION,
            value: STANDARD.encode(rego),
            sha256: hex::encode(Sha256::digest(rego.as_bytes())),
        },
        Platform::CocoSnp | Platform::CocoTdx => {
            let toml = initdata(rego);
            // gzip with no name and time 0: the same bytes for the same policy.
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::best());
            let bytes = gz
                .write_all(toml.as_bytes())
                .and_then(|()| gz.finish())
                .unwrap_or_default();
            Attached {
                annotation: COCO_INITDATA_ANNOTATION,
                value: STANDARD.encode(bytes),
                sha256: hex::encode(Sha256::digest(toml.as_bytes())),
            }
        }
    }
}

/// The policy data of an annotation an earlier run wrote (`None` if there is none, or it is
/// not one of ours).
pub fn read_back(annotation: &str, value: &str) -> Option<PolicyData> {
    let bytes = STANDARD.decode(value.trim()).ok()?;
    let text = match annotation {
        AKS_POLICY_ANNOTATION => String::from_utf8(bytes).ok()?,
        COCO_INITDATA_ANNOTATION => {
            let mut s = String::new();
            // At most 16 MiB of initdata: an annotation is far smaller.
            flate2::read::GzDecoder::new(&bytes[..])
                .take(16 << 20)
                .read_to_string(&mut s)
                .ok()?;
            s
        }
        _ => return None,
    };
    // The data runs from its line to the end of the policy (on CoCo, to the initdata's
    // closing quotes).
    let start = text.find(&format!("\n{DATA_PREFIX}"))? + 1 + DATA_PREFIX.len();
    let rest = &text[start..];
    let end = rest.find("\n'''").map_or(rest.len(), |i| i + 1);
    serde_json::from_str(&rest[..end]).ok()
}

/// The arguments Kubernetes gives a container: `command` replaces the image's Entrypoint (and
/// drops its Cmd), `args` replaces its Cmd.
pub fn process_args(
    command: Option<&[String]>,
    args: Option<&[String]>,
    image: &ImageDefaults,
) -> Vec<String> {
    match (command, args) {
        (Some(c), Some(a)) => c.iter().chain(a).cloned().collect(),
        (Some(c), None) => c.to_vec(),
        (None, Some(a)) => image.entrypoint.iter().chain(a).cloned().collect(),
        (None, None) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> PolicyData {
        PolicyData {
            containers: vec![ContainerRule {
                name: "app".into(),
                image: "r/app@sha256:00".into(),
                args: vec!["/bin/app".into()],
                env: vec!["A=1".into()],
                env_names: vec![],
                mounts: vec!["/confidant".into()],
                defaults: ImageDefaults::default(),
            }],
            logs: false,
        }
    }

    #[test]
    fn the_data_reads_back_from_every_platform_and_the_bytes_are_stable() {
        let rego = rego(&data());
        for platform in Platform::ALL {
            let a = attach(platform, &rego);
            assert_eq!(a, attach(platform, &rego), "{platform}: not deterministic");
            assert_eq!(
                read_back(a.annotation, &a.value),
                Some(data()),
                "{platform}"
            );
        }
        assert_eq!(read_back(AKS_POLICY_ANNOTATION, "not base64!"), None);
        assert_eq!(read_back("other", &STANDARD.encode(&rego)), None);
    }

    #[test]
    fn kubernetes_combines_command_and_args_with_the_image() {
        let image = ImageDefaults {
            entrypoint: vec!["ep".into()],
            cmd: vec!["cmd".into()],
            env: vec![],
        };
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(process_args(None, None, &image), v(&["ep", "cmd"]));
        assert_eq!(
            process_args(None, Some(&v(&["a"])), &image),
            v(&["ep", "a"])
        );
        assert_eq!(process_args(Some(&v(&["c"])), None, &image), v(&["c"]));
        assert_eq!(
            process_args(Some(&v(&["c"])), Some(&v(&["a"])), &image),
            v(&["c", "a"])
        );
    }
}
