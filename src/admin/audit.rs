//! `GET /admin/audit?limit=&before=&action=&actor=&subject=`: one page of the audit trail,
//! newest first (the events `chatsdk-auth audit --json` prints, each with its id).
//!
//! Filters are exact matches; an empty one is no filter (the console sends its empty fields).
//! Follow `next_before` until it is `null`.

use crate::actions::MAX_PAGE;
use crate::http::ApiError;
use crate::router::context::AuditReader;
use crate::store::{AuditPage, AuditQuery};

/// Default page size.
const DEFAULT_LIMIT: usize = 50;

/// The page `query` asks for.
pub async fn page(reader: &AuditReader<'_>, query: Option<&str>) -> Result<AuditPage, ApiError> {
    let q = parse(query)?;
    Ok(reader.page(&q).await?)
}

/// Parses the query string; a bad `limit` or `before` is a 400 naming it.
pub fn parse(query: Option<&str>) -> Result<AuditQuery, ApiError> {
    let mut q = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let given = (!v.is_empty()).then(|| v.clone().into_owned());
        match k.as_ref() {
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::InvalidField {
                        code: "invalid_limit",
                        message: format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                    })?
            }
            "before" => {
                q.before = match given {
                    None => None,
                    Some(b) => Some(b.parse().ok().filter(|n: &i64| *n > 0).ok_or_else(|| {
                        ApiError::InvalidField {
                            code: "invalid_before",
                            message: "before must be a positive whole number: the previous page's next_before".into(),
                        }
                    })?),
                }
            }
            "action" | "actor" | "subject" => {
                // Stored values never hold control characters (PostgreSQL refuses a NUL in
                // TEXT outright): such a filter is the caller's mistake, not a 500.
                if given.as_deref().is_some_and(|v| v.chars().any(char::is_control)) {
                    return Err(ApiError::InvalidField {
                        code: "invalid_filter",
                        message: format!("{k} must not contain control characters"),
                    });
                }
                match k.as_ref() {
                    "action" => q.action = given,
                    "actor" => q.actor = given,
                    _ => q.subject = given,
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_parsed_strictly_and_empty_filters_are_none() {
        let q = parse(Some(
            "limit=2&before=9&action=user.disabled&actor=&subject=a%2Fb",
        ))
        .unwrap();
        assert_eq!(q.limit, 2);
        assert_eq!(q.before, Some(9));
        assert_eq!(q.action.as_deref(), Some("user.disabled"));
        assert_eq!(q.actor, None);
        assert_eq!(q.subject.as_deref(), Some("a/b"));
        assert_eq!(parse(None).unwrap().limit, DEFAULT_LIMIT);
        for (bad, code) in [
            ("limit=0", "invalid_limit"),
            ("limit=1001", "invalid_limit"),
            ("limit=x", "invalid_limit"),
            ("before=-1", "invalid_before"),
            ("before=1.5", "invalid_before"),
            ("actor=%00", "invalid_filter"),
            ("subject=a%0Ab", "invalid_filter"),
            ("action=%7F", "invalid_filter"),
        ] {
            assert_eq!(parse(Some(bad)).unwrap_err().code(), code, "{bad}");
        }
    }
}
