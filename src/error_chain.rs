//! Error causes kept as values, and the one way a whole `source()` chain is printed.
//!
//! Boundary errors (`StoreError`, `ApiError`, `SignError`) keep their cause as a [`Cause`]
//! behind `#[source]` instead of flattening it to a string, so the log line written at the
//! boundary (and `{:#}` in the CLI) shows every level: "store unavailable: cannot open SQLite
//! database data/x.db: unable to open database file".

use std::error::Error;
use std::fmt;

/// Any underlying error, owned and thread-safe. A plain message converts with `.into()`.
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// A message that explains a lower-level error, which stays reachable through `source()`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Context {
    message: String,
    #[source]
    source: Cause,
}

impl Context {
    /// Wraps `source` with `message` (what was being done when it failed).
    pub fn new(message: impl Into<String>, source: impl Into<Cause>) -> Context {
        Context {
            message: message.into(),
            source: source.into(),
        }
    }
}

/// Displays an error and each of its sources, separated by `": "`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_prints_every_level() {
        let io = std::io::Error::other("disk on fire");
        let ctx = Context::new("cannot open data/x.db", io);
        assert_eq!(
            Chain(&ctx).to_string(),
            "cannot open data/x.db: disk on fire"
        );
        assert!(ctx.source().is_some());
    }
}
