//! The `segment`-labelled series of `POST /tokens` (`segments.metrics_label`): tokens issued
//! by `kind` and refusals by `reason`, each by the value of one declared `custom` field. The
//! label takes only the configured values and `other` (every value not listed, a user without
//! the field, a request whose user is not known yet), so its series are bounded: every one is
//! created at startup, and counting is an index into a vector, no label lookup on a mint.

use prometheus::{IntCounter, IntCounterVec, Opts};
use strum::IntoEnumIterator;

use super::{Metrics, RejectReason, TokenKind, NAMESPACE};
use crate::segments::{label_index, OTHER};

/// The series of one metrics label.
pub struct SegmentSeries {
    field: String,
    values: Vec<String>,
    /// `(rest, ws)` by value index, `other` last.
    issued: Vec<(IntCounter, IntCounter)>,
    /// By reason and value index, `other` last.
    rejected: Vec<Vec<IntCounter>>,
}

impl SegmentSeries {
    /// The label's index for a user whose `custom` is `custom` (the `other` index when
    /// absent).
    pub fn index(&self, custom: Option<&str>) -> usize {
        label_index(custom, &self.field, &self.values)
    }

    /// One `POST /tokens` answer: a REST token and a wsToken, for the user of index `i`.
    pub fn issued(&self, i: usize) {
        if let Some((rest, ws)) = self.issued.get(i).or(self.issued.last()) {
            rest.inc();
            ws.inc();
        }
    }

    /// One `POST /tokens` refusal for `reason`, for the user of index `i`.
    pub fn rejected(&self, reason: RejectReason, i: usize) {
        let by_value = self.rejected.get(reason as usize);
        if let Some(c) = by_value.and_then(|v| v.get(i).or(v.last())) {
            c.inc();
        }
    }
}

impl Metrics {
    /// Registers the series of the metrics label over `custom.field`, which takes `values`
    /// and `other`.
    pub fn with_segment_label(
        mut self,
        field: &str,
        values: &[String],
    ) -> Result<Metrics, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help).namespace(NAMESPACE), labels)?;
            self.registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let issued_vec = counter(
            "tokens_issued_by_segment_total",
            "POST /tokens tokens minted, by kind (rest, ws) and segment (the value of segments.metrics_label: a listed value or other).",
            &["kind", "segment"],
        )?;
        let rejected_vec = counter(
            "token_requests_rejected_by_segment_total",
            "POST /tokens requests refused, by reason and segment (the value of segments.metrics_label in the request's custom: a listed value or other).",
            &["reason", "segment"],
        )?;
        let labels: Vec<&str> = values.iter().map(String::as_str).chain([OTHER]).collect();
        let issued = labels
            .iter()
            .map(|l| {
                (
                    issued_vec.with_label_values(&[TokenKind::Rest.label(), l]),
                    issued_vec.with_label_values(&[TokenKind::Ws.label(), l]),
                )
            })
            .collect();
        // Every reason, indexed as the enum; those POST /tokens never has get no series.
        let rejected = RejectReason::iter()
            .map(|r| {
                if r.subscription_only() {
                    return Vec::new();
                }
                labels
                    .iter()
                    .map(|l| rejected_vec.with_label_values(&[r.label(), l]))
                    .collect()
            })
            .collect();
        self.segment = Some(std::sync::Arc::new(SegmentSeries {
            field: field.to_string(),
            values: values.to_vec(),
            issued,
            rejected,
        }));
        Ok(self)
    }
}
