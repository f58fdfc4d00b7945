//! API keys: which key goes upstream ([`Credentials`]), and the caller's identity for its scope
//! ([`CallerId`]). A key is never logged, counted or written: only a proxy key's configured name
//! or the first 16 hex digits of a key's SHA-256 leave this module.

use crate::config::{KeyMode, KeysConfig};
use http::header::{HeaderValue, AUTHORIZATION};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use tollgate_http::Provider;

/// Who called, as far as the scopes need it: a proxy key's name, or a hash of the caller's own
/// key. Put in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CallerId(pub(crate) String);

/// The key a client presented: `x-api-key`, else `Authorization: Bearer`.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    let auth = headers.get(AUTHORIZATION)?.as_bytes();
    let token = auth
        .strip_prefix(b"Bearer ")
        .or_else(|| auth.strip_prefix(b"bearer "))?;
    Some(token.trim_ascii())
}

/// The first 16 hex digits of the SHA-256 of `key`.
pub(crate) fn key_hash(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The gateway's key handling, built once from `[proxy.keys]`.
pub(crate) enum Credentials {
    /// The client's key goes upstream as it came.
    Passthrough,
    /// Clients present one of `clients`; the real key goes upstream.
    Proxy {
        clients: Vec<(String, Vec<u8>)>,
        anthropic: Option<HeaderValue>,
        openai: Option<HeaderValue>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Passthrough => f.write_str("Passthrough"),
            Credentials::Proxy { clients, .. } => f
                .debug_struct("Proxy")
                .field("clients", &clients.iter().map(|c| &c.0).collect::<Vec<_>>())
                .finish_non_exhaustive(),
        }
    }
}

/// A request without a valid proxy key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unauthorized;

impl Credentials {
    /// From the checked configuration (the environment variables were checked to be set).
    pub(crate) fn from_config(keys: &KeysConfig) -> Result<Credentials, String> {
        if keys.mode == KeyMode::Passthrough {
            return Ok(Credentials::Passthrough);
        }
        let real = |var: &Option<String>, bearer: bool| -> Result<Option<HeaderValue>, String> {
            let Some(var) = var else { return Ok(None) };
            let key = std::env::var(var).map_err(|_| format!("`{var}` is not set"))?;
            let text = if bearer { format!("Bearer {key}") } else { key };
            let mut value = HeaderValue::try_from(text)
                .map_err(|_| format!("`{var}` does not hold a valid header value"))?;
            value.set_sensitive(true);
            Ok(Some(value))
        };
        Ok(Credentials::Proxy {
            clients: keys
                .clients
                .iter()
                .map(|c| (c.name.clone(), c.key.as_bytes().to_vec()))
                .collect(),
            anthropic: real(&keys.anthropic_env, false)?,
            openai: real(&keys.openai_env, true)?,
        })
    }

    /// Who is calling. In proxy mode a request without a listed proxy key is [`Unauthorized`].
    /// `hash`: whether a passthrough caller's key is hashed (only when a scope needs it).
    pub(crate) fn identify(
        &self,
        headers: &HeaderMap,
        hash: bool,
    ) -> Result<Option<CallerId>, Unauthorized> {
        let key = presented(headers);
        match self {
            Credentials::Passthrough => Ok(key.filter(|_| hash).map(|k| CallerId(key_hash(k)))),
            Credentials::Proxy { clients, .. } => {
                let key = key.ok_or(Unauthorized)?;
                // Compare with every key, so the time does not tell which one nearly matched.
                let mut found = None;
                for (name, k) in clients {
                    if same(k, key) {
                        found = Some(name);
                    }
                }
                found.map(|n| Some(CallerId(n.clone()))).ok_or(Unauthorized)
            }
        }
    }

    /// Sets the upstream key of `provider` in proxy mode (the client's proxy key is removed);
    /// leaves the headers as they are in passthrough mode.
    pub(crate) fn apply(&self, provider: Provider, headers: &mut HeaderMap) {
        let Credentials::Proxy {
            anthropic, openai, ..
        } = self
        else {
            return;
        };
        headers.remove("x-api-key");
        headers.remove(AUTHORIZATION);
        match provider {
            Provider::Anthropic => {
                if let Some(k) = anthropic {
                    headers.insert("x-api-key", k.clone());
                }
            }
            _ => {
                if let Some(k) = openai {
                    headers.insert(AUTHORIZATION, k.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Credentials {
        Credentials::Proxy {
            clients: vec![("alice".into(), b"pk-alice".to_vec())],
            anthropic: Some(HeaderValue::from_static("sk-ant-real")),
            openai: Some(HeaderValue::from_static("Bearer sk-real")),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn proxy_keys_are_checked_and_replaced() {
        let c = proxy();
        let ok = headers(&[("authorization", "Bearer pk-alice")]);
        assert_eq!(c.identify(&ok, true), Ok(Some(CallerId("alice".into()))));
        let ok = headers(&[("x-api-key", "pk-alice")]);
        assert!(c.identify(&ok, false).is_ok());
        for bad in [
            headers(&[("x-api-key", "pk-alicf")]),
            headers(&[("authorization", "Basic pk-alice")]),
            headers(&[]),
        ] {
            assert_eq!(c.identify(&bad, true), Err(Unauthorized));
        }
        let mut h = headers(&[
            ("x-api-key", "pk-alice"),
            ("authorization", "Bearer pk-alice"),
        ]);
        c.apply(Provider::Anthropic, &mut h);
        assert_eq!(h.get("x-api-key").unwrap(), "sk-ant-real");
        assert!(h.get("authorization").is_none());
    }

    #[test]
    fn passthrough_keys_are_hashed_never_kept() {
        let c = Credentials::Passthrough;
        let h = headers(&[("authorization", "Bearer sk-client-key")]);
        let id = c.identify(&h, true).unwrap().unwrap();
        assert_eq!(id.0.len(), 16);
        assert!(!id.0.contains("sk-client"));
        assert_eq!(id, c.identify(&h, true).unwrap().unwrap());
        assert_eq!(c.identify(&h, false), Ok(None));
        let mut forwarded = h.clone();
        c.apply(Provider::Anthropic, &mut forwarded);
        assert_eq!(forwarded, h);
    }
}
