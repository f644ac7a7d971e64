//! `[segments]`, validated: the declared segment fields, the connection-info fields and the
//! metrics label with its bounded value list.

use super::super::raw::RawSegments;
use super::super::{MetricsLabel, SegmentsConfig};
use crate::segments::{
    valid_field_name, valid_label_value, MAX_FIELDS, MAX_FIELD_LEN, MAX_LABEL_VALUES,
    MAX_LABEL_VALUE_LEN, OTHER,
};

/// Each list: at most [`MAX_FIELDS`] distinct valid names.
pub(super) fn segments(s: &RawSegments, p: &mut Vec<String>) -> SegmentsConfig {
    let fields = names("segments.fields", &s.fields, p);
    SegmentsConfig {
        metrics_label: metrics_label(s, &fields, p),
        fields,
        info_fields: {
            let names = names("segments.info_fields", &s.info_fields, p);
            for taken in names.iter().filter(|n| *n == "name" || *n == "image") {
                p.push(format!("segments.info_fields: \"{taken}\" is the profile's own info field; list custom keys other than name and image"));
            }
            names
        },
    }
}

/// `segments.metrics_label`: a declared field, with 1 to [`MAX_LABEL_VALUES`] distinct values
/// (never unbounded: every other value is `other`).
fn metrics_label(s: &RawSegments, fields: &[String], p: &mut Vec<String>) -> Option<MetricsLabel> {
    let field = s.metrics_label.trim();
    if field.is_empty() {
        if !s.metrics_label_values.is_empty() {
            p.push("segments.metrics_label_values is set but segments.metrics_label is not; name the declared field the values belong to, or remove the values".into());
        }
        return None;
    }
    let before = p.len();
    if !fields.iter().any(|f| f == field) {
        p.push(if fields.is_empty() {
            format!("segments.metrics_label: \"{}\" is not a declared segment field, and none is declared; add it to segments.fields", field.escape_default())
        } else {
            format!(
                "segments.metrics_label: \"{}\" is not a declared segment field; use one of {} (segments.fields)",
                field.escape_default(),
                fields.join(", ")
            )
        });
    }
    let list = &s.metrics_label_values;
    if list.is_empty() {
        p.push(format!("segments.metrics_label = \"{field}\" needs segments.metrics_label_values: list the values the label may take (at most {MAX_LABEL_VALUES}, e.g. [\"free\", \"pro\"]); every other value is counted as {OTHER}, so the series stay bounded"));
    } else if list.len() > MAX_LABEL_VALUES {
        p.push(format!(
            "segments.metrics_label_values: {} values; list at most {MAX_LABEL_VALUES} (every other value is counted as {OTHER})",
            list.len()
        ));
    }
    let mut values: Vec<String> = Vec::with_capacity(list.len());
    for v in list {
        if v == OTHER {
            p.push(format!("segments.metrics_label_values: \"{OTHER}\" is the label of every value not listed; remove it"));
        } else if !valid_label_value(v) {
            p.push(format!(
                "segments.metrics_label_values: \"{}\" is not a label value; use 1 to {MAX_LABEL_VALUE_LEN} ASCII letters, digits, _, -, . or :",
                v.escape_default()
            ));
        } else if values.contains(v) {
            p.push(format!(
                "segments.metrics_label_values: \"{v}\" is listed twice; list each once"
            ));
        } else {
            values.push(v.clone());
        }
    }
    (p.len() == before).then(|| MetricsLabel {
        field: field.to_string(),
        values,
    })
}

fn names(key: &str, list: &[String], p: &mut Vec<String>) -> Vec<String> {
    if list.len() > MAX_FIELDS {
        p.push(format!(
            "{key}: {} names; declare at most {MAX_FIELDS}",
            list.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for name in list {
        if !valid_field_name(name) {
            p.push(format!(
                "{key}: \"{}\" is not a field name; use 1 to {MAX_FIELD_LEN} ASCII letters, digits, _ or -",
                name.escape_default()
            ));
        } else if out.contains(name) {
            p.push(format!("{key}: \"{name}\" is listed twice; list each once"));
        } else {
            out.push(name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_distinct_and_few() {
        let mut p = Vec::new();
        let raw = RawSegments {
            fields: ["plan", "a.b", "plan", "tenant-id"]
                .map(String::from)
                .to_vec(),
            info_fields: vec!["role".into(), "name".into()],
            ..RawSegments::default()
        };
        assert_eq!(segments(&raw, &mut p).fields, ["plan", "tenant-id"]);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].contains("\"name\" is the profile's own"), "{p:?}");
        assert!(p[0].contains("\"a.b\" is not a field name"), "{p:?}");
        assert!(p[1].contains("listed twice"), "{p:?}");
        let mut p = Vec::new();
        let many = RawSegments {
            fields: (0..17).map(|i| format!("f{i}")).collect(),
            info_fields: Vec::new(),
            ..RawSegments::default()
        };
        segments(&many, &mut p);
        assert!(p[0].contains("at most 16"), "{p:?}");
    }

    fn label(label: &str, values: &[&str]) -> (Option<MetricsLabel>, Vec<String>) {
        let mut p = Vec::new();
        let raw = RawSegments {
            fields: vec!["plan".into(), "tenantId".into()],
            metrics_label: label.into(),
            metrics_label_values: values.iter().map(|v| v.to_string()).collect(),
            ..RawSegments::default()
        };
        (segments(&raw, &mut p).metrics_label, p)
    }

    #[test]
    fn the_metrics_label_is_a_declared_field_with_a_bounded_value_list() {
        let (l, p) = label("plan", &["free", "pro", "enterprise"]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            l,
            Some(MetricsLabel {
                field: "plan".into(),
                values: ["free", "pro", "enterprise"].map(String::from).to_vec()
            })
        );
        assert_eq!(label("", &[]), (None, vec![]));
        let (l, p) = label("role", &["admin"]);
        assert!(l.is_none());
        assert!(
            p[0].contains("\"role\" is not a declared segment field; use one of plan, tenantId"),
            "{p:?}"
        );
        let (_, p) = label("plan", &[]);
        assert!(
            p[0].contains("needs segments.metrics_label_values"),
            "{p:?}"
        );
        let (_, p) = label("", &["free"]);
        assert!(p[0].contains("segments.metrics_label is not"), "{p:?}");
        let many: Vec<String> = (0..21).map(|i| format!("v{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (_, p) = label("plan", &many);
        assert!(p[0].contains("list at most 20"), "{p:?}");
        let (l, p) = label("plan", &["free", "other", "free", "a b", ""]);
        assert!(l.is_none());
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p[0].contains("\"other\" is the label of every value not listed"),
            "{p:?}"
        );
        assert!(p[1].contains("listed twice"), "{p:?}");
        assert!(p[2].contains("\"a b\" is not a label value"), "{p:?}");
    }
}
