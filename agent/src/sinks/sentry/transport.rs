//! The service: one envelope → one `POST {envelope_url}` over HTTPS (rustls on aws-lc-rs,
//! native roots, as the AWS SDK uses) or plain HTTP for local receivers, gzipped, with
//! `X-Sentry-Auth` and a deadline on every request, through the proxy the environment names
//! (`proxy`). Returns the status and the rate-limit headers; deciding what they mean is the
//! sink's job.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;

use super::config::{Dsn, Scheme};
use super::envelope::CONTENT_TYPE;
use super::proxy::ProxyConnector;

/// Largest response body read (Sentry answers `{"id": ...}`).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What Sentry answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    /// HTTP status.
    pub(crate) status: u16,
    /// `X-Sentry-Rate-Limits`, when present.
    pub(crate) rate_limits: Option<String>,
    /// `Retry-After`, when present.
    pub(crate) retry_after: Option<String>,
}

/// Why a request got no answer. The texts come from the connection (never the DSN key,
/// which travels only in a header).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No complete answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, TLS, or the exchange failed.
    #[error("{0}")]
    Connection(String),
}

impl SendError {
    /// A short label for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Connection(_) => "connection",
        }
    }
}

/// Could not set up TLS.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for Sentry: {0}")]
pub struct TlsError(String);

/// The HTTP client bound to one DSN.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: Client<HttpsConnector<ProxyConnector>, Full<Bytes>>,
    url: Uri,
    /// The proxy envelopes go through (no credentials in it), if any.
    proxy: Option<Uri>,
    /// `Proxy-Authorization` for a forwarding (http) proxy that carries credentials.
    proxy_auth: Option<HeaderValue>,
    auth: HeaderValue,
    user_agent: HeaderValue,
    timeout: Duration,
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Transport {
    /// A client for `dsn` whose requests (connect included) end within `timeout`, through
    /// the proxy `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` choose.
    pub(crate) fn new(dsn: &Dsn, timeout: Duration) -> Result<Self, TlsError> {
        Self::with_proxies(dsn, timeout, Matcher::from_env())
    }

    /// [`Self::new`] with the proxy rules given (tests).
    pub(crate) fn with_proxies(
        dsn: &Dsn,
        timeout: Duration,
        proxies: Matcher,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(builder) => builder,
            Err(error) if dsn.scheme() == Scheme::Https => {
                return Err(TlsError(format!("no usable root certificates: {error}")));
            }
            // Plain HTTP (a local receiver) needs no roots.
            Err(_) => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| TlsError(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let url: Uri = dsn
            .envelope_url()
            .parse()
            .map_err(|_| TlsError("the DSN gives no valid URL".into()))?;
        let proxies = ProxyConnector::new(http, proxies);
        let route = proxies.route(&url);
        let proxy_auth = route
            .as_ref()
            .filter(|_| dsn.scheme() == Scheme::Http)
            .and_then(|proxy| proxy.basic_auth().cloned());
        let connector = builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(proxies);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        let mut auth = HeaderValue::from_str(&dsn.auth_header())
            .map_err(|_| TlsError("the DSN key is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let user_agent = HeaderValue::from_str(&format!("agent/{}", crate::VERSION))
            .unwrap_or(HeaderValue::from_static("agent"));
        Ok(Self {
            client,
            url,
            proxy: route.map(|proxy| proxy.uri().clone()),
            proxy_auth,
            auth,
            user_agent,
            timeout,
        })
    }

    /// Where envelopes go (no key in it).
    pub(crate) fn url(&self) -> &Uri {
        &self.url
    }

    /// The proxy envelopes go through, if any (no credentials in it).
    pub(crate) fn proxy(&self) -> Option<&Uri> {
        self.proxy.as_ref()
    }

    /// POSTs one gzipped envelope.
    pub(crate) async fn send(&self, gzipped: Bytes) -> Result<Reply, SendError> {
        let mut request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::CONTENT_ENCODING, "gzip")
            .header(header::USER_AGENT, self.user_agent.clone())
            .header("x-sentry-auth", self.auth.clone())
            .body(Full::new(gzipped))
            .map_err(|e| SendError::Connection(e.to_string()))?;
        if let Some(auth) = &self.proxy_auth {
            request
                .headers_mut()
                .insert(header::PROXY_AUTHORIZATION, auth.clone());
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| SendError::Connection(error_chain(&e)))?;
            let text = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let reply = Reply {
                status: response.status().as_u16(),
                rate_limits: text("x-sentry-rate-limits"),
                retry_after: text("retry-after"),
            };
            // Read the (small) body so the connection can be reused; its content is unused.
            let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await;
            Ok(reply)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))?
    }
}
