//! Segments over the users' `custom` metadata: the declared field names' rule and the `where`
//! conditions (`field=value`) that select a segment. A leaf: imports nothing of ours.
//!
//! A condition is `field=value`. The value is read as a JSON scalar when it is one (`7`,
//! `true`, `null`, `"7"`), otherwise as a bare string (`org-456`), so `plan=7` matches the
//! number 7 and `plan="7"` the string "7", never each other. A user matches `field=value`
//! when `custom.field` equals the value or, when `custom.field` is an array, contains it.
//! Several conditions are ANDed. Only declared fields (`segments.fields`) can be queried:
//! each has an index, so no segment query scans the users.

use std::fmt;

/// The longest declared field name.
pub const MAX_FIELD_LEN: usize = 64;
/// The most fields `segments.fields` declares.
pub const MAX_FIELDS: usize = 16;
/// The most conditions one `where` ANDs.
pub const MAX_CONDITIONS: usize = 8;
/// The longest value a condition compares with (bytes of its JSON text).
pub const MAX_VALUE_LEN: usize = 256;

/// The most values `segments.metrics_label_values` lists.
pub const MAX_LABEL_VALUES: usize = 20;
/// The longest metrics label value.
pub const MAX_LABEL_VALUE_LEN: usize = 64;
/// The metrics label of every value not listed.
pub const OTHER: &str = "other";

/// Whether `v` can be a metrics label value: 1 to [`MAX_LABEL_VALUE_LEN`] ASCII letters,
/// digits, `_`, `-`, `.` or `:`.
pub fn valid_label_value(v: &str) -> bool {
    (1..=MAX_LABEL_VALUE_LEN).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The position in `values` of the string value of `custom.field`, or `values.len()` (the
/// `other` label) when the field is absent, not a string, or a string not listed, or `custom`
/// is not a JSON object. One pass over `custom`: the other keys' values are skipped unparsed,
/// nothing is allocated unless the value has escapes.
pub fn label_index(custom: Option<&str>, field: &str, values: &[String]) -> usize {
    let other = values.len();
    let Some(text) = custom else {
        return other;
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let found = serde::Deserializer::deserialize_map(&mut de, FieldValue(field))
        .ok()
        .flatten();
    match found {
        Some(v) => values.iter().position(|x| *x == v).unwrap_or(other),
        None => other,
    }
}

/// Finds one key's string value in a JSON object.
struct FieldValue<'f>(&'f str);

impl<'de> serde::de::Visitor<'de> for FieldValue<'_> {
    type Value = Option<std::borrow::Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_field) = map.next_key_seed(KeyIs(self.0))? {
            if is_field && found.is_none() {
                let raw: &'de serde_json::value::RawValue = map.next_value()?;
                let text = raw.get();
                found = match serde_json::from_str::<&'de str>(text) {
                    Ok(s) => Some(std::borrow::Cow::Borrowed(s)),
                    // A string with escapes (or not a string at all).
                    Err(_) => serde_json::from_str::<String>(text)
                        .ok()
                        .map(std::borrow::Cow::Owned),
                };
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A key compared with the field's name as it is read, never copied.
struct KeyIs<'f>(&'f str);

impl<'de> serde::de::DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Whether `name` can be a declared field: 1 to [`MAX_FIELD_LEN`] ASCII letters, digits, `_`
/// or `-` (it is used in a JSON path, never in SQL text).
pub fn valid_field_name(name: &str) -> bool {
    (1..=MAX_FIELD_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The values of the `fields` (`segments.info_fields`) that the user's `custom` has, as sent:
/// what the connection `info` carries besides name and image. Nothing (and no parse) when no
/// field is declared.
pub fn info_values<'c, 'f>(
    custom: Option<&'c str>,
    fields: &'f [String],
) -> Vec<(&'f str, &'c serde_json::value::RawValue)> {
    let (Some(text), false) = (custom, fields.is_empty()) else {
        return Vec::new();
    };
    let Ok(object) = serde_json::from_str::<
        std::collections::HashMap<std::borrow::Cow<'c, str>, &'c serde_json::value::RawValue>,
    >(text) else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|f| object.get(f.as_str()).map(|v| (f.as_str(), *v)))
        .collect()
}

/// One condition: the field and the value as canonical JSON text (`"org-456"`, `7`, `true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub field: String,
    pub value: String,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field, self.value)
    }
}

/// A validated segment: 1 to [`MAX_CONDITIONS`] conditions on declared fields, ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Where {
    pub conditions: Vec<Condition>,
}

impl fmt::Display for Where {
    /// The canonical form (`organizationId="org-456" AND plan=7`), as the audit trail keeps it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                f.write_str(" AND ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Why a `where` was refused; the sentence is for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WhereError(pub String);

impl Where {
    /// Parses `field=value` conditions against the `declared` fields.
    pub fn parse<S: AsRef<str>>(
        conditions: &[S],
        declared: &[String],
    ) -> Result<Where, WhereError> {
        if conditions.is_empty() {
            return Err(WhereError(
                "where needs at least one condition, field=value".into(),
            ));
        }
        if conditions.len() > MAX_CONDITIONS {
            return Err(WhereError(format!(
                "where takes at most {MAX_CONDITIONS} conditions"
            )));
        }
        let mut out: Vec<Condition> = Vec::with_capacity(conditions.len());
        for raw in conditions {
            let c = parse_one(raw.as_ref(), declared)?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(Where { conditions: out })
    }
}

fn parse_one(raw: &str, declared: &[String]) -> Result<Condition, WhereError> {
    let Some((field, value)) = raw.split_once('=') else {
        return Err(WhereError(format!(
            "where condition \"{}\" is not field=value",
            printable(raw)
        )));
    };
    let field = field.trim();
    if !declared.iter().any(|d| d == field) {
        return Err(WhereError(if declared.is_empty() {
            format!(
                "\"{}\" is not a declared segment field, and none is declared: list the custom fields to segment by in segments.fields",
                printable(field)
            )
        } else {
            format!(
                "\"{}\" is not a declared segment field; the declared ones are {} (segments.fields)",
                printable(field),
                declared.join(", ")
            )
        }));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(WhereError(format!(
            "the value of {field} is longer than {MAX_VALUE_LEN} bytes"
        )));
    }
    let json = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => {
            return Err(WhereError(format!(
                "the value of {field} is {}: compare with one value (a string, number, true, false or null); an array field matches when it contains the value",
                if v.is_array() { "an array" } else { "an object" }
            )));
        }
        Ok(v) => v,
        Err(_) if value.starts_with(['[', '{', '"']) => {
            return Err(WhereError(format!(
                "the value of {field} starts like JSON but is not valid JSON"
            )));
        }
        Err(_) => serde_json::Value::String(value.to_string()),
    };
    Ok(Condition {
        field: field.to_string(),
        value: json.to_string(),
    })
}

/// `s` with control characters replaced and cut to 80 characters, for an error sentence.
fn printable(s: &str) -> String {
    s.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Vec<String> {
        ["organizationId", "plan", "permissions"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn values_are_json_scalars_or_bare_strings() {
        let w = Where::parse(&["organizationId=org-456", "plan=7"], &declared()).unwrap();
        assert_eq!(w.conditions[0].value, "\"org-456\"");
        assert_eq!(w.conditions[1].value, "7");
        let w = Where::parse(&["plan=\"7\""], &declared()).unwrap();
        assert_eq!(w.conditions[0].value, "\"7\"");
        let w = Where::parse(&["plan=true", "plan=null"], &declared()).unwrap();
        assert_eq!(w.to_string(), "plan=true AND plan=null");
        let w = Where::parse(&["plan=a=b"], &declared()).unwrap();
        assert_eq!(w.conditions[0].value, "\"a=b\"");
    }

    #[test]
    fn undeclared_fields_and_compound_values_are_refused() {
        let e = Where::parse(&["tenantId=t"], &declared()).unwrap_err();
        assert!(e.0.contains("organizationId, plan, permissions"), "{e}");
        let e = Where::parse(&["tenantId=t"], &[]).unwrap_err();
        assert!(e.0.contains("segments.fields"), "{e}");
        for bad in ["plan", "plan=[1]", "plan={}", "plan=\"x", ""] {
            assert!(Where::parse(&[bad], &declared()).is_err(), "{bad}");
        }
        assert!(Where::parse::<&str>(&[], &declared()).is_err());
        let nine = vec!["plan=1"; 9];
        assert!(Where::parse(&nine, &declared()).is_err());
    }

    #[test]
    fn info_values_pick_the_declared_keys_as_sent() {
        let fields = ["role", "plan", "missing"].map(String::from);
        let got = info_values(Some(r#"{"role":"admin","plan":{"a": [1]},"x":1}"#), &fields);
        let got: Vec<_> = got.iter().map(|(k, v)| (*k, v.get())).collect();
        assert_eq!(got, [("role", "\"admin\""), ("plan", "{\"a\": [1]}")]);
        assert!(info_values(Some(r#"{"role":"admin"}"#), &[]).is_empty());
        assert!(info_values(None, &fields).is_empty());
        assert!(info_values(Some("[]"), &fields).is_empty());
    }

    #[test]
    fn label_index_reads_the_string_value_or_says_other() {
        let values = ["free", "pro", "café"].map(String::from);
        let at = |custom: &str| label_index(Some(custom), "plan", &values);
        assert_eq!(at(r#"{"plan":"pro","x":[1,{"plan":"free"}]}"#), 1);
        assert_eq!(at(r#"{"x":{"plan":"pro"},"plan":"free"}"#), 0);
        assert_eq!(at(r#"{"plan":"caf\u00e9"}"#), 2, "escapes are read");
        for other in [
            r#"{"plan":"gold"}"#,
            r#"{"plan":7}"#,
            r#"{"plan":["pro"]}"#,
            r#"{"plan":null}"#,
            r#"{"Plan":"pro"}"#,
            r#"{}"#,
            "[]",
            "not json",
        ] {
            assert_eq!(at(other), 3, "{other}");
        }
        assert_eq!(label_index(None, "plan", &values), 3);
        assert!(valid_label_value("enterprise-2:eu.1"));
        for bad in ["", "a b", "é", "a\"", &"x".repeat(65)] {
            assert!(!valid_label_value(bad), "{bad}");
        }
    }

    #[test]
    fn field_names() {
        assert!(valid_field_name("organizationId"));
        assert!(valid_field_name("tenant_id-2"));
        for bad in ["", "a.b", "a b", "a\"", "é", &"x".repeat(65)] {
            assert!(!valid_field_name(bad), "{bad}");
        }
    }
}
