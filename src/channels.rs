//! Channel access rules: templates compiled once at startup, then matched against a user's id and
//! stored `custom` metadata; and Centrifugo's channel-name rules.
//!
//! A template is literal text with placeholders, optionally ending in `*`:
//!
//! - `#{userId}` is the user's id;
//! - `#{custom.<dotted.path>}` is the value at that path in the user's stored `custom` object;
//!   when that value is an array, any of its elements matches;
//! - a trailing `*` matches any non-empty rest of the channel (a prefix rule).
//!
//! Values that can fill a placeholder are non-empty strings, integers and booleans. A missing
//! path, `null`, an object, a float, an empty string or an array with no such element never
//! matches (and never panics). Templates are checked when they are compiled, and a bad one is
//! reported with the reason; see [`TemplateError`].
//!
//! Matching allocates nothing: the channel is walked against the compiled parts, integer values
//! are formatted on the stack, and `custom` is parsed (once per request, by the caller, only when
//! a rule reads it) before any rule runs.
//!
//! Channel names follow Centrifugo's rules (<https://centrifugal.dev/docs/server/channels>): at
//! most 255 bytes by default, `:` separates the namespace, a leading `$` makes the channel
//! private (the namespace is read after it), and namespace names match
//! `^[-a-zA-Z0-9_.]{2,}$`.
//!
//! Architecture invariant: this module is a leaf. It imports nothing from the service (no
//! configuration, HTTP, store or Centrifugo wire types).

use serde_json::Value;

/// Centrifugo's default `channel.max_length`.
pub const MAX_CHANNEL_BYTES: usize = 255;
/// Centrifugo's default `channel.private_prefix`.
pub const PRIVATE_PREFIX: char = '$';
/// Centrifugo's namespace boundary.
pub const NAMESPACE_BOUNDARY: char = ':';

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("is empty")]
    Empty,
    #[error("contains whitespace or control characters")]
    Whitespace,
    #[error("has a placeholder without its closing }}")]
    Unclosed,
    #[error("has the unknown placeholder #{{{0}}} (expected #{{userId}} or #{{custom.<path>}}, a path being names of letters, digits, _ or - joined by dots)")]
    UnknownPlaceholder(String),
    #[error("has a * before its end (* is only allowed as the last character, for a prefix)")]
    InnerStar,
    #[error("fixes nothing before its trailing * (that would allow every channel)")]
    BareStar,
    #[error("has a placeholder right before the trailing * (the value would only be a prefix of the channel: put a separator between them, e.g. #{{userId}}:*)")]
    PlaceholderBeforeStar,
    #[error("has two placeholders next to each other (separate them with literal text)")]
    AdjacentPlaceholders,
    #[error("has a placeholder in its namespace (the text before the first ':' must be literal, so that the generated Centrifugo config can declare the namespace)")]
    DynamicNamespace,
    #[error("has the namespace \"{0}\", which Centrifugo refuses (a namespace name matches ^[-a-zA-Z0-9_.]{{2,}}$)")]
    BadNamespace(String),
    #[error("is longer than {MAX_CHANNEL_BYTES} bytes before its placeholders are filled, so no channel can match it")]
    TooLong,
}

/// Why a channel name can never be a Centrifugo channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_CHANNEL_BYTES} bytes (Centrifugo's channel.max_length)")]
    TooLong,
    #[error("contains control characters")]
    Control,
    #[error("has the namespace \"{0}\", which Centrifugo cannot have (a namespace name matches ^[-a-zA-Z0-9_.]{{2,}}$)")]
    BadNamespace(String),
}

/// Checks a channel name against Centrifugo's rules (see the module docs).
pub fn validate_channel(channel: &str) -> Result<(), ChannelError> {
    if channel.is_empty() {
        return Err(ChannelError::Empty);
    }
    if channel.len() > MAX_CHANNEL_BYTES {
        return Err(ChannelError::TooLong);
    }
    if channel.chars().any(char::is_control) {
        return Err(ChannelError::Control);
    }
    match namespace_of(channel) {
        Some(ns) if !ns.is_empty() && !valid_namespace(ns) => {
            Err(ChannelError::BadNamespace(ns.to_string()))
        }
        _ => Ok(()),
    }
}

/// The namespace of a channel as Centrifugo reads it: the text before the first `:` after an
/// optional private prefix; `None` for a channel without one.
pub fn namespace_of(channel: &str) -> Option<&str> {
    let trimmed = channel.strip_prefix(PRIVATE_PREFIX).unwrap_or(channel);
    trimmed.split_once(NAMESPACE_BOUNDARY).map(|(ns, _)| ns)
}

/// True for a name Centrifugo accepts as a namespace: `^[-a-zA-Z0-9_.]{2,}$`.
pub fn valid_namespace(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The user a rule is matched for.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    /// The user's `custom` object, parsed (see [`ChannelRules::parse_custom`]).
    pub custom: Option<&'a Value>,
}

/// What a rule grants: a client subscription decided by the sidecar, or a server-side
/// subscription that the connection token lists (`centrifugo.user_channels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Subscribe,
    ServerSide,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    UserId,
    /// The path inside `custom`, one name per element.
    Custom(Box<[Box<str>]>),
}

/// One compiled template.
#[derive(Debug, Clone)]
pub struct Rule {
    source: String,
    kind: RuleKind,
    parts: Vec<Part>,
    /// Ends in `*`: the channel may continue after the last part (non-empty).
    prefix: bool,
    /// Starts with `$`.
    private: bool,
    /// The literal namespace, when the template has one.
    namespace: Option<Box<str>>,
}

impl Rule {
    /// Compiles a template.
    pub fn parse(template: &str, kind: RuleKind) -> Result<Rule, TemplateError> {
        if template.is_empty() {
            return Err(TemplateError::Empty);
        }
        if template
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(TemplateError::Whitespace);
        }
        let (body, prefix) = match template.strip_suffix('*') {
            Some(b) => (b, true),
            None => (template, false),
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = body;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("#{") {
                let end = after.find('}').ok_or(TemplateError::Unclosed)?;
                let part = placeholder(&after[..end])?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal).into()));
                } else if parts.last().is_some_and(|p| !matches!(p, Part::Literal(_))) {
                    return Err(TemplateError::AdjacentPlaceholders);
                }
                parts.push(part);
                rest = &after[end + 1..];
            } else {
                if c == '*' {
                    return Err(TemplateError::InnerStar);
                }
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        match parts.last() {
            None => return Err(TemplateError::BareStar),
            Some(Part::Literal(_)) => {}
            Some(_) if prefix => return Err(TemplateError::PlaceholderBeforeStar),
            Some(_) => {}
        }
        let fixed: usize = parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.len(),
                _ => 1,
            })
            .sum::<usize>()
            + usize::from(prefix);
        if fixed > MAX_CHANNEL_BYTES {
            return Err(TemplateError::TooLong);
        }
        let private = template.starts_with(PRIVATE_PREFIX);
        // The namespace must be literal text: either the first part holds the first ':', or
        // the template has no ':' at all (no namespace; matched channels may not have one).
        let namespace = match parts.first() {
            Some(Part::Literal(first)) => namespace_of(first).map(Box::<str>::from),
            _ => None,
        };
        let has_boundary = parts
            .iter()
            .any(|p| matches!(p, Part::Literal(l) if l.contains(NAMESPACE_BOUNDARY)));
        if namespace.is_none() && has_boundary {
            return Err(TemplateError::DynamicNamespace);
        }
        if let Some(ns) = namespace.as_deref() {
            if !ns.is_empty() && !valid_namespace(ns) {
                return Err(TemplateError::BadNamespace(ns.to_string()));
            }
        }
        Ok(Rule {
            source: template.to_string(),
            kind,
            parts,
            prefix,
            private,
            namespace,
        })
    }

    /// The template as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn kind(&self) -> RuleKind {
        self.kind
    }

    /// The namespace of every channel this rule matches (`None`: channels without one; `""` is
    /// Centrifugo's `without_namespace` too, spelled with a leading `:`).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|ns| !ns.is_empty())
    }

    /// True when the rule's channels start with `$`: Centrifugo admits them only with a
    /// subscription token, never through the subscribe proxy.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// True when the rule ends in `*`.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// True when the rule reads the user's `custom`.
    pub fn reads_custom(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Custom(_)))
    }

    /// True when the only placeholder is `#{userId}` (what server-side channels may use).
    pub fn only_user_id(&self) -> bool {
        !self.reads_custom()
    }

    /// True when this rule allows `channel` for `subject`.
    pub fn matches(&self, subject: &Subject<'_>, channel: &str) -> bool {
        if channel.starts_with(PRIVATE_PREFIX) != self.private {
            return false;
        }
        // A value filled into a namespace-less template must not give the channel a
        // namespace: a user whose id is "personal:bob" gets no access to `personal:bob`.
        if self.namespace.is_none() && namespace_of(channel).is_some() {
            return false;
        }
        match_parts(&self.parts, channel, subject, self.prefix)
    }

    /// The channel this rule names for `user_id`: its `#{userId}` filled in, when the rule is a
    /// whole channel over `#{userId}` only (what a server-side rule is) and the result is one
    /// the rule [`matches`](Rule::matches): so a user id can never move the channel into another
    /// namespace or make it private (`#{userId}` for the user `personal:bob` is no channel).
    pub fn fill_user(&self, user_id: &str) -> Option<String> {
        if self.prefix {
            return None;
        }
        let mut channel = String::with_capacity(self.source.len() + user_id.len());
        for part in &self.parts {
            match part {
                Part::Literal(l) => channel.push_str(l),
                Part::UserId => channel.push_str(user_id),
                Part::Custom(_) => return None,
            }
        }
        let subject = Subject {
            user_id,
            custom: None,
        };
        self.matches(&subject, &channel).then_some(channel)
    }
}

/// Compiles what is inside `#{...}`.
fn placeholder(name: &str) -> Result<Part, TemplateError> {
    if name == "userId" {
        return Ok(Part::UserId);
    }
    let unknown = || TemplateError::UnknownPlaceholder(name.to_string());
    let path = name.strip_prefix("custom.").ok_or_else(unknown)?;
    let segments: Vec<Box<str>> = path.split('.').map(Box::from).collect();
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    };
    if segments.iter().all(|s| valid(s)) {
        Ok(Part::Custom(segments.into()))
    } else {
        Err(unknown())
    }
}

/// Walks `rest` against `parts`; recursion only branches on array values.
fn match_parts(parts: &[Part], rest: &str, s: &Subject<'_>, prefix: bool) -> bool {
    let Some((part, tail)) = parts.split_first() else {
        return if prefix {
            !rest.is_empty()
        } else {
            rest.is_empty()
        };
    };
    let next = |r: &str| match_parts(tail, r, s, prefix);
    match part {
        Part::Literal(l) => rest.strip_prefix(&**l).is_some_and(next),
        Part::UserId => !s.user_id.is_empty() && rest.strip_prefix(s.user_id).is_some_and(next),
        Part::Custom(path) => match lookup(s.custom, path) {
            Some(Value::Array(items)) => items.iter().any(|v| scalar_then(v, rest, &next)),
            Some(v) => scalar_then(v, rest, &next),
            None => false,
        },
    }
}

/// The value at `path` in `custom`, if every step is an object holding the next name.
fn lookup<'v>(custom: Option<&'v Value>, path: &[Box<str>]) -> Option<&'v Value> {
    path.iter()
        .try_fold(custom?, |v, name| v.as_object()?.get(&**name))
}

/// When `v` is a usable scalar that starts `rest`, continues with what follows it.
fn scalar_then(v: &Value, rest: &str, next: &dyn Fn(&str) -> bool) -> bool {
    let mut buf = itoa::Buffer::new();
    let text: &str = match v {
        Value::String(s) if !s.is_empty() => s,
        Value::Bool(true) => "true",
        Value::Bool(false) => "false",
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => buf.format(i),
            (None, Some(u)) => buf.format(u),
            _ => return false,
        },
        _ => return false,
    };
    rest.strip_prefix(text).is_some_and(next)
}

/// Every compiled rule; a channel is allowed when any rule matches it.
#[derive(Debug, Clone, Default)]
pub struct ChannelRules {
    rules: Vec<Rule>,
    reads_custom: bool,
}

impl ChannelRules {
    pub fn new(rules: Vec<Rule>) -> ChannelRules {
        let reads_custom = rules.iter().any(Rule::reads_custom);
        ChannelRules {
            rules,
            reads_custom,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// True when some rule reads `custom`, so callers parse it only then.
    pub fn reads_custom(&self) -> bool {
        self.reads_custom
    }

    /// Parses a stored `custom` (JSON text) for matching, or `None` when no rule reads it or the
    /// text is not JSON (then `#{custom...}` rules simply do not match).
    pub fn parse_custom(&self, text: Option<&str>) -> Option<Value> {
        if !self.reads_custom {
            return None;
        }
        text.and_then(|t| serde_json::from_str(t).ok())
    }

    /// True when any rule allows `channel` for `subject`.
    pub fn allows(&self, subject: &Subject<'_>, channel: &str) -> bool {
        self.rules.iter().any(|r| r.matches(subject, channel))
    }

    /// The channel check, the one place it is made: the first of `channels` the rules do not
    /// give `user_id`, whose stored `custom` object is `custom` (JSON text); `None` when
    /// every one is allowed. `custom` is parsed once, and only when a rule reads it.
    pub fn first_refused<'c, C: AsRef<str>>(
        &self,
        user_id: &str,
        custom: Option<&str>,
        channels: &'c [C],
    ) -> Option<&'c str> {
        let custom = self.parse_custom(custom);
        let subject = Subject {
            user_id,
            custom: custom.as_ref(),
        };
        channels
            .iter()
            .map(AsRef::as_ref)
            .find(|c| !self.allows(&subject, c))
    }

    /// The server-side rules only ([`RuleKind::ServerSide`]), in order.
    pub fn server_side(&self) -> ChannelRules {
        ChannelRules::new(
            self.rules
                .iter()
                .filter(|r| r.kind == RuleKind::ServerSide)
                .cloned()
                .collect(),
        )
    }

    /// The server-side channels of `user_id` (the wsToken's `channels`, the connect reply's),
    /// in rule order: each server-side rule filled with the id ([`Rule::fill_user`]); a rule
    /// the id would move into another namespace gives none.
    pub fn server_side_channels(&self, user_id: &str) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| r.kind == RuleKind::ServerSide)
            .filter_map(|r| r.fill_user(user_id))
            .collect()
    }
}

#[cfg(test)]
mod tests;
