//! The alerting rules against the fixture's Prometheus: every rule of `dashboards/alerts.yml`
//! is loaded and healthy, its expression evaluates, and where the traffic decides the answer
//! (target up, unauthenticated proxy calls, the rejection ratio) the answer is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::fixture::{client, shared};
use super::DASHBOARDS;
use crate::helpers::until;

#[tokio::test]
async fn every_alert_rule_loads_and_evaluates() {
    crate::need::need!(Prometheus);
    let f = shared().await;
    let http = client();
    let prom = f.prom(&http);
    let at = f.at.clone();

    // --- Every alerting rule of alerts.yml: loaded, healthy, and its expression evaluates.
    let file = std::fs::read_to_string(Path::new(DASHBOARDS).join("alerts.yml")).unwrap();
    let in_file: Vec<String> = file
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect();
    assert!(!in_file.is_empty());
    let rules = until("every alerting rule evaluated", || async {
        let v: Value = http
            .get(format!("{}/api/v1/rules", prom.base))
            .query(&[("type", "alert")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
            panic!("rule {} is unhealthy: {}", bad["name"], bad["lastError"]);
        }
        if rules.iter().all(|r| r["health"] == "ok") {
            Ok(rules)
        } else {
            Err(v)
        }
    })
    .await;
    let loaded: Vec<String> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        loaded.iter().collect::<BTreeSet<_>>(),
        in_file.iter().collect::<BTreeSet<_>>(),
        "alerting rules loaded vs. in alerts.yml"
    );
    assert_eq!(loaded.len(), in_file.len(), "duplicate alert names");
    let mut firing_now = BTreeMap::new();
    for r in &rules {
        assert_eq!(r["type"], "alerting");
        let name = r["name"].as_str().unwrap();
        let expr = r["query"].as_str().unwrap();
        let series = prom
            .vector(expr, &at)
            .await
            .unwrap_or_else(|err| panic!("alert {name}: invalid query: {err}\n  {expr}"));
        firing_now.insert(name.to_string(), series);
    }
    // Where the traffic decides the answer, check it: the target is there and up; every
    // callback saw unauthenticated calls; 8 of 12 POST /tokens requests were rejected.
    let count = |n: &str| firing_now.get(n).map(Vec::len);
    assert_eq!(count("ChatsdkAuthDown"), Some(0));
    assert_eq!(count("ChatsdkAuthTargetMissing"), Some(0));
    assert_eq!(count("ChatsdkAuthUnauthenticatedProxyCalls"), Some(4));
    let ratio = &firing_now["ChatsdkAuthTokenRejectionRatioHigh"];
    assert!(
        ratio.len() == 1 && (ratio[0].1 - 8.0 / 12.0).abs() < 1e-9,
        "rejection ratio {ratio:?}"
    );

    eprintln!("prometheus: {} alert rules checked at t={at}", rules.len());
}
