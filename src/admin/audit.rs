//! `GET /admin/audit?limit=&before=&action=&actor=&subject=`: one page of the audit trail,
//! newest first (the events `chatsdk-auth audit --json` prints, each with its id).
//!
//! Filters are exact matches; an empty one is no filter (the console sends its empty fields).
//! Follow `next_before` until it is `null`.

use crate::http::query::{self, PageLimit};
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

/// Parses the query string (the rules are [`query`]'s).
pub fn parse(q: Option<&str>) -> Result<AuditQuery, ApiError> {
    use query::Param as P;
    let q = query::parse(q, &[P::Limit, P::Before, P::Action, P::Actor, P::Subject])?;
    Ok(AuditQuery {
        limit: q.limit.map_or(DEFAULT_LIMIT, PageLimit::get),
        before: q.before,
        action: q.action,
        actor: q.actor,
        subject: q.subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_reads_its_parameters_with_their_one_rule() {
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
        assert_eq!(parse(Some("limit=0")).unwrap_err().code(), "invalid_limit");
        assert_eq!(
            parse(Some("before=-1")).unwrap_err().code(),
            "invalid_before"
        );
        assert_eq!(
            parse(Some("actor=%00")).unwrap_err().code(),
            "invalid_filter"
        );
    }
}
