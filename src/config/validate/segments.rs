//! `[segments]`, validated: the declared segment fields and the connection-info fields.

use super::super::raw::RawSegments;
use super::super::SegmentsConfig;
use crate::segments::{valid_field_name, MAX_FIELDS, MAX_FIELD_LEN};

/// Each list: at most [`MAX_FIELDS`] distinct valid names.
pub(super) fn segments(s: &RawSegments, p: &mut Vec<String>) -> SegmentsConfig {
    SegmentsConfig {
        fields: names("segments.fields", &s.fields, p),
        info_fields: {
            let names = names("segments.info_fields", &s.info_fields, p);
            for taken in names.iter().filter(|n| *n == "name" || *n == "image") {
                p.push(format!("segments.info_fields: \"{taken}\" is the profile's own info field; list custom keys other than name and image"));
            }
            names
        },
    }
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
        };
        segments(&many, &mut p);
        assert!(p[0].contains("at most 16"), "{p:?}");
    }
}
