//! The single route table and the per-request wrapper: request id, timeout, in-flight gauge,
//! the route's policy enforced before its handler ([`guard`]), latency histograms (every
//! request; proxy calls also by callback), rejection counters and one access-log line per
//! request.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

pub mod context;
pub(crate) mod guard;
mod rejections;
mod shared;
pub mod table;

use http::{HeaderName, HeaderValue, Request};
use hyper::body::{Body, Incoming};

use crate::app::App;
use crate::http::auth::{self, Caller};
use crate::http::body::BodyProgress;
use crate::http::{ApiError, Resp};
use crate::proxy;
use crate::telemetry::access_log::Entry;
use crate::{admin, console, ops, subscription_tokens, tokens, verify};

use context::{Admin, Facts, Minting, Ops, Proxy, Verification};
pub use table::{route, Endpoint, Listener, Route, ENDPOINTS, ROUTE_LABELS};
use table::{BodyRule, Rejections, UNMATCHED};

/// Echoed (or generated) on every response.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Answers one request. Never fails: every error becomes its response here.
pub(crate) async fn handle(
    app: Arc<App>,
    listener: Listener,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let start = Instant::now();
    app.metrics.http_in_flight.inc();
    let _in_flight = InFlight(&app.metrics.http_in_flight);
    let method = req.method().clone();
    let request_id = RequestId::of(&req);
    let has_body = !req.body().is_end_stream();
    let resolved = route(&method, req.uri().path(), listener);
    let route_index = resolved.as_ref().map_or(UNMATCHED, |r| r.index());
    // Every answer under `/admin/` (and every answer of the admin listener) is hardened, the
    // unrouted ones (404, 405) included.
    let admin_space = matches!(resolved, Ok(r) if r.is_admin())
        || listener == Listener::Admin
        || is_admin_path(req.uri().path());

    let progress = BodyProgress::default();
    let (result, policy) = match resolved {
        Ok(r) => {
            let policy = r.policy();
            let deadline =
                tokio::time::Instant::from_std(start) + app.config.server.request_timeout;
            let result = match within(deadline, guarded(&app, r, req, peer, &progress)).await {
                Some(res) => res,
                // Abandoned: blamed on whoever was holding the request up.
                None if progress.complete() || policy.body == BodyRule::None => {
                    Err(ApiError::Timeout)
                }
                None => Err(ApiError::RequestTimeout),
            };
            (result, Some(policy))
        }
        Err(e) => (Err(e), None),
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(policy) = policy {
                rejections::count_rejection(&app, policy, &e);
            }
            e.into_response()
        }
    };
    if admin_space {
        // The console's and the admin API's answers alike: never cached, framed or sniffed.
        console::harden(resp.headers_mut());
    }
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let seconds = elapsed.as_secs_f64();
    app.metrics.observe_request(route_index, status, seconds);
    if let Some(Rejections::Proxy(cb)) = policy.map(|p| p.rejections) {
        // The same clock reading: a proxy call's time is its request's time.
        app.metrics.proxy(cb).duration.observe(seconds);
    }
    app.access_log.record(&Entry {
        method: method.as_str(),
        route: ROUTE_LABELS[route_index],
        status,
        latency_us: elapsed.as_micros() as u64,
        request_id: request_id.as_str(),
    });
    if let Ok(v) = HeaderValue::from_bytes(request_id.as_str().as_bytes()) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    if has_body && !progress.read_to_end() {
        // Unread body bytes are still on the connection: say it will not be reused, so a
        // keep-alive client opens a new one instead of writing into a closing socket.
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}

/// `/admin` and everything under `/admin/`, routed or not.
fn is_admin_path(path: &str) -> bool {
    path.strip_prefix("/admin")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Runs `fut` until `deadline`; `None` when the deadline passes first. The timer is armed only
/// if the future has to wait: most requests (body already in the read buffer, SQLite answering
/// in place) finish on their first poll, and registering and cancelling a timer for each of them
/// is measurable on the connect path.
async fn within<F: Future>(deadline: tokio::time::Instant, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(out) => Some(out),
        Poll::Pending => tokio::time::timeout_at(deadline, fut).await.ok(),
    }
}

/// Enforces the route's policy (guard, then body), runs its handler with the context, and
/// records an API key's use once the handler succeeded.
async fn guarded(
    app: &Arc<App>,
    route: Route,
    req: Request<Incoming>,
    peer: IpAddr,
    progress: &BodyProgress,
) -> Result<Resp, ApiError> {
    let policy = route.policy();
    let (parts, incoming) = req.into_parts();
    let passed = guard::check(app, policy.guard, &parts.headers, peer).await?;
    let body = read_body(app, policy.body, &parts.headers, incoming, progress).await?;
    let facts = Facts {
        headers: &parts.headers,
        uri: &parts.uri,
        client: passed.client,
        now: crate::now_unix(),
    };
    let resp = dispatch(app, route, &facts, passed.caller.as_ref(), &body).await?;
    if let Some(caller) = &passed.caller {
        auth::record_use(&app.store, &app.touch_throttle, caller, facts.now).await;
    }
    Ok(resp)
}

/// Builds the route family's context and runs its handler. `caller` is the API key an
/// `ApiKey` guard checked (the route table declares that guard for every route that takes
/// one, unit-tested).
async fn dispatch(
    app: &Arc<App>,
    route: Route,
    f: &Facts<'_>,
    caller: Option<&Caller>,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let minting = || {
        caller
            .map(|c| Minting::new(app, f, c))
            .ok_or(ApiError::Internal(
                "a minting route without an API-key guard".into(),
            ))
    };
    match route {
        Route::Tokens => tokens::handle(&minting()?, body).await,
        Route::SubscriptionTokens => subscription_tokens::handle(&minting()?, body).await,
        Route::Proxy(cb) => {
            proxy::handle(&Proxy::new(app, f, app.metrics.proxy(cb)), cb, body).await
        }
        Route::Healthz => Ok(ops::healthz()),
        Route::Readyz => Ok(ops::readyz(&Ops::new(app)).await),
        Route::Metrics => Ok(ops::metrics(&Ops::new(app))),
        Route::OpenApi => Ok(ops::openapi()),
        Route::Admin(a) => admin::handle(&Admin::new(app, f, route), a, body).await,
        Route::Verify => verify::verify(&Verification::new(app, f)).await,
        Route::Introspect => verify::introspect(&Verification::new(app, f), body).await,
        Route::Jwks => verify::jwks(&Verification::new(app, f)),
        Route::ConsolePage => console::page(app.config.admin.console),
        Route::ConsoleAsset => console::asset(
            app.config.admin.console,
            table::param(route, f.uri.path(), "file").unwrap_or_default(),
        ),
    }
}

/// The caller's `X-Request-Id` when it is at most 64 bytes of `[A-Za-z0-9._-]` (so it is safe
/// in a log line and a header), else 16 random hex digits. Held inline: no allocation.
struct RequestId {
    buf: [u8; 64],
    len: usize,
}

impl RequestId {
    fn of(req: &Request<Incoming>) -> RequestId {
        let mut id = RequestId {
            buf: [0; 64],
            len: 0,
        };
        let given = req
            .headers()
            .get(&X_REQUEST_ID)
            .map(|v| v.as_bytes())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= id.buf.len()
                    && v.iter()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            });
        match given {
            Some(v) => {
                id.buf[..v.len()].copy_from_slice(v);
                id.len = v.len();
            }
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut n = rand::random::<u64>();
                for b in id.buf[..16].iter_mut().rev() {
                    *b = HEX[(n & 0xf) as usize];
                    n >>= 4;
                }
                id.len = 16;
            }
        }
        id
    }

    fn as_str(&self) -> &str {
        // Only ASCII ever goes in (checked above), so this never falls back.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Reads the body `rule` declares; empty for [`BodyRule::None`] (the body is left unread).
async fn read_body(
    app: &App,
    rule: BodyRule,
    headers: &http::HeaderMap,
    incoming: Incoming,
    progress: &BodyProgress,
) -> Result<bytes::Bytes, ApiError> {
    let limit = app.config.server.max_body_bytes;
    match rule {
        BodyRule::None => Ok(bytes::Bytes::new()),
        BodyRule::Json => {
            crate::http::body::read_json_body(headers, incoming, limit, progress).await
        }
        BodyRule::OptionalJson => {
            crate::http::body::read_optional_json(headers, incoming, limit, progress).await
        }
        BodyRule::Form => {
            crate::http::body::read_form_body(headers, incoming, limit, progress).await
        }
        BodyRule::Raw => crate::http::body::read_limited(headers, incoming, limit, progress).await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::within;

    /// On paused time: the request deadline answers `None` exactly at the deadline, a handler
    /// that finishes first answers its output, and one ready at its first poll never arms
    /// the timer (so it is answered even past the deadline).
    #[tokio::test(start_paused = true)]
    async fn the_request_deadline_fires_at_the_deadline_and_only_for_a_waiting_handler() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(10);
        let slow = within(deadline, tokio::time::sleep(Duration::from_secs(11))).await;
        assert_eq!((slow, start.elapsed()), (None, Duration::from_secs(10)));

        let start = Instant::now();
        let deadline = start + Duration::from_secs(10);
        let fast = async {
            tokio::time::sleep(Duration::from_secs(9)).await;
            "answer"
        };
        let out = within(deadline, fast).await;
        assert_eq!(
            (out, start.elapsed()),
            (Some("answer"), Duration::from_secs(9))
        );

        let past = Instant::now() - Duration::from_secs(1);
        assert_eq!(within(past, std::future::ready(7)).await, Some(7));
        assert_eq!(
            within(past, tokio::time::sleep(Duration::from_millis(1))).await,
            None
        );
    }
}
