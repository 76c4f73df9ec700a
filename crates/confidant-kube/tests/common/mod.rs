//! What the golden and policy tests share: the corpus's digests and image configs, the options.
#![allow(dead_code)]

use std::collections::BTreeMap;

use confidant_kube::{ImageDefaults, Options, Platform, Resolve};

/// The digests the corpus's tags resolved to when the golden files were made: a fixed table,
/// so that the golden files do not depend on a registry (the CLI's test resolves through a
/// real one).
pub(crate) struct Table(BTreeMap<&'static str, &'static str>);

impl Resolve for Table {
    fn digest(&self, image: &str) -> Result<String, String> {
        self.0
            .get(image)
            .map(|d| d.to_string())
            .ok_or_else(|| format!("manifest unknown: {image}"))
    }

    fn image_defaults(&self, image: &str) -> Result<ImageDefaults, String> {
        let name = image.split('@').next().unwrap_or(image);
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let (entrypoint, cmd, env) = match name {
            "docker.io/library/redis:7.2" => (
                v(&["docker-entrypoint.sh"]),
                v(&["redis-server"]),
                v(&[path, "REDIS_VERSION=7.2.5"]),
            ),
            "docker.io/library/nginx:1.27" => (
                v(&["/docker-entrypoint.sh"]),
                v(&["nginx", "-g", "daemon off;"]),
                v(&[path, "NGINX_VERSION=1.27.0"]),
            ),
            "docker.io/library/busybox:1.36" => (vec![], v(&["sh"]), v(&[path])),
            "docker.io/library/postgres:16" => (
                v(&["docker-entrypoint.sh"]),
                v(&["postgres"]),
                v(&[path, "PG_MAJOR=16", "PGDATA=/var/lib/postgresql/data"]),
            ),
            "docker.io/library/python:3.12-slim" => {
                (vec![], v(&["python3"]), v(&[path, "PYTHON_VERSION=3.12.4"]))
            }
            _ => return Err(format!("no config for {image}")),
        };
        Ok(ImageDefaults {
            entrypoint,
            cmd,
            env,
        })
    }
}

pub(crate) fn table() -> Table {
    Table(BTreeMap::from([
        (
            "docker.io/library/redis:7.2",
            "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        ),
        (
            "docker.io/library/nginx:1.27",
            "sha256:2222222222222222222222222222222222222222222222222222222222222222",
        ),
        (
            "docker.io/library/busybox:1.36",
            "sha256:3333333333333333333333333333333333333333333333333333333333333333",
        ),
        (
            "docker.io/library/postgres:16",
            "sha256:4444444444444444444444444444444444444444444444444444444444444444",
        ),
    ]))
}

pub(crate) fn options(platform: Platform) -> Options {
    Options {
        platform,
        coordinator: "confidant.confidant.svc.cluster.local:4433".into(),
        coordinator_root_sha256: "ab".repeat(32),
        confidant_image:
            "ghcr.io/confidant-dev/confidant@sha256:9999999999999999999999999999999999999999999999999999999999999999"
                .into(),
    }
}
