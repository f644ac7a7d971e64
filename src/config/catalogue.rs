//! The catalogue of secrets: one table ([`SECRETS`]) of every secret the service reads, and the
//! [`Secret`] value type.
//!
//! Everything about a secret derives from its row: the environment variable and the file key
//! (from the config key), the default file and how a missing one is generated
//! ([`crate::secrets::Secrets::load`]), what `check-config` checks ([`crate::secrets::Secrets::check`]
//! runs the same code without creating anything), the minimum length and the distinctness rule
//! (validation), which keys `check-config` redacts and which values a config file may not hold
//! ([`super::load`], [`super::redact`]), where Centrifugo's config carries the same value, and
//! the README's table of secrets ([`markdown_table`], kept equal to the README by a test).

use std::fmt;

use jsonwebtoken::Algorithm;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::algorithm::{algorithm_name, is_asymmetric};
use super::TokenConfig;

/// A secret string: its `Debug` never shows the value, and its memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }
    /// The value, for the single place that needs it (signing, comparing, printing once).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Names one row of [`SECRETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretId {
    RestKey,
    CentrifugoKey,
    ProxySecret,
    MetricsToken,
    SubscriptionKey,
    CentrifugoApiKey,
    AdminToken,
    KeyEncryptionKey,
}

/// Which token's algorithm decides a signing key's material and file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKind {
    /// `tokens.rest_algorithm`.
    Rest,
    /// `tokens.ws_algorithm`.
    Ws,
}

/// How a missing secret file is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// 32 random bytes from the OS generator, base64url (43 characters).
    RandomToken,
    /// Key material for the token's algorithm: a random token for HMAC, else a PKCS#8 PEM
    /// private key in a file of its own per algorithm, `<pem_prefix>-signing-<alg>.pem`.
    SigningKey {
        kind: SigningKind,
        pem_prefix: &'static str,
    },
}

/// Who a secret is given to besides this service. A value known to one holder must not open
/// what another's protects: the metrics scraper must not hold the admin token, Centrifugo
/// must not hold the key that opens the ring, an operator's browser no proxy secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: only this service reads it (the REST signing key).
    Nobody,
    /// Centrifugo (its config carries the value).
    Centrifugo,
    /// Whatever scrapes `/metrics`.
    MetricsScraper,
    /// The operator's console or scripts (admin API).
    Operator,
    /// The replicas sharing the key ring in PostgreSQL, and whoever restores it.
    KeyRingKeeper,
}

impl Holder {
    pub fn describe(self) -> &'static str {
        match self {
            Holder::Nobody => "this service alone",
            Holder::Centrifugo => "Centrifugo",
            Holder::MetricsScraper => "the metrics scraper",
            Holder::Operator => "the operator",
            Holder::KeyRingKeeper => "the key ring's keepers",
        }
    }
}

/// When the service reads (and generates) a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    Always,
    /// Only with `storage.backend = "postgres"`.
    Postgres,
}

/// One secret: everything the service knows about it.
#[derive(Debug, Clone, Copy)]
pub struct SecretSpec {
    pub id: SecretId,
    /// The config key of its value (`secrets.<name>`); the file key is this plus `_file`, the
    /// environment variable [`super::env_name`] of it.
    pub key: &'static str,
    /// The file in `storage.data_dir` when neither the value nor the file key is set (for a
    /// signing key: with an HMAC algorithm).
    pub default_file: &'static str,
    pub generator: Generator,
    /// The shortest value accepted, in bytes, from the environment or from a file.
    pub min_len: usize,
    /// A signing key: it must differ from every other signing key, or a token of one kind
    /// would verify as another.
    pub signing: bool,
    /// Where Centrifugo's (v6) config holds the same value, when it is shared with Centrifugo.
    pub centrifugo: Option<&'static str>,
    /// Who else is given the value: secrets of different holders must differ ([`equal_pair`]).
    pub holder: Holder,
    pub description: &'static str,
    /// When it is read, generated and checked.
    pub needed: Needed,
}

/// The shortest secret accepted: 32 bytes, what a generated one has before encoding.
pub const MIN_SECRET_BYTES: usize = 32;

/// Every secret the service reads, in the order they are loaded (and generated).
pub const SECRETS: [SecretSpec; 8] = [
    SecretSpec {
        id: SecretId::RestKey,
        key: "secrets.rest_key",
        default_file: "rest-signing.key",
        generator: Generator::SigningKey {
            kind: SigningKind::Rest,
            pem_prefix: "rest",
        },
        min_len: MIN_SECRET_BYTES,
        signing: true,
        centrifugo: None,
        holder: Holder::Nobody,
        description: "REST signing key",
        needed: Needed::Always,
    },
    SecretSpec {
        id: SecretId::CentrifugoKey,
        key: "secrets.centrifugo_key",
        default_file: "centrifugo-hmac.key",
        generator: Generator::SigningKey {
            kind: SigningKind::Ws,
            pem_prefix: "ws",
        },
        min_len: MIN_SECRET_BYTES,
        signing: true,
        centrifugo: Some("client.token.hmac_secret_key"),
        holder: Holder::Centrifugo,
        description: "wsToken signing key (Centrifugo HMAC key)",
        needed: Needed::Always,
    },
    SecretSpec {
        id: SecretId::ProxySecret,
        key: "secrets.proxy_secret",
        default_file: "proxy-secret.key",
        generator: Generator::RandomToken,
        min_len: MIN_SECRET_BYTES,
        signing: false,
        centrifugo: Some("client.proxy.refresh.http.static_headers"),
        holder: Holder::Centrifugo,
        description: "Proxy secret (every proxy's static header)",
        needed: Needed::Always,
    },
    SecretSpec {
        id: SecretId::MetricsToken,
        key: "secrets.metrics_token",
        default_file: "metrics-token.key",
        generator: Generator::RandomToken,
        min_len: MIN_SECRET_BYTES,
        signing: false,
        centrifugo: None,
        holder: Holder::MetricsScraper,
        description: "Metrics token",
        needed: Needed::Always,
    },
    SecretSpec {
        id: SecretId::SubscriptionKey,
        key: "secrets.subscription_key",
        default_file: "subscription-hmac.key",
        generator: Generator::RandomToken,
        min_len: MIN_SECRET_BYTES,
        signing: true,
        centrifugo: Some("client.subscription_token.hmac_secret_key"),
        holder: Holder::Centrifugo,
        description: "Subscription HMAC key",
        needed: Needed::Always,
    },
    SecretSpec {
        id: SecretId::CentrifugoApiKey,
        key: "secrets.centrifugo_api_key",
        default_file: "centrifugo-api.key",
        generator: Generator::RandomToken,
        min_len: MIN_SECRET_BYTES,
        signing: false,
        centrifugo: Some("http_api.key"),
        holder: Holder::Centrifugo,
        description: "Centrifugo server-API key",
        needed: Needed::Always,
    },
    SecretSpec {
        id: SecretId::AdminToken,
        key: "secrets.admin_token",
        default_file: "admin-token.key",
        generator: Generator::RandomToken,
        min_len: MIN_SECRET_BYTES,
        signing: false,
        centrifugo: None,
        holder: Holder::Operator,
        description: "Admin API token",
        needed: Needed::Always,
    },
    SecretSpec {
        id: SecretId::KeyEncryptionKey,
        key: "secrets.key_encryption_key",
        default_file: "key-encryption.key",
        generator: Generator::RandomToken,
        min_len: MIN_SECRET_BYTES,
        signing: false,
        centrifugo: None,
        holder: Holder::KeyRingKeeper,
        description: "Key-encryption secret of the signing keys in PostgreSQL (`storage.backend = \"postgres\"` only; the same on every replica)",
        needed: Needed::Postgres,
    },
];

/// An API key installed at startup: a secret value too, but only ever from the environment,
/// never generated (its checks are the API-key format's, see [`crate::api_key`]).
pub const INITIAL_API_KEY: &str = "secrets.initial_api_key";

// Row `i` of the table is the id whose discriminant is `i`: checked when compiling, so
// [`spec`]'s index is always in bounds and right.
const _: () = {
    assert!(SECRETS.len() == SecretId::KeyEncryptionKey as usize + 1);
    let mut i = 0;
    while i < SECRETS.len() {
        assert!(
            SECRETS[i].id as usize == i,
            "SECRETS is out of SecretId order"
        );
        i += 1;
    }
};

/// The row of `id`.
pub fn spec(id: SecretId) -> &'static SecretSpec {
    &SECRETS[id as usize]
}

/// Every config key whose value is a secret: accepted from the environment only, redacted by
/// `check-config`.
pub fn value_keys() -> impl Iterator<Item = &'static str> {
    SECRETS.iter().map(|s| s.key).chain([INITIAL_API_KEY])
}

/// Whether `a` and `b` must hold different values: always when their holders differ (one
/// holder must not hold what protects another's), and always when either signs (a token of
/// one kind would verify as another, or a key that signs would be shown to a holder).
pub fn must_differ(a: &SecretSpec, b: &SecretSpec) -> bool {
    a.holder != b.holder || a.signing || b.signing
}

/// The first pair of secrets that hold the same value although they [`must_differ`], given
/// each row's value (`None` or empty for one not set): the one distinctness check, shared by
/// validation (environment values) and [`crate::secrets::Secrets::load`] (files).
pub fn equal_pair<'v>(
    value: impl Fn(SecretId) -> Option<&'v str>,
) -> Option<(&'static SecretSpec, &'static SecretSpec)> {
    let values: Vec<_> = SECRETS
        .iter()
        .map(|s| value(s.id).filter(|v| !v.is_empty()))
        .collect();
    for (i, a) in SECRETS.iter().enumerate() {
        let Some(va) = values[i] else { continue };
        for (j, b) in SECRETS.iter().enumerate().skip(i + 1) {
            if values[j].is_some_and(|vb| {
                // Constant time: these are secrets, and the check runs on every start.
                must_differ(a, b) && bool::from(va.as_bytes().ct_eq(vb.as_bytes()))
            }) {
                return Some((a, b));
            }
        }
    }
    None
}

/// Why `a` and `b` must differ, for the refusal's sentence.
pub fn why_differ(a: &SecretSpec, b: &SecretSpec) -> String {
    if a.signing && b.signing {
        "or a token signed with one would verify as the other".into()
    } else if a.holder != b.holder {
        format!(
            "one is given to {}, the other to {}",
            a.holder.describe(),
            b.holder.describe()
        )
    } else {
        "a signing key is never shared with another secret".into()
    }
}

impl SecretSpec {
    /// The key's name inside `[secrets]` (`rest_key`).
    pub fn field(&self) -> &'static str {
        self.key.trim_start_matches("secrets.")
    }

    /// The config key of its file (`secrets.rest_key_file`).
    pub fn file_key(&self) -> String {
        format!("{}_file", self.key)
    }

    /// The environment variable of its value (`CHATSDK_AUTH_SECRETS__REST_KEY`).
    pub fn env_name(&self) -> String {
        super::env_name(self.key)
    }

    /// Whether the service reads it with this store (a secret not needed is neither read nor
    /// generated).
    pub fn needed_with(&self, store: &super::StoreConfig) -> bool {
        match self.needed {
            Needed::Always => true,
            Needed::Postgres => matches!(store, super::StoreConfig::Postgres { .. }),
        }
    }

    /// The token algorithm that decides its material, for a signing key.
    pub fn algorithm(&self, tokens: &TokenConfig) -> Option<Algorithm> {
        match self.generator {
            Generator::RandomToken => None,
            Generator::SigningKey { kind, .. } => Some(match kind {
                SigningKind::Rest => tokens.rest_algorithm,
                SigningKind::Ws => tokens.ws_algorithm,
            }),
        }
    }

    /// The default file name for these token settings: an asymmetric key has a file of its
    /// own per algorithm, so changing the algorithm never reads the previous algorithm's key.
    pub fn default_file_for(&self, tokens: &TokenConfig) -> String {
        match (self.generator, self.algorithm(tokens)) {
            (Generator::SigningKey { pem_prefix, .. }, Some(alg)) if is_asymmetric(alg) => {
                format!(
                    "{pem_prefix}-signing-{}.pem",
                    algorithm_name(alg).to_ascii_lowercase()
                )
            }
            _ => self.default_file.to_string(),
        }
    }
}

/// The README's table of secrets, one row per entry of [`SECRETS`].
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Secret | Env value | File key (default file in `data_dir`) | In Centrifugo's config |\n|---|---|---|---|\n",
    );
    for s in &SECRETS {
        let file = match s.generator {
            Generator::SigningKey { pem_prefix, .. } => format!(
                "`{}`; asymmetric: `{pem_prefix}-signing-<alg>.pem`",
                s.default_file
            ),
            Generator::RandomToken => format!("`{}`", s.default_file),
        };
        let centrifugo = s.centrifugo.map_or("—".to_string(), |c| format!("`{c}`"));
        out.push_str(&format!(
            "| {} | `{}` | `{}` ({file}) | {centrifugo} |\n",
            s.description,
            s.env_name(),
            s.file_key(),
        ));
    }
    out
}
