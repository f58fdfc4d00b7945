//! The upstream side: a pooled HTTP/1.1 + HTTP/2 client with rustls (webpki roots compiled in)
//! and [`Forward`], the service that sends a checked request to its provider's base URL.

use crate::keys::Credentials;
use bytes::Bytes;
use http::header::{HeaderName, CONNECTION, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tollgate::BoxError;
use tollgate_http::Provider;
use tower::Service;

/// A provider's base URL: scheme, authority and a path prefix without a trailing `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    scheme: Scheme,
    authority: Authority,
    prefix: String,
}

impl Base {
    /// Parses `http(s)://host[:port][/prefix]`.
    pub(crate) fn parse(url: &str) -> Result<Base, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .filter(|s| *s == &Scheme::HTTP || *s == &Scheme::HTTPS)
            .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?
            .clone();
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{url}` has no host"))?
            .clone();
        if uri.query().is_some() {
            return Err(format!("`{url}` must not have a query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Base {
            scheme,
            authority,
            prefix,
        })
    }

    /// This base with `path_and_query` appended. A base whose prefix the path already starts with
    /// (`.../v1` and `/v1/chat/completions`) does not repeat it.
    fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let pq = if self.prefix.is_empty() || path_and_query.starts_with(&self.prefix) {
            path_and_query.to_owned()
        } else {
            format!("{}{path_and_query}", self.prefix)
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(pq)?)
            .build()
    }
}

/// Where a call goes: the provider's API it speaks and its base URL.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub(crate) provider: Provider,
    pub(crate) base: Base,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends requests upstream: rewrites the URI to the route's base, drops hop-by-hop headers and
/// sets the credentials ([`Credentials`]). The route is in the request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct Forward {
    client: HttpsClient,
    credentials: Arc<Credentials>,
}

impl Forward {
    pub(crate) fn new(credentials: Arc<Credentials>) -> Forward {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build(https);
        Forward {
            client,
            credentials,
        }
    }
}

/// Headers that belong to one connection, never forwarded (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Removes the hop-by-hop headers, and those the `connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
    headers.remove(http::header::TRANSFER_ENCODING);
}

/// An answer's `retry-after-ms`, else its `retry-after` in seconds (the date form is left to
/// the throttle's classifier).
fn retry_after(headers: &HeaderMap) -> Option<std::time::Duration> {
    let num = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let secs = num("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| num("retry-after"))?;
    std::time::Duration::try_from_secs_f64(secs).ok()
}

impl Service<Request<Full<Bytes>>> for Forward {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let Some(route) = parts.extensions.get::<Route>().cloned() else {
            return Box::pin(async { Err("no upstream route for the request".into()) });
        };
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", PathAndQuery::as_str)
            .to_owned();
        let uri = match route.base.uri(&pq) {
            Ok(uri) => uri,
            Err(e) => return Box::pin(async move { Err(e.into()) }),
        };
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(HOST);
        self.credentials.apply(route.provider, &mut parts.headers);
        let fut = self.client.request(Request::from_parts(parts, body));
        Box::pin(async move {
            let mut res = fut.await?;
            crate::metrics::upstream_answer(res.status().as_u16(), retry_after(res.headers()));
            strip_hop_by_hop(res.headers_mut());
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_the_base_once() {
        let b = Base::parse("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            b.uri("/v1/chat/completions?x=1").unwrap().to_string(),
            "https://api.openai.com/v1/chat/completions?x=1"
        );
        let b = Base::parse("http://127.0.0.1:8080/gw").unwrap();
        assert_eq!(
            b.uri("/v1/messages").unwrap().to_string(),
            "http://127.0.0.1:8080/gw/v1/messages"
        );
        assert!(Base::parse("ftp://x").is_err());
        assert!(Base::parse("api.openai.com").is_err());
        assert!(Base::parse("http://x/?q=1").is_err());
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-api-key", "k".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-api-key"]);
    }
}
