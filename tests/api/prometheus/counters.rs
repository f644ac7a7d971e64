//! The exposition and the counters: `promtool check metrics` is clean, and every counter
//! moved by exactly what the traffic produced, in the scraped text and in Prometheus.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use super::fixture::{client, shared};
use super::prom::parse_exposition;
use super::{Labels, JOB};
use crate::process::tool;

// ------------------------------------------------------------------------------ expectations

/// The counter families whose every series is checked exactly, with the label pair whose
/// series are left out (scrapes by Prometheus move `route="metrics"` on their own).
const EXACT_FAMILIES: &[(&str, Option<(&str, &str)>)] = &[
    ("chatsdk_auth_tokens_issued_total", None),
    ("chatsdk_auth_token_requests_rejected_total", None),
    ("chatsdk_auth_tokens_issued_by_segment_total", None),
    (
        "chatsdk_auth_token_requests_rejected_by_segment_total",
        None,
    ),
    ("chatsdk_auth_proxy_decisions_total", None),
    ("chatsdk_auth_proxy_unauthenticated_total", None),
    ("chatsdk_auth_users_upserted_total", None),
    ("chatsdk_auth_api_key_requests_total", None),
    (
        "chatsdk_auth_http_request_duration_seconds_count",
        Some(("route", "metrics")),
    ),
];

/// Series of `family` in parsed exposition samples, minus the excluded label pair.
fn family_in_text(
    samples: &[(String, Labels, f64)],
    family: &str,
    exclude: Option<(&str, &str)>,
) -> BTreeMap<Labels, f64> {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == family && exclude.is_none_or(|(k, v)| l.get(k).is_none_or(|x| x != v))
        })
        .map(|(_, l, v)| (l.clone(), *v))
        .collect()
}

#[tokio::test]
async fn counters_are_exact_in_the_exposition_and_in_prometheus() {
    crate::need::need!(Prometheus);
    let promtool = tool("promtool");
    let f = shared().await;
    let http = client();
    let prom = f.prom(&http);
    let (e, at) = (&f.expected, f.at.clone());

    // --- /metrics once: promtool and exact counters in the scraped text.
    let r = http.get(f.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lint = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && lint.trim().is_empty(),
        "promtool check metrics ({}):\n{lint}",
        out.status
    );
    let samples = parse_exposition(&text);
    for (family, exclude) in EXACT_FAMILIES {
        assert_eq!(
            family_in_text(&samples, family, *exclude),
            e.family(family),
            "{family} in /metrics"
        );
    }

    // --- The same counters through Prometheus.
    for (family, exclude) in EXACT_FAMILIES {
        let selector = match exclude {
            Some((k, v)) => format!("{family}{{job=\"{JOB}\", {k}!=\"{v}\"}}"),
            None => format!("{family}{{job=\"{JOB}\"}}"),
        };
        let got: BTreeMap<Labels, f64> = prom
            .vector(&selector, &at)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(got, e.family(family), "{family} in Prometheus");
    }
    let up = prom
        .vector(&format!("up{{job=\"{JOB}\"}}"), &at)
        .await
        .unwrap();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0, "the sidecar target is up");
}
