//! The dashboard against the fixture's Prometheus: every panel query of
//! `dashboards/chatsdk-auth.json` is valid PromQL, returns finite data for every route,
//! callback, operation, kind, result and key, and the ratio panels are exact; the `$job` and
//! `$instance` variables list what Prometheus scrapes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};

use super::fixture::{client, shared};
use super::{DASHBOARDS, JOB, WAVES};

/// Every (panel title, refId, expr) in the dashboard, rows included.
fn dashboard_targets() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(Path::new(DASHBOARDS).join("chatsdk-auth.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    fn walk(panels: &Value, out: &mut Vec<(String, String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((
                        p["title"].as_str().unwrap_or("?").to_string(),
                        t["refId"].as_str().unwrap_or("?").to_string(),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// Grafana keys a panel by its id and lays the grid out by `gridPos`: two panels with one id,
/// or two that overlap, are shown wrong (Grafana moves one, or links open the other). Needs no
/// Prometheus.
#[test]
fn panel_ids_are_unique_and_panels_never_overlap() {
    let text = std::fs::read_to_string(Path::new(DASHBOARDS).join("chatsdk-auth.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let id = p["id"].as_i64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} twice (\"{title}\")");
        let g = &p["gridPos"];
        let n = |k: &str| g[k].as_i64().expect("gridPos has x, y, w and h");
        let (x, y, w, h) = (n("x"), n("y"), n("w"), n("h"));
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + *ow <= x || y + h <= *oy || *oy + *oh <= y;
            assert!(apart, "\"{title}\" overlaps \"{other}\"");
        }
        boxes.push((title, [x, y, w, h]));
    }
}

/// Grafana's variables as this test's Prometheus sees them.
fn substitute(expr: &str, rate_interval: &str) -> String {
    let e = expr
        .replace("$__rate_interval", rate_interval)
        .replace("${__rate_interval}", rate_interval)
        .replace("$instance", ".*")
        .replace("${instance}", ".*")
        .replace("$job", JOB)
        .replace("${job}", JOB);
    assert!(!e.contains('$'), "unknown dashboard variable left in: {e}");
    e
}

/// For any panel whose result carries one of these labels, the values seen must be exactly
/// this set: the traffic exercises every route, callback, operation, kind, result and key
/// inside the rate window, so a missing one means a broken query or a missing metric.
fn expected_label_values() -> BTreeMap<&'static str, BTreeSet<String>> {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let keys: Vec<String> = (1..=WAVES).map(|w| format!("wave-{w}")).collect();
    BTreeMap::from([
        (
            "route",
            set(&[
                "tokens",
                "centrifugo_connect",
                "centrifugo_refresh",
                "centrifugo_subscribe",
                "centrifugo_sub_refresh",
                "healthz",
                "readyz",
                "metrics",
                "openapi",
                "verify",
                "introspect",
                "jwks",
                "unmatched",
            ]),
        ),
        (
            "callback",
            set(&["connect", "refresh", "subscribe", "sub_refresh"]),
        ),
        (
            "operation",
            set(&[
                "authenticate_api_key",
                "upsert_user",
                "get_user",
                "ping",
                "touch_api_key",
            ]),
        ),
        ("kind", set(&["rest", "ws", "subscription"])),
        // The fixture's metrics label (segments.metrics_label = "tenant", values ["acme"]).
        ("segment", set(&["acme", "other"])),
        ("result", set(&["created", "updated"])),
        ("key_name", keys.into_iter().collect()),
    ])
}

#[tokio::test]
async fn every_dashboard_query_returns_data() {
    crate::need::need!(Prometheus);
    let f = shared().await;
    let http = client();
    let prom = f.prom(&http);
    let (addr, at, rate_interval) = (f.addr.clone(), f.at.clone(), f.rate_interval.clone());

    // --- Every dashboard query: valid, non-empty, finite, complete.
    // No panel is expected empty: the traffic makes a 5xx (store_unavailable -> 503), calls
    // every route (unmatched included), every callback and every store operation (a new API
    // key per wave is touched once) in the rate window, so each quantile has data.
    let label_sets = expected_label_values();
    let targets = dashboard_targets();
    assert!(
        targets.len() >= 20,
        "only {} dashboard targets",
        targets.len()
    );
    let mut failures = Vec::new();
    for (title, ref_id, raw) in &targets {
        let expr = substitute(raw, &rate_interval);
        let what = format!("panel {title:?} {ref_id}");
        let series = match prom.vector(&expr, &at).await {
            Ok(s) => s,
            Err(err) => {
                failures.push(format!("{what}: invalid: {err}\n  {expr}"));
                continue;
            }
        };
        if series.is_empty() {
            failures.push(format!("{what}: no series\n  {expr}"));
            continue;
        }
        if let Some((l, v)) = series.iter().find(|(_, v)| !v.is_finite()) {
            failures.push(format!("{what}: {v} for {l:?}\n  {expr}"));
        }
        for (label, want) in &label_sets {
            let seen: BTreeSet<String> = series
                .iter()
                .filter_map(|(l, _)| l.get(*label).cloned())
                .collect();
            if !seen.is_empty() && &seen != want {
                failures.push(format!(
                    "{what}: {label} values {seen:?}, expected {want:?}"
                ));
            }
        }
        // The window holds exactly the last wave, so the ratios are exact: 8 of 12 POST /tokens
        // rejected; 1 of 39 client-facing requests (`GET /openapi.json`, `/verify`,
        // `/introspect` and the JWKS included) a 5xx.
        let ratio = match title.as_str() {
            t if t.starts_with("POST /tokens rejection ratio") => Some(8.0 / 12.0),
            t if t.starts_with("HTTP 5xx ratio") => Some(1.0 / 39.0),
            _ => None,
        };
        if let Some(want) = ratio {
            if series.len() != 1 || (series[0].1 - want).abs() > 1e-9 {
                failures.push(format!("{what}: {series:?}, expected {want}"));
            }
        }
    }
    // The $job / $instance variables list what this Prometheus scrapes.
    let jobs = http
        .get(format!("{}/api/v1/label/job/values", prom.base))
        .query(&[("match[]", "chatsdk_auth_build_info")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(jobs["data"], json!([JOB]), "$job variable: {jobs}");
    let instances = http
        .get(format!("{}/api/v1/label/instance/values", prom.base))
        .query(&[(
            "match[]",
            format!("chatsdk_auth_build_info{{job=~\"{JOB}\"}}"),
        )])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        instances["data"],
        json!([addr]),
        "$instance variable: {instances}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}",
        failures.len(),
        targets.len(),
        failures.join("\n")
    );
    eprintln!(
        "prometheus: {} dashboard queries checked at t={at} with \
         $__rate_interval={rate_interval}",
        targets.len()
    );
}
