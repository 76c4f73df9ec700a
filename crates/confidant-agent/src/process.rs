//! The app's process: the image's entrypoint, cmd, env, working directory and user, with the
//! manifest's parameters on top — the image itself is not modified or rebuilt.
//!
//! As `docker run IMAGE ARGS…`: manifest `args` replace the image's `Cmd` and keep its
//! `Entrypoint`; manifest `env` adds to and overrides the image's `Env`.

use std::collections::BTreeMap;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use oci_spec::image::ImageConfiguration;

use crate::error::{AgentError, Result};

/// `PATH` when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the OCI runtime starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProcess {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory (absolute, inside the rootfs).
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// The process for an image `config` unpacked at `rootfs`, with the manifest's rendered `args`
/// and `env`.
pub fn app_process(
    config: &ImageConfiguration,
    rootfs: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Result<AppProcess> {
    let c = config.config().clone().unwrap_or_default();
    let mut argv: Vec<String> = c.entrypoint().clone().unwrap_or_default();
    if args.is_empty() {
        argv.extend(c.cmd().clone().unwrap_or_default());
    } else {
        argv.extend(args.iter().cloned());
    }
    if argv.is_empty() {
        return Err(AgentError::Config(
            "nothing to run: the image has no Entrypoint or Cmd and the manifest gives no args"
                .into(),
        ));
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    for kv in c.env().clone().unwrap_or_default() {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        vars.retain(|(x, _)| x != k);
        vars.push((k.to_string(), v.to_string()));
    }
    for (k, v) in env {
        vars.retain(|(x, _)| x != k);
        vars.push((k.clone(), v.clone()));
    }
    if !vars.iter().any(|(k, _)| k == "PATH") {
        vars.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    let cwd = c
        .working_dir()
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(AgentError::Config(format!(
            "the image's WorkingDir: expected an absolute path, got {cwd:?}"
        )));
    }
    let user = c.user().clone().unwrap_or_default();
    let (uid, gid, additional_gids) = resolve_user(rootfs, &user)?;
    Ok(AppProcess {
        args: argv,
        env: vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        uid,
        gid,
        additional_gids,
    })
}

/// Reads `etc/<name>` inside the rootfs without following links out of it.
fn read_etc(rootfs: &Path, name: &str) -> String {
    Dir::open_ambient_dir(rootfs, ambient_authority())
        .and_then(|d| d.read_to_string(format!("etc/{name}")))
        .unwrap_or_default()
}

/// `user`, `uid`, `user:group`, `uid:gid` (or empty: root) → uid, gid, supplementary gids,
/// resolved in the image's own /etc/passwd and /etc/group.
fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>)> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let passwd = read_etc(rootfs, "passwd");
    let group = read_etc(rootfs, "group");
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, mut gid, name) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| bad_user(spec, "a numeric uid in /etc/passwd"))?,
            f[3].parse()
                .map_err(|_| bad_user(spec, "a numeric gid in /etc/passwd"))?,
            Some(f[0].to_string()),
        ),
        (None, Ok(uid)) => (uid, uid, None),
        (None, Err(_)) => {
            return Err(bad_user(spec, "a user listed in the image's /etc/passwd"));
        }
    };
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| bad_user(spec, "a group listed in the image's /etc/group"))?,
        };
    }
    let mut extra = Vec::new();
    if let Some(name) = name {
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == name)
                && let Ok(g) = f[2].parse::<u32>()
                && g != gid
                && !extra.contains(&g)
            {
                extra.push(g);
            }
        }
    }
    Ok((uid, gid, extra))
}

fn bad_user(spec: &str, expected: &str) -> AgentError {
    AgentError::Config(format!(
        "the image's User {spec:?}: expected {expected}, found none"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ImageConfiguration {
        serde_json::from_str(json).unwrap()
    }

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nredis:x:100:101::/var/lib/redis:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nredis:x:101:\ndata:x:200:redis\n",
        )
        .unwrap();
        d
    }

    const IMAGE: &str = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
        "config":{"Entrypoint":["/usr/bin/redis-server"],"Cmd":["/etc/redis.conf"],
        "Env":["PATH=/usr/bin","A=1"],"WorkingDir":"/data","User":"redis"}}"#;

    #[test]
    fn the_image_runs_as_configured_without_parameters() {
        let r = rootfs();
        let p = app_process(&config(IMAGE), r.path(), &[], &BTreeMap::new()).unwrap();
        assert_eq!(p.args, ["/usr/bin/redis-server", "/etc/redis.conf"]);
        assert_eq!(p.env, ["PATH=/usr/bin", "A=1"]);
        assert_eq!((p.cwd.as_str(), p.uid, p.gid), ("/data", 100, 101));
        assert_eq!(p.additional_gids, [200]);
    }

    #[test]
    fn manifest_args_replace_cmd_and_env_overrides() {
        let r = rootfs();
        let env = BTreeMap::from([("A".to_string(), "2".to_string()), ("B".into(), "3".into())]);
        let p = app_process(&config(IMAGE), r.path(), &["/run/x.conf".into()], &env).unwrap();
        assert_eq!(p.args, ["/usr/bin/redis-server", "/run/x.conf"]);
        assert_eq!(p.env, ["PATH=/usr/bin", "A=2", "B=3"]);
    }

    #[test]
    fn users_and_failures() {
        let r = rootfs();
        assert_eq!(resolve_user(r.path(), "").unwrap(), (0, 0, vec![]));
        assert_eq!(
            resolve_user(r.path(), "1000:1000").unwrap(),
            (1000, 1000, vec![])
        );
        assert_eq!(
            resolve_user(r.path(), "redis:data").unwrap(),
            (100, 200, vec![])
        );
        assert!(resolve_user(r.path(), "nobody").is_err());
        assert!(resolve_user(r.path(), "redis:nogroup").is_err());
        let empty = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
        assert!(app_process(&config(empty), r.path(), &[], &BTreeMap::new()).is_err());
        let p = app_process(&config(empty), r.path(), &["x".into()], &BTreeMap::new()).unwrap();
        assert_eq!(p.env, [format!("PATH={DEFAULT_PATH}")]);
    }
}
