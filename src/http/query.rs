//! The one query-string parser, with one rule per parameter: a route names the [`Param`]s it
//! reads and gets a [`Query`] of their checked values; a bad value is a 400 naming its
//! parameter. Every rule is written once, here, whichever route reads the parameter.
//!
//! Rules common to all: the string is `application/x-www-form-urlencoded` (`+` is a space,
//! `%XX` escapes); an empty value is no value (the console sends its empty fields); a
//! parameter given twice takes its last value; a parameter the route does not read is
//! ignored.

use std::borrow::Cow;

use super::{ApiError, Field};

/// The largest page a list returns (`limit`), and the default nowhere: each route has its
/// own default page size.
pub const MAX_PAGE: usize = 1000;

/// A page size from 1 to [`MAX_PAGE`]: the type is the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(usize);

impl PageLimit {
    /// The rule of `limit`, wherever a page size comes from (a query, the command line).
    pub fn new(n: usize) -> Result<PageLimit, String> {
        if (1..=MAX_PAGE).contains(&n) {
            Ok(PageLimit(n))
        } else {
            Err(format!("limit must be a whole number from 1 to {MAX_PAGE}"))
        }
    }

    /// `n` brought into the range: for a route's default page size.
    pub const fn clamped(n: usize) -> PageLimit {
        PageLimit(if n == 0 {
            1
        } else if n > MAX_PAGE {
            MAX_PAGE
        } else {
            n
        })
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// A query parameter, with its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `limit`: a [`PageLimit`].
    Limit,
    /// `after`: a user id to list after (the previous page's `next_after`); any text.
    After,
    /// `before`: an audit event id to list before (the previous page's `next_before`); a
    /// positive whole number.
    Before,
    /// `action`, `actor`, `subject`: exact-match filters of the audit trail; no control
    /// characters (stored values never hold one, and PostgreSQL refuses a NUL in TEXT).
    Action,
    Actor,
    Subject,
    /// `where`: a segment condition `field=value` on a declared field; repeated to AND
    /// (checked against the declared fields by the action).
    Where,
}

impl Param {
    /// The parameter's name in the query string.
    pub const fn name(self) -> &'static str {
        match self {
            Param::Limit => "limit",
            Param::After => "after",
            Param::Before => "before",
            Param::Action => "action",
            Param::Actor => "actor",
            Param::Subject => "subject",
            Param::Where => "where",
        }
    }

    fn of(name: &str) -> Option<Param> {
        const ALL: [Param; 7] = [
            Param::Limit,
            Param::After,
            Param::Before,
            Param::Action,
            Param::Actor,
            Param::Subject,
            Param::Where,
        ];
        ALL.into_iter().find(|p| p.name() == name)
    }

    /// The 400 of a bad value.
    fn refuse(self, message: String) -> ApiError {
        let field = match self {
            Param::Limit => Field::Limit,
            Param::Before => Field::Before,
            Param::After | Param::Action | Param::Actor | Param::Subject => Field::Filter,
            Param::Where => Field::Where,
        };
        ApiError::InvalidField { field, message }
    }
}

/// The checked values of the parameters a route reads; `None` where absent or empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub limit: Option<PageLimit>,
    pub after: Option<String>,
    pub before: Option<i64>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub subject: Option<String>,
    /// Every `where` given, in order.
    pub conditions: Vec<String>,
}

/// Parses `query` (the part after `?`, if any) for the parameters in `reads`.
pub fn parse(query: Option<&str>, reads: &[Param]) -> Result<Query, ApiError> {
    let mut q = Query::default();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let Some(p) = Param::of(&k).filter(|p| reads.contains(p)) else {
            continue;
        };
        if v.is_empty() {
            q.clear(p);
            continue;
        }
        q.set(p, v)?;
    }
    Ok(q)
}

impl Query {
    fn clear(&mut self, p: Param) {
        match p {
            Param::Limit => self.limit = None,
            Param::After => self.after = None,
            Param::Before => self.before = None,
            Param::Action => self.action = None,
            Param::Actor => self.actor = None,
            Param::Subject => self.subject = None,
            Param::Where => {}
        }
    }

    /// The rule of `p`, applied to a non-empty value.
    fn set(&mut self, p: Param, v: Cow<'_, str>) -> Result<(), ApiError> {
        match p {
            Param::Limit => {
                let n = v.parse().unwrap_or(0);
                self.limit = Some(PageLimit::new(n).map_err(|m| p.refuse(m))?);
            }
            Param::After => self.after = Some(v.into_owned()),
            Param::Where => {
                if self.conditions.len() >= crate::segments::MAX_CONDITIONS {
                    return Err(p.refuse(format!(
                        "where takes at most {} conditions",
                        crate::segments::MAX_CONDITIONS
                    )));
                }
                self.conditions.push(v.into_owned());
            }
            Param::Before => {
                let id = v.parse().ok().filter(|n: &i64| *n > 0).ok_or_else(|| {
                    p.refuse(
                        "before must be a positive whole number: the previous page's next_before"
                            .into(),
                    )
                })?;
                self.before = Some(id);
            }
            Param::Action | Param::Actor | Param::Subject => {
                if v.chars().any(char::is_control) {
                    return Err(
                        p.refuse(format!("{} must not contain control characters", p.name()))
                    );
                }
                let v = Some(v.into_owned());
                match p {
                    Param::Action => self.action = v,
                    Param::Actor => self.actor = v,
                    _ => self.subject = v,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Param] = &[
        Param::Limit,
        Param::After,
        Param::Before,
        Param::Action,
        Param::Actor,
        Param::Subject,
    ];

    #[test]
    fn each_parameter_has_one_rule() {
        let q = parse(
            Some("limit=2&before=9&action=user.disabled&actor=&subject=a%2Fb&after=u+1"),
            ALL,
        )
        .unwrap();
        assert_eq!(q.limit, Some(PageLimit(2)));
        assert_eq!(q.before, Some(9));
        assert_eq!(q.action.as_deref(), Some("user.disabled"));
        assert_eq!(q.actor, None);
        assert_eq!(q.subject.as_deref(), Some("a/b"));
        assert_eq!(q.after.as_deref(), Some("u 1"));
        assert_eq!(parse(None, ALL).unwrap(), Query::default());
        for (bad, code) in [
            ("limit=0", "invalid_limit"),
            ("limit=1001", "invalid_limit"),
            ("limit=x", "invalid_limit"),
            ("limit=-1", "invalid_limit"),
            ("before=-1", "invalid_before"),
            ("before=0", "invalid_before"),
            ("before=1.5", "invalid_before"),
            ("actor=%00", "invalid_filter"),
            ("subject=a%0Ab", "invalid_filter"),
            ("action=%7F", "invalid_filter"),
        ] {
            assert_eq!(parse(Some(bad), ALL).unwrap_err().code(), code, "{bad}");
        }
        assert_eq!(
            parse(Some("limit=x"), ALL).unwrap_err().to_string(),
            "limit must be a whole number from 1 to 1000"
        );
    }

    #[test]
    fn empty_is_absent_the_last_value_wins_and_unread_parameters_are_ignored() {
        let q = parse(Some("limit=5&limit=&after=a&after=b"), ALL).unwrap();
        assert_eq!(q.limit, None);
        assert_eq!(q.after.as_deref(), Some("b"));
        // A route that does not read `before` never refuses it.
        let q = parse(Some("before=x&limit=3&other=1"), &[Param::Limit]).unwrap();
        assert_eq!(q.limit, Some(PageLimit(3)));
        assert_eq!(q.before, None);
    }

    #[test]
    fn the_page_limit_is_inclusive() {
        assert!(PageLimit::new(1).is_ok());
        assert!(PageLimit::new(MAX_PAGE).is_ok());
        assert!(PageLimit::new(0).is_err());
        assert!(PageLimit::new(MAX_PAGE + 1).is_err());
        assert_eq!(PageLimit::clamped(0).get(), 1);
        assert_eq!(PageLimit::clamped(5000).get(), MAX_PAGE);
    }
}
