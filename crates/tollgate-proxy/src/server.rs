//! The gateway: the service stack every call goes through, the HTTP server in front of it
//! ([`Gateway`]) and its graceful shutdown.
//!
//! A call passes, outermost first: the key check and scope mapping (here), the request reader
//! (body limit → 413, the provider's 400 for a malformed body, the estimate), the retry policy
//! (upstream 429 / 529 / 5xx), the throttle (fair queue, `max_wait` → 429 with `retry-after`,
//! shared cooldown), the usage reader (settles the call at the end of the answer's body), and
//! the upstream client.

use crate::config::Config;
use crate::errors::{from_call_error, ApiError};
use crate::keys::{CallerId, Credentials, Unauthorized};
use crate::metrics::{self as m, Metrics};
use crate::observe::{self, scope_list, CallTrace, End, ObservedBody, Trace};
use crate::scopes::{FromExtensions, ScopeRules};
use crate::upstream::{Base, Forward, Route};
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use rand_chacha::rand_core::SeedableRng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tollgate::feedback::HttpClassifier;
use tollgate::retry::RetryPolicy;
use tollgate::spend::CallLog;
use tollgate::{BoxError, Hooks, Store, ThrottleLayer};
use tollgate_core::{Backoff, RetryBudget};
use tollgate_http::{
    EstimateOptions, HttpHooks, Provider, ReadRequestLayer, ThrottleBuilderExt, UsageBody,
    UsageLayer,
};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tracing::Instrument;

/// The throttle's hooks: scopes and tier from the gateway, the rest from the HTTP adapters.
type ProxyHooks =
    Hooks<FromExtensions, HttpHooks, HttpHooks, FromExtensions, HttpClassifier, HttpHooks>;

/// The stack below the gateway's own checks.
type Stack = BoxCloneSyncService<Request<Body>, http::Response<UsageBody<Incoming>>, BoxError>;

/// What could not be started.
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    grace: Duration,
    call_log: Option<CallLog>,
}

#[derive(Clone)]
struct App {
    stack: Stack,
    credentials: Arc<Credentials>,
    rules: Arc<ScopeRules>,
    anthropic: Option<Base>,
    openai: Option<Base>,
    metrics: Metrics,
}

impl Gateway {
    /// Binds the listen address, builds the throttle (connecting to Redis when configured) and
    /// starts serving.
    ///
    /// # Errors
    /// A [`StartError`] naming what failed: the throttle's rules (the rule and scope), the call
    /// log file, Redis, the metrics recorder, or the listen address.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| StartError(format!("{what}: {e}"));
        let proxy = &config.proxy;
        let credentials =
            Arc::new(Credentials::from_config(&proxy.keys).map_err(|e| fail("proxy.keys", &e))?);
        let call_log = match &config.call_log {
            Some(path) => Some(
                CallLog::append_to_file(path)
                    .map_err(|e| fail(&format!("call_log {}", path.display()), &e))?,
            ),
            None => None,
        };
        let mut builder = config
            .throttle
            .builder()
            .map_err(|e| fail("throttle", &e))?
            .http(tollgate_http::HeaderRules::new())
            .extract_scopes(FromExtensions)
            .assign_priority(FromExtensions);
        if let Some(log) = &call_log {
            builder = builder.call_log(log.clone());
        }
        let budgets: Vec<String> = config
            .throttle
            .budgets
            .keys()
            .filter(|k| !k.contains('*'))
            .cloned()
            .collect();
        let handle = m::install().map_err(|e| fail("metrics", &e))?;
        let forward = Forward::new(credentials.clone());
        let (stack, metrics) = match &proxy.redis_url {
            None => {
                let layer = builder.build().map_err(|e| fail("throttle", &e))?;
                stack(layer, &config, forward, handle, budgets)?
            }
            Some(url) => {
                let store = tollgate_redis::RedisStore::builder(url.as_str())
                    .hash_tag(proxy.redis_hash_tag.as_str())
                    .build()
                    .await
                    .map_err(|e| fail("proxy.redis_url", &e))?;
                let layer = builder
                    .build_with_store(store)
                    .map_err(|e| fail("throttle", &e))?;
                stack(layer, &config, forward, handle, budgets)?
            }
        };
        let app = App {
            stack,
            credentials,
            rules: Arc::new(ScopeRules::from_config(proxy)),
            anthropic: base(&proxy.upstream.anthropic, "proxy.upstream.anthropic")?,
            openai: base(&proxy.upstream.openai, "proxy.upstream.openai")?,
            metrics,
        };
        let router = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(render_metrics))
            .fallback(handle_call)
            .with_state(app);
        let listener = tokio::net::TcpListener::bind(proxy.listen)
            .await
            .map_err(|e| fail(&format!("proxy.listen {}", proxy.listen), &e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| fail("proxy.listen", &e))?;
        // Answers go out as soon as they are written, not held for coalescing.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (stop, mut stopped) = watch::channel(false);
        let served = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(Gateway {
            addr,
            stop,
            served,
            grace: proxy.shutdown_grace,
            call_log,
        })
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets the calls in flight (streams included) finish within
    /// the grace period, then flushes the call log. Returns whether every call finished in time.
    pub async fn shutdown(self) -> bool {
        let _ = self.stop.send(true);
        let in_time = tokio::time::timeout(self.grace, self.served).await.is_ok();
        if let Some(log) = &self.call_log {
            log.flush();
        }
        in_time
    }
}

/// An upstream base URL (checked by [`Config::from_toml`] already, unless the configuration was
/// built in code).
fn base(url: &Option<String>, key: &str) -> Result<Option<Base>, StartError> {
    url.as_deref()
        .map(Base::parse)
        .transpose()
        .map_err(|e| StartError(format!("{key}: {e}")))
}

/// The stack under the gateway's checks, on any store, and the metrics reading its limiter.
fn stack<St: Store>(
    layer: ThrottleLayer<ProxyHooks, St>,
    config: &Config,
    forward: Forward,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    budgets: Vec<String>,
) -> Result<(Stack, Metrics), StartError> {
    let limiter = layer.limiter().clone();
    let spend_limiter = limiter.clone();
    let stats = Arc::new(move || limiter.stats());
    let spend = Arc::new(move || {
        budgets
            .iter()
            .filter_map(|k| Some((k.clone(), spend_limiter.spend(k)?.spent.as_dollars_f64())))
            .collect()
    });
    let provider_delay = config
        .throttle
        .max_provider_delay
        .unwrap_or(tollgate::DEFAULT_MAX_PROVIDER_DELAY);
    // The official SDKs' backoff, with the configured number of retries (checked to be 1 to 10).
    let sdk = Backoff::sdk_default();
    let backoff = Backoff::builder()
        .jitter(sdk.jitter())
        .base(sdk.base())
        .cap(sdk.cap())
        .max_retries(config.proxy.retry.max_retries)
        .build()
        .map_err(|e| StartError(format!("proxy.retry: {e}")))?;
    let retry = RetryPolicy::new(
        HttpClassifier::new(),
        backoff,
        RetryBudget::default(),
        // Jitter only spreads retries; instances differ by their process id.
        rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(std::process::id())),
    )
    .honour_retry_after_up_to(provider_delay);
    let entered: fn(_) -> _ = observe::entered;
    let admitted: fn(_) -> _ = observe::admitted;
    let svc = ServiceBuilder::new()
        .layer(ReadRequestLayer::new(EstimateOptions::default()).max_body(config.proxy.max_body))
        .layer(retry.into_layer())
        .map_request(entered)
        .layer(layer)
        .map_request(admitted)
        .layer(UsageLayer::new())
        .service(forward);
    Ok((
        BoxCloneSyncService::new(svc),
        Metrics::new(handle, stats, spend),
    ))
}

async fn render_metrics(State(app): State<App>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Which API a request speaks: by its path, else by its `anthropic-version` header.
fn provider_of(req: &Request<Body>) -> Provider {
    Provider::from_path(req.uri().path()).unwrap_or_else(|| {
        if req.headers().contains_key("anthropic-version") {
            Provider::Anthropic
        } else {
            Provider::OpenAiChat
        }
    })
}

async fn handle_call(State(app): State<App>, mut req: Request<Body>) -> Response {
    let started = Instant::now();
    let provider = provider_of(&req);
    let base = match provider {
        Provider::Anthropic => app.anthropic.clone(),
        _ => app.openai.clone(),
    };
    let Some(base) = base else {
        let msg = format!("no upstream is configured for {}", req.uri().path());
        return ApiError::new(StatusCode::NOT_FOUND, msg, "no_route").into_response(Some(provider));
    };
    let caller = match app
        .credentials
        .identify(req.headers(), app.rules.needs_caller())
    {
        Ok(c) => c,
        Err(Unauthorized) => {
            m::call_done("unauthorized");
            tracing::warn!(path = req.uri().path(), "call refused: no valid proxy key");
            let e = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid x-api-key",
                "unauthorized",
            );
            return e.into_response(Some(provider));
        }
    };
    let call = app.rules.call(req.headers(), caller.as_ref());
    let span = tracing::info_span!(
        "call",
        path = req.uri().path(),
        scopes = %scope_list(&call.scopes),
        tier = call.priority.0,
        caller = caller.as_ref().map(|c: &CallerId| c.0.as_str()),
    );
    let trace = CallTrace {
        trace: Arc::new(Trace::default()),
        scopes: call.scopes.clone(),
    };
    let ext = req.extensions_mut();
    ext.insert(Route { provider, base });
    ext.insert(call);
    ext.insert(trace.clone());
    let result = app.stack.oneshot(req).instrument(span.clone()).await;
    match result {
        Ok(res) => {
            let (parts, body) = res.into_parts();
            let end = End {
                span,
                call: Some(trace),
                provider: Some(provider),
                status: parts.status,
                started,
            };
            Response::from_parts(parts, Body::new(ObservedBody::new(body, end)))
        }
        Err(e) => {
            let err = from_call_error(&e);
            m::call_done(err.outcome);
            let data = trace.trace.get();
            span.in_scope(|| {
                tracing::info!(
                    status = err.status.as_u16(),
                    outcome = err.outcome,
                    wait_ms = data.wait.as_millis() as u64,
                    reason = %e,
                    "call answered by the gateway"
                )
            });
            err.into_response(Some(provider))
        }
    }
}
