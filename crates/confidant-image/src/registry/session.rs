//! What a client learns about authenticating to each registry, and the 401 dance: challenges,
//! Bearer tokens per scope, and the credentials to offer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::{self, Challenge, Credentials, Found, TokenResponse};
use super::client::RegistryClient;
use super::reference::{DOCKER_HUB, ImageRef};
use super::transport::{
    ReadLimit, read_limited, status_error, transport_error, url_is_loopback, without_query,
};
use crate::{Error, Result};

/// Tokens are renewed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// docker's token spec: a token without `expires_in` lasts 60 seconds.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;
/// The largest token-service answer read.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// What a request needs permission for, as token scopes.
#[derive(Clone, Copy)]
pub(crate) enum Access<'a> {
    Pull,
    Push,
    /// Push to the target and pull from `from` (cross-repository mount).
    Mount {
        from: &'a str,
    },
}

impl Access<'_> {
    pub(crate) fn scopes(&self, repository: &str) -> Vec<String> {
        match self {
            Access::Pull => vec![format!("repository:{repository}:pull")],
            Access::Push => vec![format!("repository:{repository}:pull,push")],
            Access::Mount { from } => vec![
                format!("repository:{repository}:pull,push"),
                format!("repository:{from}:pull"),
            ],
        }
    }
}

pub(crate) struct Token {
    value: String,
    renew_at: Instant,
}

/// What has been learnt about authenticating to each registry.
#[derive(Default)]
pub(crate) struct AuthState {
    /// Credentials by `registry/repository` (auth files may differ per repository).
    found: HashMap<String, Found>,
    /// The challenge each registry answered with.
    challenges: HashMap<String, Challenge>,
    /// Bearer tokens by registry and scopes.
    tokens: HashMap<(String, String), Token>,
}

impl RegistryClient {
    /// The `Authorization` value for a request, from what is known: explicit bearer token, Basic
    /// credentials for a Basic registry, or a (cached or fetched) token for a Bearer registry.
    /// `None` until the registry has challenged.
    pub(crate) async fn authorization(
        &self,
        image: &ImageRef,
        access: Access<'_>,
    ) -> Result<Option<String>> {
        let found = self.credentials(image)?;
        if let Some(Credentials::Bearer(t)) = &found.credentials {
            return Ok(Some(format!("Bearer {t}")));
        }
        let challenge = self.lock().challenges.get(image.registry()).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(basic_header(found.credentials.as_ref())),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = (
                    image.registry().to_owned(),
                    access.scopes(image.repository()).join(" "),
                );
                if let Some(t) = self.lock().tokens.get(&key)
                    && Instant::now() < t.renew_at
                {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let token = self
                    .fetch_token(image, access, &realm, service.as_deref(), &found)
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// After a 401: learn the registry's challenge and work out a better `Authorization`, or
    /// `None` if there is nothing better to offer than what was sent.
    pub(crate) async fn answer_challenge(
        &self,
        image: &ImageRef,
        access: Access<'_>,
        headers: &HeaderMap,
        sent: Option<&str>,
    ) -> Result<Option<String>> {
        let values = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let Some(challenge) = auth::parse_challenges(values).into_iter().next() else {
            return Ok(None);
        };
        self.lock()
            .challenges
            .insert(image.registry().to_owned(), challenge.clone());
        let found = self.credentials(image)?;
        let next = match challenge {
            Challenge::Basic => basic_header(found.credentials.as_ref()),
            Challenge::Bearer { realm, service, .. } => {
                if matches!(found.credentials, Some(Credentials::Bearer(_))) {
                    return Ok(None);
                }
                let token = self
                    .fetch_token(image, access, &realm, service.as_deref(), &found)
                    .await?;
                Some(format!("Bearer {token}"))
            }
        };
        Ok(next.filter(|n| Some(n.as_str()) != sent))
    }

    /// Gets a token from a Bearer challenge's realm (with Basic credentials if there are any) and
    /// caches it.
    async fn fetch_token(
        &self,
        image: &ImageRef,
        access: Access<'_>,
        realm: &str,
        service: Option<&str>,
        found: &Found,
    ) -> Result<String> {
        let registry = image.registry();
        let mut url = Url::parse(realm).map_err(|e| Error::Registry {
            registry: registry.to_owned(),
            reason: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        if url.scheme() != "https" && !(url.scheme() == "http" && url_is_loopback(&url)) {
            return Err(Error::Registry {
                registry: registry.to_owned(),
                reason: format!(
                    "token realm {} is not HTTPS (plain HTTP only on loopback): refusing to ask it for a token",
                    without_query(&url)
                ),
            });
        }
        let scopes = access.scopes(image.repository());
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in &scopes {
                q.append_pair("scope", s);
            }
        }
        let what = format!("GET token from {}", without_query(&url));
        let mut request = self.client_for(&url).get(url.clone());
        if let Some(Credentials::Basic { username, password }) = &found.credentials {
            request = request.basic_auth(username, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(registry, &what, &e))?;
        if response.status() != StatusCode::OK {
            return Err(status_error(registry, &what, response, Some(&found.origin)).await);
        }
        let body = read_limited(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| match e {
                ReadLimit::Transport(e) => transport_error(registry, &what, &e),
                ReadLimit::TooLarge => {
                    Error::Limit(format!("{what}: answer over {MAX_TOKEN_RESPONSE} bytes"))
                }
            })?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::malformed(format!("token from {realm}"), e.to_string()))?;
        let Some(token) = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
        else {
            return Err(Error::malformed(
                format!("token from {realm}"),
                "no `token` or `access_token`",
            ));
        };
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME));
        let renew_at = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        self.lock().tokens.insert(
            (registry.to_owned(), scopes.join(" ")),
            Token {
                value: token.clone(),
                renew_at,
            },
        );
        Ok(token)
    }

    /// The credentials for `image`'s registry and repository: options first, then auth files.
    pub(crate) fn credentials(&self, image: &ImageRef) -> Result<Found> {
        let key = format!("{}/{}", image.registry(), image.repository());
        if let Some(f) = self.lock().found.get(&key) {
            return Ok(f.clone());
        }
        let options = &self.inner.options;
        let explicit = options.credentials.iter().find(|(k, _)| {
            let k = k.as_str();
            k == image.registry()
                || (image.registry() == DOCKER_HUB
                    && matches!(k, "index.docker.io" | "registry-1.docker.io"))
        });
        let found = match explicit {
            Some((_, c)) => Found {
                credentials: Some(c.clone()),
                origin: "from the client options".into(),
            },
            None => {
                auth::lookup_auth_files(&options.auth_files, image.registry(), image.repository())?
            }
        };
        self.lock().found.insert(key, found.clone());
        Ok(found)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        // The state is only caches: a panic elsewhere while holding it leaves nothing half-done.
        self.inner.auth.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn basic_header(credentials: Option<&Credentials>) -> Option<String> {
    match credentials {
        Some(Credentials::Basic { username, password }) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        )),
        _ => None,
    }
}
