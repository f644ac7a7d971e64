//! A real Prometheus as a child process and the parts of its HTTP API the tests read, plus a
//! parser for the text exposition format.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

use super::{now_ms, Labels, DASHBOARDS, JOB};
use crate::helpers::until;
use crate::process::{free_port, tool, KillOnDrop};

/// Starts Prometheus in `dir` scraping `target` every second, with a copy of alerts.yml, and
/// waits until it is ready. Retries on a fresh port if the chosen one was taken meanwhile.
pub(super) async fn start_prometheus(
    dir: &Path,
    target: &str,
    http: &reqwest::Client,
) -> (KillOnDrop, Prom) {
    let prometheus = tool("prometheus");
    std::fs::copy(
        Path::new(DASHBOARDS).join("alerts.yml"),
        dir.join("alerts.yml"),
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - alerts.yml\n\
         scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: [\"{target}\"]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log_path = dir.join("prometheus.log");
    let mut last_log = String::new();
    for attempt in 0..3 {
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").join(attempt.to_string()).display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let guard = KillOnDrop(child);
        let prom = Prom {
            base: format!("http://{listen}"),
            http: http.clone(),
        };
        let guard = std::cell::RefCell::new(guard);
        // Ready (`None`), or exited (the port was taken: again on another).
        let exited = until("Prometheus ready or exited", || async {
            if let Some(status) = guard.borrow_mut().0.try_wait().unwrap() {
                return Ok(Some(status));
            }
            match http.get(format!("{}/-/ready", prom.base)).send().await {
                Ok(r) if r.status() == 200 => Ok(None),
                Ok(r) => Err(format!("/-/ready {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        let guard = guard.into_inner();
        match exited {
            None => return (guard, prom),
            Some(status) => {
                last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                eprintln!("prometheus exited ({status}) on {listen}; retrying");
            }
        }
    }
    panic!("Prometheus did not start; its log:\n{last_log}");
}

// ------------------------------------------------------------------------------ Prometheus API

pub(super) struct Prom {
    pub(super) base: String,
    pub(super) http: reqwest::Client,
}

impl Prom {
    /// `/api/v1/query`; `Err` carries Prometheus' error for an invalid query.
    pub(super) async fn query(&self, expr: &str, time: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr), ("time", time)])
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let v: Value = r.json().await.map_err(|e| format!("bad JSON: {e}"))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"].clone())
    }

    /// An instant-vector query as (labels without `__name__`/job/instance, value).
    pub(super) async fn vector(
        &self,
        expr: &str,
        time: &str,
    ) -> Result<Vec<(Labels, f64)>, String> {
        let data = self.query(expr, time).await?;
        if data["resultType"] != "vector" {
            return Err(format!("expected a vector, got {}", data["resultType"]));
        }
        Ok(data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (labels, parse_value(s["value"][1].as_str().unwrap()))
            })
            .collect())
    }

    /// Timestamps (ms) of successful scrapes of the sidecar taken after `after_ms`.
    pub(super) async fn scrapes_after(&self, after_ms: i64) -> Vec<i64> {
        let data = self
            .query(&format!("up{{job=\"{JOB}\"}}[5m]"), &secs(now_ms()))
            .await
            .unwrap();
        let series = data["result"].as_array().unwrap();
        assert!(series.len() <= 1, "one scrape target expected: {data}");
        series
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap().iter())
            .filter(|p| p[1] == "1")
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .filter(|&t| t > after_ms)
            .collect()
    }

    /// Waits until Prometheus holds `n` scrapes that started after `after_ms` (so they saw
    /// everything that happened before it); returns their timestamps.
    pub(super) async fn wait_scrapes_after(&self, after_ms: i64, n: usize) -> Vec<i64> {
        until(&format!("{n} scrapes of the sidecar"), || async {
            let ts = self.scrapes_after(after_ms).await;
            match ts.len() {
                got if got >= n => Ok(ts),
                got => Err(format!("{got} scrapes")),
            }
        })
        .await
    }
}

/// Milliseconds as the seconds string the API takes.
pub(super) fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Prometheus' and the exposition's number spellings (`NaN`, `+Inf`, ...).
pub(super) fn parse_value(s: &str) -> f64 {
    s.parse::<f64>()
        .unwrap_or_else(|_| panic!("not a number: {s}"))
}

// ------------------------------------------------------------------------------ exposition text

/// Parses the text exposition into (metric name, labels, value).
pub(super) fn parse_exposition(text: &str) -> Vec<(String, Labels, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample line has a value");
        let name = line[..name_end].to_string();
        let mut labels = Labels::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let (mut key, mut val) = (String::new(), String::new());
            let mut in_value = false;
            let end = loop {
                let (i, c) = chars.next().expect("unterminated label set");
                match (in_value, c) {
                    (false, '}') => break i,
                    (false, ',') | (false, ' ') => {}
                    (false, '=') => {
                        assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                        in_value = true;
                    }
                    (false, c) => key.push(c),
                    (true, '\\') => match chars.next().map(|x| x.1) {
                        Some('n') => val.push('\n'),
                        Some(c) => val.push(c),
                        None => panic!("bad escape in {line}"),
                    },
                    (true, '"') => {
                        labels.insert(std::mem::take(&mut key), std::mem::take(&mut val));
                        in_value = false;
                    }
                    (true, c) => val.push(c),
                }
            };
            rest = &body[end + 1..];
        }
        let value = rest.split_whitespace().next().expect("sample value");
        out.push((name, labels, parse_value(value)));
    }
    out
}

pub(super) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
