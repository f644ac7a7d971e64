//! The single route table and the per-request wrapper: request id, timeout, in-flight gauge,
//! latency histograms (every request; proxy calls also by callback), rejection counters and
//! one access-log line per request.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use http::{HeaderName, HeaderValue, Method, Request};
use hyper::body::Incoming;

use crate::access_log::Entry;
use crate::app::App;
use crate::http::{ApiError, Resp};
use crate::metrics::ROUTE_LABELS;
use crate::proxy::{self, Callback};
use crate::{ops, tokens};

/// Echoed (or generated) on every response.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `route` index of requests that matched no route.
const UNMATCHED: usize = ROUTE_LABELS.len() - 1;

/// Every endpoint the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Tokens,
    Proxy(Callback),
    Healthz,
    Readyz,
    Metrics,
}

impl Route {
    /// Position in [`ROUTE_LABELS`].
    pub fn index(self) -> usize {
        match self {
            Route::Tokens => 0,
            Route::Proxy(Callback::Connect) => 1,
            Route::Proxy(Callback::Refresh) => 2,
            Route::Proxy(Callback::Subscribe) => 3,
            Route::Proxy(Callback::SubRefresh) => 4,
            Route::Healthz => 5,
            Route::Readyz => 6,
            Route::Metrics => 7,
        }
    }

    /// The `route` metric label (a closed set).
    pub fn label(self) -> &'static str {
        ROUTE_LABELS[self.index()]
    }
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The main listener: everything (and `/metrics` unless it has its own listener).
    Main,
    /// The separate metrics listener: `/metrics` and `/healthz` only.
    Metrics,
}

/// Resolves a method and path; 404 for an unknown path, 405 for a known one with another method.
pub fn route(
    method: &Method,
    path: &str,
    listener: Listener,
    separate_metrics: bool,
) -> Result<Route, ApiError> {
    let (route, allowed) = match (listener, path) {
        (Listener::Main, "/tokens") => (Route::Tokens, Method::POST),
        (Listener::Main, "/centrifugo/connect") => (Route::Proxy(Callback::Connect), Method::POST),
        (Listener::Main, "/centrifugo/refresh") => (Route::Proxy(Callback::Refresh), Method::POST),
        (Listener::Main, "/centrifugo/subscribe") => {
            (Route::Proxy(Callback::Subscribe), Method::POST)
        }
        (Listener::Main, "/centrifugo/sub_refresh") => {
            (Route::Proxy(Callback::SubRefresh), Method::POST)
        }
        (Listener::Main, "/readyz") => (Route::Readyz, Method::GET),
        (_, "/healthz") => (Route::Healthz, Method::GET),
        (Listener::Main, "/metrics") if !separate_metrics => (Route::Metrics, Method::GET),
        (Listener::Metrics, "/metrics") => (Route::Metrics, Method::GET),
        _ => return Err(ApiError::NotFound),
    };
    let ok = *method == allowed || (allowed == Method::GET && *method == Method::HEAD);
    if ok {
        Ok(route)
    } else if allowed == Method::POST {
        Err(ApiError::MethodNotAllowed("POST"))
    } else {
        Err(ApiError::MethodNotAllowed("GET"))
    }
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Answers one request. Never fails: every error becomes its response here.
pub async fn handle(
    app: Arc<App>,
    listener: Listener,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let start = Instant::now();
    app.metrics.http_in_flight.inc();
    let _guard = InFlight(&app.metrics.http_in_flight);
    let method = req.method().clone();
    let request_id = RequestId::of(&req);
    let separate = app.config.metrics.listen.is_some();
    let resolved = route(&method, req.uri().path(), listener, separate);
    let route_index = resolved.as_ref().map_or(UNMATCHED, |r| r.index());
    let is_tokens = matches!(resolved, Ok(Route::Tokens));
    let proxy = match resolved {
        Ok(Route::Proxy(cb)) => Some(cb),
        _ => None,
    };

    let result = match resolved {
        Ok(r) => {
            let deadline = tokio::time::Instant::from_std(start) + app.config.request_timeout;
            match within(deadline, dispatch(&app, r, req)).await {
                Some(res) => res,
                None => Err(ApiError::Timeout),
            }
        }
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            if is_tokens {
                app.metrics.reject(e.reject_reason());
            }
            e.into_response()
        }
    };
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let seconds = elapsed.as_secs_f64();
    app.metrics.observe_request(route_index, status, seconds);
    if let Some(cb) = proxy {
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
    Ok(resp)
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

async fn dispatch(app: &App, route: Route, req: Request<Incoming>) -> Result<Resp, ApiError> {
    match route {
        Route::Tokens => tokens::handle(app, req).await,
        Route::Proxy(cb) => proxy::handle(app, cb, req).await,
        Route::Healthz => Ok(ops::healthz()),
        Route::Readyz => Ok(ops::readyz(app).await),
        Route::Metrics => ops::metrics(app, req.headers()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_the_documented_ones() {
        let all = [
            (Route::Tokens, "tokens"),
            (Route::Proxy(Callback::Connect), "centrifugo_connect"),
            (Route::Proxy(Callback::Refresh), "centrifugo_refresh"),
            (Route::Proxy(Callback::Subscribe), "centrifugo_subscribe"),
            (Route::Proxy(Callback::SubRefresh), "centrifugo_sub_refresh"),
            (Route::Healthz, "healthz"),
            (Route::Readyz, "readyz"),
            (Route::Metrics, "metrics"),
        ];
        for (route, label) in all {
            assert_eq!(route.label(), label);
            assert_ne!(route.index(), UNMATCHED);
        }
        assert_eq!(ROUTE_LABELS[UNMATCHED], "unmatched");
    }

    #[test]
    fn not_found_is_not_method_not_allowed() {
        let r = |m: Method, p: &str| route(&m, p, Listener::Main, false).map_err(|e| e.code());
        assert_eq!(r(Method::POST, "/tokens"), Ok(Route::Tokens));
        assert_eq!(r(Method::GET, "/tokens"), Err("method_not_allowed"));
        assert_eq!(r(Method::POST, "/nope"), Err("not_found"));
        assert_eq!(r(Method::POST, "/healthz"), Err("method_not_allowed"));
        assert_eq!(r(Method::GET, "/metrics"), Ok(Route::Metrics));
        assert_eq!(
            route(&Method::GET, "/metrics", Listener::Main, true).map_err(|e| e.code()),
            Err("not_found")
        );
        assert_eq!(
            route(&Method::POST, "/tokens", Listener::Metrics, true).map_err(|e| e.code()),
            Err("not_found")
        );
    }
}
