//! The client of Centrifugo's server HTTP API (https://centrifugal.dev/docs/server/server_api):
//! `disconnect`, `batch` (of disconnects) and `info`, each attempt bounded by
//! `centrifugo.api_timeout_ms`, unreachable/timed-out/5xx attempts retried a bounded number of
//! times with backoff, every attempt counted in
//! `chatsdk_auth_centrifugo_api_calls_total{method,outcome}` and timed.
//!
//! Wire contract: `POST <api_url>/<method>` with a JSON body and the key in `X-API-Key`. A
//! wrong key is HTTP 401 with an empty body; an API error is HTTP 200 with
//! `{"error":{"code":N,"message":"..."}}`; success is `{"result":{...}}` (a batch answers
//! `{"replies":[...]}`, one reply per command, in order).
//!
//! A lower layer: it knows the configuration, the secrets and the metrics, nothing above. The
//! key is sent as a sensitive header and never appears in an error or a log line.

use std::time::{Duration, Instant};

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::centrifugo::protocol::ApiMethod;
use crate::config::Config;
use crate::error_chain::Cause;
use crate::metrics::{ApiCallOutcome, CentrifugoApiMetrics};
use crate::secrets::Secret;

/// Attempts per call (the first one included).
const ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubled before each later one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Why a server-API call failed.
#[derive(Debug, thiserror::Error)]
pub enum CentrifugoApiError {
    #[error("Centrifugo's server API is unreachable")]
    Unreachable(#[source] reqwest::Error),
    #[error(
        "Centrifugo's server API did not answer within the timeout (centrifugo.api_timeout_ms)"
    )]
    Timeout(#[source] reqwest::Error),
    #[error("Centrifugo refused the API key (HTTP 401): its http_api.key must equal the sidecar's centrifugo-api.key (CHATSDK_AUTH_SECRETS__CENTRIFUGO_API_KEY)")]
    Unauthorized,
    #[error("Centrifugo's server API answered HTTP {0}")]
    Status(u16),
    #[error("Centrifugo's server API answered error {code}: {message}")]
    Api { code: u32, message: String },
    #[error("Centrifugo's server API answered something that is not its reply format")]
    BadResponse(#[source] Cause),
    /// Only when the client is built (startup): the CA file of an https `api_url`.
    #[error("cannot set up TLS for Centrifugo's server API (centrifugo.api_ca_file)")]
    Tls(#[source] crate::tls::TlsError),
}

impl CentrifugoApiError {
    /// The `outcome` label of this failure.
    pub fn outcome(&self) -> ApiCallOutcome {
        match self {
            CentrifugoApiError::Unreachable(_) => ApiCallOutcome::Unreachable,
            CentrifugoApiError::Timeout(_) => ApiCallOutcome::Timeout,
            CentrifugoApiError::Unauthorized => ApiCallOutcome::Unauthorized,
            CentrifugoApiError::Status(_) => ApiCallOutcome::HttpError,
            CentrifugoApiError::Api { .. } => ApiCallOutcome::ApiError,
            CentrifugoApiError::BadResponse(_) => ApiCallOutcome::BadResponse,
            CentrifugoApiError::Tls(_) => ApiCallOutcome::Unreachable,
        }
    }

    /// True when trying again at once may help (Centrifugo down, slow or restarting).
    fn is_transient(&self) -> bool {
        match self {
            CentrifugoApiError::Unreachable(_) | CentrifugoApiError::Timeout(_) => true,
            CentrifugoApiError::Status(s) => *s >= 500,
            _ => false,
        }
    }
}

/// One terminal disconnect: every connection of `user` closes with `code` and `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectUser<'a> {
    pub user: &'a str,
    pub code: u32,
    pub reason: &'a str,
}

#[derive(Serialize)]
struct DisconnectBody<'a> {
    user: &'a str,
    disconnect: DisconnectObj<'a>,
}

#[derive(Serialize)]
struct DisconnectObj<'a> {
    code: u32,
    reason: &'a str,
}

#[derive(Serialize)]
struct BatchCommand<'a> {
    disconnect: DisconnectBody<'a>,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    commands: Vec<BatchCommand<'a>>,
    parallel: bool,
}

#[derive(Deserialize)]
struct WireError {
    code: u32,
    #[serde(default)]
    message: String,
}

/// `{"result": ...}` or `{"error": ...}`.
#[derive(Deserialize)]
struct Reply<T> {
    result: Option<T>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct BatchReply {
    replies: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    error: Option<WireError>,
}

/// One Centrifugo node, as `info` reports it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NodeInfo {
    pub uid: String,
    pub name: String,
    pub version: String,
    pub num_clients: u64,
    pub num_users: u64,
}

#[derive(Deserialize)]
struct InfoResult {
    nodes: Vec<NodeInfo>,
}

/// The server-API client; cheap to share (one connection pool).
pub struct CentrifugoApi {
    http: reqwest::Client,
    base: String,
    key: HeaderValue,
    metrics: Option<CentrifugoApiMetrics>,
}

impl CentrifugoApi {
    /// The client for `centrifugo.api_url`; `None` when it is not configured.
    pub fn from_config(
        config: &Config,
        key: &Secret,
        metrics: Option<CentrifugoApiMetrics>,
    ) -> Result<Option<CentrifugoApi>, CentrifugoApiError> {
        let Some(base) = &config.centrifugo.api_url else {
            return Ok(None);
        };
        let ca_file = config.centrifugo.api_ca_file.as_deref();
        Self::build(base, config.centrifugo.api_timeout, ca_file, key, metrics).map(Some)
    }

    /// A client for `base` (e.g. `http://127.0.0.1:8000/api`; an `https://` base trusts the
    /// system's CAs).
    pub fn new(
        base: &str,
        timeout: Duration,
        key: &Secret,
        metrics: Option<CentrifugoApiMetrics>,
    ) -> Result<CentrifugoApi, CentrifugoApiError> {
        Self::build(base, timeout, None, key, metrics)
    }

    /// A client for `base`; an `https://` base is verified against `ca_file`'s CAs (or the
    /// system's) through the rustls configuration of [`crate::tls`].
    fn build(
        base: &str,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
        key: &Secret,
        metrics: Option<CentrifugoApiMetrics>,
    ) -> Result<CentrifugoApi, CentrifugoApiError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Nothing reads the environment after startup: no HTTP(S)_PROXY variables.
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30));
        if base.starts_with("https://") {
            let tls = crate::tls::https_client_config(ca_file).map_err(CentrifugoApiError::Tls)?;
            builder = builder.use_preconfigured_tls(tls).https_only(true);
        }
        let http = builder
            .build()
            .map_err(|e| CentrifugoApiError::BadResponse(e.into()))?;
        let mut key = HeaderValue::from_str(key.expose()).map_err(|_| {
            CentrifugoApiError::BadResponse(
                "the Centrifugo API key holds characters a header cannot carry".into(),
            )
        })?;
        key.set_sensitive(true);
        Ok(CentrifugoApi {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
            metrics,
        })
    }

    /// Disconnects every connection of one user with a terminal code.
    pub async fn disconnect(&self, d: &DisconnectUser<'_>) -> Result<(), CentrifugoApiError> {
        let body = DisconnectBody {
            user: d.user,
            disconnect: DisconnectObj {
                code: d.code,
                reason: d.reason,
            },
        };
        let bytes = self.call(ApiMethod::Disconnect, &body).await?;
        let reply: Reply<Empty> = decode(&bytes)?;
        match (reply.result, reply.error) {
            (_, Some(e)) => Err(CentrifugoApiError::Api {
                code: e.code,
                message: e.message,
            }),
            (Some(_), None) => Ok(()),
            (None, None) => Err(CentrifugoApiError::BadResponse(
                "neither result nor error in the reply".into(),
            )),
        }
    }

    /// Several disconnects in one `batch` call (run in parallel by Centrifugo). The outer error
    /// is the call's; each inner result is one command's, in order.
    pub async fn disconnect_batch(
        &self,
        list: &[DisconnectUser<'_>],
    ) -> Result<Vec<Result<(), CentrifugoApiError>>, CentrifugoApiError> {
        let body = BatchBody {
            commands: list
                .iter()
                .map(|d| BatchCommand {
                    disconnect: DisconnectBody {
                        user: d.user,
                        disconnect: DisconnectObj {
                            code: d.code,
                            reason: d.reason,
                        },
                    },
                })
                .collect(),
            parallel: true,
        };
        let bytes = self.call(ApiMethod::Batch, &body).await?;
        if let Ok(Reply {
            error: Some(e),
            result: None,
        }) = serde_json::from_slice::<Reply<Empty>>(&bytes)
        {
            return Err(CentrifugoApiError::Api {
                code: e.code,
                message: e.message,
            });
        }
        let reply: BatchReply = decode(&bytes)?;
        if reply.replies.len() != list.len() {
            return Err(CentrifugoApiError::BadResponse(
                format!("{} replies to {} commands", reply.replies.len(), list.len()).into(),
            ));
        }
        Ok(reply
            .replies
            .into_iter()
            .map(|r| match r.error {
                Some(e) => Err(CentrifugoApiError::Api {
                    code: e.code,
                    message: e.message,
                }),
                None => Ok(()),
            })
            .collect())
    }

    /// The nodes of the Centrifugo cluster, with their versions.
    pub async fn info(&self) -> Result<Vec<NodeInfo>, CentrifugoApiError> {
        let bytes = self.call(ApiMethod::Info, &serde_json::json!({})).await?;
        let reply: Reply<InfoResult> = decode(&bytes)?;
        match (reply.result, reply.error) {
            (_, Some(e)) => Err(CentrifugoApiError::Api {
                code: e.code,
                message: e.message,
            }),
            (Some(r), None) => Ok(r.nodes),
            (None, None) => Err(CentrifugoApiError::BadResponse(
                "neither result nor error in the reply".into(),
            )),
        }
    }

    /// POSTs `body` to `<base>/<method>`, retrying transient failures ([`retrying`]); the
    /// reply body of the first HTTP 200.
    async fn call<B: Serialize>(
        &self,
        method: ApiMethod,
        body: &B,
    ) -> Result<bytes::Bytes, CentrifugoApiError> {
        let url = format!("{}/{}", self.base, method.label());
        let url = url.as_str();
        retrying(method, move || async move {
            let start = Instant::now();
            let result = self.attempt(url, body).await;
            self.observe(method, &result, start.elapsed());
            result
        })
        .await
    }

    async fn attempt<B: Serialize>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<bytes::Bytes, CentrifugoApiError> {
        let resp = self
            .http
            .post(url)
            .header("X-API-Key", self.key.clone())
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        match resp.status().as_u16() {
            200 => resp.bytes().await.map_err(transport),
            401 => Err(CentrifugoApiError::Unauthorized),
            s => Err(CentrifugoApiError::Status(s)),
        }
    }

    fn observe<T>(
        &self,
        method: ApiMethod,
        result: &Result<T, CentrifugoApiError>,
        took: Duration,
    ) {
        if let Some(m) = &self.metrics {
            let outcome = match result {
                Ok(_) => ApiCallOutcome::Ok,
                Err(e) => e.outcome(),
            };
            m.calls
                .with_label_values(&[method.label(), outcome.label()])
                .inc();
            m.duration
                .with_label_values(&[method.label()])
                .observe(took.as_secs_f64());
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good (not [`CentrifugoApiError::is_transient`]),
/// or has failed [`ATTEMPTS`] times; the wait before each retry starts at [`FIRST_BACKOFF`] and
/// doubles.
async fn retrying<T, F>(
    method: ApiMethod,
    mut attempt: impl FnMut() -> F,
) -> Result<T, CentrifugoApiError>
where
    F: std::future::Future<Output = Result<T, CentrifugoApiError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_transient() && n < ATTEMPTS => {
                tracing::debug!(method = method.label(), attempt = n, error = %crate::error_chain::Chain(&e), "Centrifugo API call failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                n += 1;
            }
            other => return other,
        }
    }
}

fn transport(e: reqwest::Error) -> CentrifugoApiError {
    // reqwest's message names the URL (never a header), so the key cannot leak through it.
    if e.is_timeout() {
        CentrifugoApiError::Timeout(e.without_url())
    } else if e.is_decode() || e.is_body() {
        CentrifugoApiError::BadResponse(e.into())
    } else {
        CentrifugoApiError::Unreachable(e.without_url())
    }
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CentrifugoApiError> {
    serde_json::from_slice(bytes).map_err(|e| CentrifugoApiError::BadResponse(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_server_api() {
        let b = DisconnectBody {
            user: "carol",
            disconnect: DisconnectObj {
                code: 4503,
                reason: "user disabled",
            },
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"user":"carol","disconnect":{"code":4503,"reason":"user disabled"}}"#
        );
        let batch: BatchReply = serde_json::from_str(
            r#"{"replies":[{"disconnect":{}},{"error":{"code":102,"message":"unknown channel"}}]}"#,
        )
        .unwrap();
        assert!(batch.replies[0].error.is_none());
        assert_eq!(batch.replies[1].error.as_ref().unwrap().code, 102);
    }

    /// On paused time: a transient failure is retried after 100 ms, then 200 ms, and the
    /// third failure is the answer; a failure for good is answered at once; a success ends
    /// the retries.
    #[tokio::test(start_paused = true)]
    async fn retries_wait_100_then_200_ms_and_stop_at_the_third_attempt() {
        /// What one attempt answers: success, or the error it fails with.
        type Answer = Result<(), fn() -> CentrifugoApiError>;
        async fn attempts_at(
            answers: &[Answer],
        ) -> (Vec<Duration>, Result<(), CentrifugoApiError>) {
            let start = tokio::time::Instant::now();
            let mut at = Vec::new();
            let mut next = answers.iter();
            let out = retrying(ApiMethod::Disconnect, || {
                at.push(start.elapsed());
                let answer = next.next().expect("no attempt past the last answer");
                let answer = answer.as_ref().map(|_| ()).map_err(|e| e());
                async move { answer }
            })
            .await;
            (at, out)
        }
        let ms = Duration::from_millis;
        let unavailable = || CentrifugoApiError::Status(503);
        let (at, out) = attempts_at(&[Err(unavailable), Err(unavailable), Err(unavailable)]).await;
        assert_eq!(at, [ms(0), ms(100), ms(300)]);
        assert!(
            matches!(out, Err(CentrifugoApiError::Status(503))),
            "{out:?}"
        );
        let (at, out) = attempts_at(&[Err(|| CentrifugoApiError::Unauthorized)]).await;
        assert_eq!(at, [ms(0)]);
        assert!(
            matches!(out, Err(CentrifugoApiError::Unauthorized)),
            "{out:?}"
        );
        let (at, out) = attempts_at(&[Err(unavailable), Ok(())]).await;
        assert_eq!(at, [ms(0), ms(100)]);
        assert!(out.is_ok());
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(CentrifugoApiError::Status(503).is_transient());
        assert!(!CentrifugoApiError::Status(404).is_transient());
        assert!(!CentrifugoApiError::Unauthorized.is_transient());
    }
}
