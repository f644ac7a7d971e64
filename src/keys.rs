//! Signing keys of both token kinds: parsed material, key ids, public JWKs, the key ring with
//! its rotation schedule, and [`LiveKeys`], which re-reads the ring file when it changes.
//!
//! A key is an HMAC secret (the string is the key, as Centrifugo reads `hmac_secret_key`) or a
//! PKCS#8 PEM private key (RS256, ES256, EdDSA). Parsing is aws-lc-rs's and signing
//! `jsonwebtoken`'s; the JWK thumbprint is RFC 7638 (`jsonwebtoken::jwk::Jwk::thumbprint`).
//! Every key has a `kid`: the thumbprint of its public JWK, or for an HMAC secret a stable id
//! derived from the secret with HMAC-SHA-256 (so the id reveals nothing of the secret).
//!
//! Until the first `chatsdk-auth keys rotate`, each kind has one key: the configured one
//! (`secrets.rest_key*`, `secrets.centrifugo_key*`). A rotation writes the key ring file
//! (`<data_dir>/keyring.json`, mode 0600), which from then on holds every key of that kind with
//! its schedule: when it starts signing, when it stops, and when its last token expires. Which
//! key signs and which keys verify or are published is decided from that schedule and the
//! clock, so nothing has to happen at the moment a rotation takes effect. A running server
//! re-reads the file when its modification time, size or inode changes ([`LiveKeys`]); replicas
//! share it the way they share the key files. A ring file that cannot be read keeps the keys
//! already loaded (and says so in the log): verification and the JWKS never depend on it.
//!
//! Architecture invariant: this module knows nothing about HTTP.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};

pub use crate::config::algorithm::{algorithm_name, is_asymmetric, parse_algorithm};
use crate::config::{Config, TokenConfig};
use crate::secrets::{self, Secret, Secrets, SecretsError};

/// The file name of the key ring inside the data directory.
pub const RING_FILE: &str = "keyring.json";
/// The ring file's format version.
const RING_VERSION: u32 = 1;

/// Which token a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The ChatSDK REST token (`token`).
    Rest,
    /// The Centrifugo connection token (`wsToken`).
    Ws,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Rest => "rest",
            Kind::Ws => "ws",
        }
    }

    /// The config key naming this kind's algorithm.
    pub fn algorithm_key(self) -> &'static str {
        match self {
            Kind::Rest => "tokens.rest_algorithm",
            Kind::Ws => "tokens.ws_algorithm",
        }
    }
}

/// Why a key could not be used; each names the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{name}: is not a PEM \"PRIVATE KEY\" (PKCS#8) as {alg} needs; convert a PKCS#1/SEC1 key with `openssl pkcs8 -topk8 -nocrypt`")]
    NotPkcs8 { name: String, alg: &'static str },
    #[error("{name}: holds {found}, which does not fit {alg} (expected {expected})")]
    WrongType {
        name: String,
        alg: &'static str,
        found: &'static str,
        expected: &'static str,
    },
    #[error("{name}: the key cannot be used for {alg}")]
    Unusable {
        name: String,
        alg: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("key ring {}: cannot be read", path.display())]
    RingRead {
        path: PathBuf,
        #[source]
        source: SecretsError,
    },
    #[error("key ring {}: is not a valid key ring", path.display())]
    RingParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("key ring {}: key {kid} of kind {kind} has an id that does not match its material", path.display())]
    RingKid {
        path: PathBuf,
        kid: String,
        kind: &'static str,
    },
    #[error("key ring {}: {kind} key {kid} has unsupported algorithm \"{alg}\"", path.display())]
    RingAlgorithm {
        path: PathBuf,
        kid: String,
        kind: &'static str,
        alg: String,
    },
    #[error("cannot generate a {alg} key")]
    Generate { alg: &'static str },
    #[error("cannot write the key ring {}", path.display())]
    RingWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// When a key signs, stops signing and stops verifying (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// When the key was created (a "next" key is published from here).
    pub created_at: i64,
    /// The first second the key signs.
    pub signs_from: i64,
    /// The first second the key no longer signs; `None` while it is the current key.
    pub signs_until: Option<i64>,
    /// The first second no token it signed is valid any more: it then neither verifies nor is
    /// published. `None` while it is (or will be) the current key.
    pub expires_at: Option<i64>,
}

impl Schedule {
    /// The schedule of a configured key: signing since forever, until rotated.
    pub const CONFIGURED: Schedule = Schedule {
        created_at: 0,
        signs_from: 0,
        signs_until: None,
        expires_at: None,
    };

    fn signs_at(&self, now: i64) -> bool {
        self.signs_from <= now && self.signs_until.is_none_or(|u| now < u)
    }

    fn valid_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// One signing key, parsed and ready.
pub struct Key {
    pub kid: String,
    pub alg: Algorithm,
    pub schedule: Schedule,
    /// The `alg` + `kid` (+ `typ: JWT`) header every token it signs carries.
    pub header: Header,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// For an HMAC key, the secret prepared once (see [`PreparedHmac`]); `None` for
    /// asymmetric keys.
    pub hmac: Option<PreparedHmac>,
    /// The public JWK (`kid`, `use: sig`, `alg`) of an asymmetric key.
    pub jwk: Option<Jwk>,
    /// The public key as a PEM "PUBLIC KEY" (SPKI), for Centrifugo's static key options.
    pub public_pem: Option<String>,
    /// The HMAC secret or the private key PEM, as configured or stored.
    material: Secret,
}

/// An HMAC key as signing and verifying use it on every request, built once: aws-lc-rs's HMAC
/// key (inner and outer pads already hashed) and the base64url JSON of the key's header, the
/// first part of every token it signs (`jsonwebtoken::encode` re-serialises it each time).
pub struct PreparedHmac {
    pub key: aws_lc_rs::hmac::Key,
    pub header_b64: String,
}

impl PreparedHmac {
    fn new(
        alg: Algorithm,
        secret: &[u8],
        header: &Header,
    ) -> Result<PreparedHmac, jsonwebtoken::errors::Error> {
        let json = serde_json::to_vec(header)?;
        Ok(PreparedHmac {
            key: aws_lc_rs::hmac::Key::new(hmac_algorithm(alg), secret),
            header_b64: URL_SAFE_NO_PAD.encode(json),
        })
    }
}

/// aws-lc-rs's HMAC for an HMAC `alg` (only called for HS256/384/512).
fn hmac_algorithm(alg: Algorithm) -> aws_lc_rs::hmac::Algorithm {
    match alg {
        Algorithm::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
        Algorithm::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Parses `material` for `alg`; `name` says where the key came from (in errors).
    pub fn parse(
        name: &str,
        alg: Algorithm,
        material: &Secret,
        schedule: Schedule,
    ) -> Result<Key, KeyError> {
        let alg_name = algorithm_name(alg);
        let unusable = |source| KeyError::Unusable {
            name: name.to_string(),
            alg: alg_name,
            source,
        };
        if !is_asymmetric(alg) {
            let secret = material.expose().as_bytes();
            let tag = aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
                b"chatsdk-auth key id",
            );
            let kid = format!("hs-{}", URL_SAFE_NO_PAD.encode(&tag.as_ref()[..12]));
            let header = header(alg, &kid);
            let hmac = PreparedHmac::new(alg, secret, &header).map_err(unusable)?;
            return Ok(Key {
                header,
                kid,
                alg,
                schedule,
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                hmac: Some(hmac),
                jwk: None,
                public_pem: None,
                material: material.clone(),
            });
        }
        let der = match pem::parse(material.expose().trim()) {
            Ok(p) if p.tag() == "PRIVATE KEY" => p.into_contents(),
            _ => {
                return Err(KeyError::NotPkcs8 {
                    name: name.to_string(),
                    alg: alg_name,
                })
            }
        };
        let wrong = |expected| KeyError::WrongType {
            name: name.to_string(),
            alg: alg_name,
            found: describe_pkcs8(&der),
            expected,
        };
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let (params, spki, encoding, decoding) = match alg {
            Algorithm::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(&der)
                    .map_err(|_| wrong("an RSA key of 2048 bits or more"))?;
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                let spki = kp.public_key().as_der().map_err(|_| wrong("an RSA key"))?;
                (
                    AlgorithmParameters::RSA(RSAKeyParameters {
                        key_type: RSAKeyType::RSA,
                        n: b64(&c.n),
                        e: b64(&c.e),
                    }),
                    spki.as_ref().to_vec(),
                    EncodingKey::from_rsa_pem(material.expose().as_bytes()).map_err(unusable)?,
                    DecodingKey::from_rsa_raw_components(&c.n, &c.e),
                )
            }
            Algorithm::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| wrong("an EC key on curve P-256"))?;
                let point = kp.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(wrong("an EC key on curve P-256"));
                }
                let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
                let spki = kp.public_key().as_der().map_err(|_| wrong("an EC key"))?;
                (
                    AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                        key_type: EllipticCurveKeyType::EC,
                        curve: EllipticCurve::P256,
                        x: x.clone(),
                        y: y.clone(),
                    }),
                    spki.as_ref().to_vec(),
                    EncodingKey::from_ec_der(&der),
                    DecodingKey::from_ec_components(&x, &y).map_err(unusable)?,
                )
            }
            Algorithm::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| wrong("an Ed25519 key"))?;
                let x = b64(kp.public_key().as_ref());
                let spki = kp
                    .public_key()
                    .as_der()
                    .map_err(|_| wrong("an Ed25519 key"))?;
                (
                    AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: EllipticCurve::Ed25519,
                        x: x.clone(),
                    }),
                    spki.as_ref().to_vec(),
                    EncodingKey::from_ed_der(&der),
                    DecodingKey::from_ed_components(&x).map_err(unusable)?,
                )
            }
            _ => return Err(wrong("a supported key")),
        };
        let mut jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: params,
        };
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(key_algorithm(alg)),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        };
        Ok(Key {
            header: header(alg, &kid),
            kid,
            alg,
            schedule,
            encoding,
            decoding,
            hmac: None,
            jwk: Some(jwk),
            public_pem: Some(crate::secrets::pem_lf(&pem::Pem::new("PUBLIC KEY", spki))),
            material: material.clone(),
        })
    }

    /// The secret or private key text (for the ring file and Centrifugo's HMAC key).
    pub fn material(&self) -> &Secret {
        &self.material
    }
}

fn header(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_string());
    h
}

fn key_algorithm(alg: Algorithm) -> KeyAlgorithm {
    match alg {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        Algorithm::HS384 => KeyAlgorithm::HS384,
        Algorithm::HS512 => KeyAlgorithm::HS512,
        _ => KeyAlgorithm::HS256,
    }
}

/// What a PKCS#8 document holds, for an error message.
fn describe_pkcs8(der: &[u8]) -> &'static str {
    if RsaKeyPair::from_pkcs8(der).is_ok() {
        "an RSA key"
    } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok() {
        "an EC P-256 key"
    } else if Ed25519KeyPair::from_pkcs8(der).is_ok() {
        "an Ed25519 key"
    } else {
        "a key of another type"
    }
}

/// Generates new key material for `alg`: 32 random bytes (base64url) for HMAC, else a PKCS#8
/// PEM private key from aws-lc-rs (RSA 2048, EC P-256, Ed25519).
pub fn generate(alg: Algorithm) -> Result<Secret, KeyError> {
    secrets::generate_key_material(alg)
        .map(Secret::new)
        .ok_or(KeyError::Generate {
            alg: algorithm_name(alg),
        })
}

/// Every key of one kind, ordered by `signs_from`.
#[derive(Debug)]
pub struct KeySet {
    pub kind: Kind,
    keys: Vec<Arc<Key>>,
}

impl KeySet {
    pub fn new(kind: Kind, mut keys: Vec<Arc<Key>>) -> KeySet {
        keys.sort_by_key(|k| (k.schedule.signs_from, k.schedule.created_at));
        KeySet { kind, keys }
    }

    /// The key that signs at `now`: the latest that has started and not stopped (a set always
    /// has one; should the schedule leave a gap, the latest started key).
    pub fn signing(&self, now: i64) -> &Arc<Key> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.schedule.signs_at(now))
            .or_else(|| {
                self.keys
                    .iter()
                    .rev()
                    .find(|k| k.schedule.signs_from <= now)
            })
            .unwrap_or(&self.keys[0])
    }

    /// The key `kid` names, while tokens it signed can still be valid.
    pub fn find(&self, kid: &str, now: i64) -> Option<&Arc<Key>> {
        self.keys
            .iter()
            .find(|k| k.kid == kid && k.schedule.valid_at(now))
    }

    /// Every key that still verifies at `now`, current first.
    pub fn verifying(&self, now: i64) -> impl Iterator<Item = &Arc<Key>> {
        let current = self.signing(now).clone();
        std::iter::once(self.signing(now)).chain(
            self.keys
                .iter()
                .rev()
                .filter(move |k| k.kid != current.kid && k.schedule.valid_at(now)),
        )
    }

    /// All keys (for `keys list`).
    pub fn all(&self) -> &[Arc<Key>] {
        &self.keys
    }

    /// The most recent HMAC key that stopped signing but still verifies, with the second it
    /// stops verifying: Centrifugo's `hmac_previous_secret_key(_valid_until)`.
    pub fn previous_hmac(&self, now: i64) -> Option<(&Arc<Key>, i64)> {
        let current = self.signing(now);
        self.keys
            .iter()
            .rev()
            .filter(|k| k.kid != current.kid && !is_asymmetric(k.alg))
            .filter(|k| k.schedule.signs_from <= now && k.schedule.valid_at(now))
            .find_map(|k| k.schedule.expires_at.map(|e| (k, e)))
    }

    /// The public JWKs to publish at `now`: current, next (created, not yet signing) and
    /// previous (stopped signing, tokens still valid).
    pub fn published(&self, now: i64) -> impl Iterator<Item = &Jwk> {
        self.keys
            .iter()
            .filter(move |k| k.schedule.valid_at(now))
            .filter_map(|k| k.jwk.as_ref())
    }

    /// How many keys the set holds (expired ones included until the next rotation drops them).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The keys of both kinds.
#[derive(Debug)]
pub struct KeyRing {
    pub rest: KeySet,
    pub ws: KeySet,
}

impl KeyRing {
    pub fn set(&self, kind: Kind) -> &KeySet {
        match kind {
            Kind::Rest => &self.rest,
            Kind::Ws => &self.ws,
        }
    }

    /// The configured keys only (no ring file): what runs until the first rotation.
    pub fn configured(tokens: &TokenConfig, secrets: &Secrets) -> Result<KeyRing, KeyError> {
        Ok(KeyRing {
            rest: KeySet::new(
                Kind::Rest,
                vec![Arc::new(configured_key(Kind::Rest, tokens, secrets)?)],
            ),
            ws: KeySet::new(
                Kind::Ws,
                vec![Arc::new(configured_key(Kind::Ws, tokens, secrets)?)],
            ),
        })
    }

    /// The configured keys, replaced kind by kind by the ring file's keys when it has some.
    pub fn load(config: &Config, secrets: &Secrets) -> Result<KeyRing, KeyError> {
        let path = ring_path(config);
        let file = read_ring(&path)?;
        Self::from_parts(&config.tokens, secrets, &path, file.as_ref())
    }

    fn from_parts(
        tokens: &TokenConfig,
        secrets: &Secrets,
        path: &Path,
        file: Option<&RingFile>,
    ) -> Result<KeyRing, KeyError> {
        let set = |kind: Kind, stored: Option<&Vec<StoredKey>>| -> Result<KeySet, KeyError> {
            match stored.filter(|s| !s.is_empty()) {
                Some(stored) => {
                    let keys = stored
                        .iter()
                        .map(|s| s.to_key(kind, path).map(Arc::new))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(KeySet::new(kind, keys))
                }
                None => Ok(KeySet::new(
                    kind,
                    vec![Arc::new(configured_key(kind, tokens, secrets)?)],
                )),
            }
        };
        Ok(KeyRing {
            rest: set(Kind::Rest, file.map(|f| &f.rest))?,
            ws: set(Kind::Ws, file.map(|f| &f.ws))?,
        })
    }

    /// The JWKS document at `now`: every published public key of both kinds.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let keys: Vec<&Jwk> = self
            .rest
            .published(now)
            .chain(self.ws.published(now))
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// The configured key of one kind, named by where it came from.
fn configured_key(kind: Kind, tokens: &TokenConfig, secrets: &Secrets) -> Result<Key, KeyError> {
    let (alg, material, name) = match kind {
        Kind::Rest => (tokens.rest_algorithm, &secrets.rest_key, "secrets.rest_key"),
        Kind::Ws => (
            tokens.ws_algorithm,
            &secrets.centrifugo_key,
            "secrets.centrifugo_key",
        ),
    };
    let name = format!(
        "{name} (for {} = {})",
        kind.algorithm_key(),
        algorithm_name(alg)
    );
    Key::parse(&name, alg, material, Schedule::CONFIGURED)
}

/// Where the key ring lives.
pub fn ring_path(config: &Config) -> PathBuf {
    config.data_dir.join(RING_FILE)
}

/// The key ring file as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RingFile {
    version: u32,
    #[serde(default)]
    rest: Vec<StoredKey>,
    #[serde(default)]
    ws: Vec<StoredKey>,
}

/// One key as stored in the ring file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kid: String,
    alg: String,
    /// The HMAC secret or the PKCS#8 PEM private key.
    material: String,
    #[serde(flatten)]
    schedule: Schedule,
}

impl StoredKey {
    fn of(key: &Key) -> StoredKey {
        StoredKey {
            kid: key.kid.clone(),
            alg: algorithm_name(key.alg).to_string(),
            material: key.material.expose().to_string(),
            schedule: key.schedule,
        }
    }

    fn to_key(&self, kind: Kind, path: &Path) -> Result<Key, KeyError> {
        let alg = parse_algorithm(&self.alg).ok_or_else(|| KeyError::RingAlgorithm {
            path: path.to_path_buf(),
            kid: self.kid.clone(),
            kind: kind.label(),
            alg: self.alg.clone(),
        })?;
        let name = format!(
            "key ring {} {} key {}",
            path.display(),
            kind.label(),
            self.kid
        );
        let key = Key::parse(
            &name,
            alg,
            &Secret::new(self.material.clone()),
            self.schedule,
        )?;
        if key.kid != self.kid {
            return Err(KeyError::RingKid {
                path: path.to_path_buf(),
                kid: self.kid.clone(),
                kind: kind.label(),
            });
        }
        Ok(key)
    }
}

fn read_ring(path: &Path) -> Result<Option<RingFile>, KeyError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = secrets::read_private_file(path).map_err(|source| KeyError::RingRead {
        path: path.to_path_buf(),
        source,
    })?;
    let ring: RingFile = serde_json::from_str(&text).map_err(|source| KeyError::RingParse {
        path: path.to_path_buf(),
        source,
    })?;
    if ring.version != RING_VERSION {
        return Err(KeyError::Refused(format!(
            "key ring {}: version {} is not the one this binary writes ({RING_VERSION}); upgrade chatsdk-auth",
            path.display(),
            ring.version
        )));
    }
    Ok(Some(ring))
}

/// One key as `keys list` and `GET /admin/keys` show it (never the private part).
#[derive(Debug, Serialize)]
pub struct KeyInfo {
    pub kind: &'static str,
    pub kid: String,
    pub alg: &'static str,
    /// `current`, `next` (published, not signing yet), `previous` (verifying until
    /// `expires_at`) or `expired`.
    pub state: &'static str,
    pub signs_from: i64,
    pub signs_until: Option<i64>,
    pub expires_at: Option<i64>,
    /// The public key (PEM, SPKI) of an asymmetric key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

impl KeyRing {
    /// Every key of both kinds with its state at `now`.
    pub fn list(&self, now: i64) -> Vec<KeyInfo> {
        [&self.rest, &self.ws]
            .into_iter()
            .flat_map(|set| {
                let current = set.signing(now).kid.clone();
                set.all().iter().map(move |k| {
                    let s = k.schedule;
                    let state = if k.kid == current {
                        "current"
                    } else if s.signs_from > now {
                        "next"
                    } else if s.valid_at(now) {
                        "previous"
                    } else {
                        "expired"
                    };
                    KeyInfo {
                        kind: set.kind.label(),
                        kid: k.kid.clone(),
                        alg: algorithm_name(k.alg),
                        state,
                        signs_from: s.signs_from,
                        signs_until: s.signs_until,
                        expires_at: s.expires_at,
                        public_key: k.public_pem.clone(),
                    }
                })
            })
            .collect()
    }
}

/// What a rotation did.
#[derive(Debug, Serialize)]
pub struct Rotation {
    #[serde(serialize_with = "kind_label")]
    pub kind: Kind,
    pub old_kid: String,
    pub new_kid: String,
    #[serde(serialize_with = "alg_label")]
    pub alg: Algorithm,
    /// When the new key starts signing.
    pub signs_from: i64,
    /// When the old key stops verifying (its last token has expired).
    pub old_expires_at: i64,
}

/// Rotates the key of `kind`: a new key of the configured algorithm is added to the ring file,
/// signing at once (HMAC) or after `tokens.jwks_publish_delay_seconds` (asymmetric: published as
/// "next" until then); the old key signs until the new one starts and verifies until the last
/// token it signed has expired. Keys whose tokens have all expired are dropped.
pub fn rotate(
    config: &Config,
    secrets: &Secrets,
    kind: Kind,
    now: i64,
) -> Result<Rotation, KeyError> {
    let path = ring_path(config);
    let file = read_ring(&path)?;
    let ring = KeyRing::from_parts(&config.tokens, secrets, &path, file.as_ref())?;
    let set = ring.set(kind);
    if let Some(pending) = set.all().iter().find(|k| k.schedule.signs_from > now) {
        return Err(KeyError::Refused(format!(
            "the {} key {} is still waiting to sign (from {}); rotate again after that",
            kind.label(),
            pending.kid,
            pending.schedule.signs_from
        )));
    }
    let alg = match kind {
        Kind::Rest => config.tokens.rest_algorithm,
        Kind::Ws => config.tokens.ws_algorithm,
    };
    if kind == Kind::Ws && !is_asymmetric(alg) {
        if let Some((prev, until)) = set.previous_hmac(now) {
            return Err(KeyError::Refused(format!(
                "the previous ws key {} still verifies until {until}, and Centrifugo accepts a single previous HMAC key (client.token.hmac_previous_secret_key); rotate again after that",
                prev.kid
            )));
        }
    }
    let delay = if is_asymmetric(alg) {
        config.tokens.jwks_publish_delay_seconds
    } else {
        0
    };
    // The old key's last token expires one lifetime of its kind after it stops signing.
    let ttl = match kind {
        Kind::Rest => config.tokens.ttl_seconds,
        Kind::Ws => config.tokens.ws_ttl_seconds,
    };
    let current = set.signing(now).clone();
    let switch = now + delay;
    let new_key = Key::parse(
        &format!("new {} key", kind.label()),
        alg,
        &generate(alg)?,
        Schedule {
            created_at: now,
            signs_from: switch,
            signs_until: None,
            expires_at: None,
        },
    )?;
    let mut stored: Vec<StoredKey> = set
        .all()
        .iter()
        .filter(|k| k.schedule.valid_at(now))
        .map(|k| {
            let mut s = StoredKey::of(k);
            if k.kid == current.kid {
                s.schedule.signs_until = Some(switch);
                s.schedule.expires_at = Some(switch + ttl);
            } else if s.schedule.signs_until.is_none() {
                // A key that was never the current one (should not happen): retire it too.
                s.schedule.signs_until = Some(now);
                s.schedule.expires_at = Some(now + ttl);
            }
            s
        })
        .collect();
    stored.push(StoredKey::of(&new_key));
    let mut out = file.unwrap_or(RingFile {
        version: RING_VERSION,
        ..RingFile::default()
    });
    // The other kind keeps what it has; a kind not in the file yet is seeded by its rotation.
    match kind {
        Kind::Rest => out.rest = stored,
        Kind::Ws => out.ws = stored,
    }
    write_ring(&path, &out)?;
    Ok(Rotation {
        kind,
        old_kid: current.kid.clone(),
        new_kid: new_key.kid.clone(),
        alg,
        signs_from: switch,
        old_expires_at: switch + ttl,
    })
}

fn kind_label<S: serde::Serializer>(k: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.label())
}

fn alg_label<S: serde::Serializer>(a: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(algorithm_name(*a))
}

/// Replaces the ring file atomically (a temp file, mode 0600, then rename), so a server that
/// reads it concurrently sees the old or the new file, never half of one.
fn write_ring(path: &Path, ring: &RingFile) -> Result<(), KeyError> {
    let err = |source| KeyError::RingWrite {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(ring).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    secrets::write_new(&tmp, &text).map_err(|e| err(std::io::Error::other(e)))?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Identity of the ring file as last read: changes when it is replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// The key ring the service runs on, replaced when the ring file changes.
pub struct LiveKeys {
    ring: RwLock<Arc<KeyRing>>,
    path: PathBuf,
    stamp: Mutex<Option<Stamp>>,
    /// What the configured keys are built from; `None` for a fixed ring.
    source: Option<(TokenConfig, Secrets)>,
}

impl LiveKeys {
    /// Loads the ring (configured keys and the ring file); any error stops startup.
    pub fn load(config: &Config, secrets: &Secrets) -> Result<LiveKeys, KeyError> {
        let path = ring_path(config);
        let before = stamp(&path);
        let ring = KeyRing::load(config, secrets)?;
        Ok(LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            path,
            stamp: Mutex::new(before),
            source: Some((config.tokens.clone(), secrets.clone())),
        })
    }

    /// A fixed ring (tests and benchmarks): never re-read.
    pub fn fixed(ring: KeyRing) -> LiveKeys {
        LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            path: PathBuf::new(),
            stamp: Mutex::new(None),
            source: None,
        }
    }

    /// The ring in effect.
    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the ring file when it changed since the last read. Returns true when a new
    /// ring was installed. A file that cannot be used keeps the ring in effect (logged).
    pub fn reload_if_changed(&self) -> bool {
        let Some((tokens, secrets)) = &self.source else {
            return false;
        };
        let now_stamp = stamp(&self.path);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *last == now_stamp {
                return false;
            }
            *last = now_stamp;
        }
        let file = match read_ring(&self.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain::Chain(&e), "key ring not reloaded; the keys in effect stay");
                return false;
            }
        };
        match KeyRing::from_parts(tokens, secrets, &self.path, file.as_ref()) {
            Ok(ring) => {
                tracing::info!(
                    rest_signing = %ring.rest.signing(crate::now_unix()).kid,
                    ws_signing = %ring.ws.signing(crate::now_unix()).kid,
                    "key ring reloaded"
                );
                *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
                true
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain::Chain(&e), "key ring not reloaded; the keys in effect stay");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(alg: Algorithm) -> Key {
        Key::parse("test", alg, &generate(alg).unwrap(), Schedule::CONFIGURED).unwrap()
    }

    #[test]
    fn every_algorithm_generates_parses_and_has_a_stable_kid() {
        for alg in [
            Algorithm::HS256,
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ] {
            let material = generate(alg).unwrap();
            let a = Key::parse("k", alg, &material, Schedule::CONFIGURED).unwrap();
            let b = Key::parse("k", alg, &material, Schedule::CONFIGURED).unwrap();
            assert_eq!(a.kid, b.kid, "{alg:?}");
            assert_eq!(a.header.kid.as_deref(), Some(a.kid.as_str()));
            assert_eq!(a.jwk.is_some(), is_asymmetric(alg));
            if let Some(jwk) = &a.jwk {
                // RFC 7638: the kid is the thumbprint of the public key alone.
                assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256), a.kid);
                assert_eq!(jwk.common.public_key_use, Some(PublicKeyUse::Signature));
                assert!(material
                    .expose()
                    .starts_with("-----BEGIN PRIVATE KEY-----\n"));
                assert!(!material.expose().contains('\r'), "LF line endings");
                let public = a.public_pem.as_deref().unwrap();
                assert!(
                    public.starts_with("-----BEGIN PUBLIC KEY-----\n") && !public.contains('\r')
                );
            }
            let token =
                jsonwebtoken::encode(&a.header, &serde_json::json!({"sub": "u"}), &a.encoding)
                    .unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.required_spec_claims.clear();
            v.validate_exp = false;
            jsonwebtoken::decode::<serde_json::Value>(&token, &a.decoding, &v).unwrap();
        }
    }

    #[test]
    fn a_key_that_does_not_fit_its_algorithm_is_named() {
        let rsa = generate(Algorithm::RS256).unwrap();
        let err = Key::parse(
            "secrets.ws_key",
            Algorithm::ES256,
            &rsa,
            Schedule::CONFIGURED,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("secrets.ws_key"), "{err}");
        assert!(err.contains("an RSA key") && err.contains("ES256"), "{err}");
        let hmac = generate(Algorithm::HS256).unwrap();
        let err = Key::parse("x", Algorithm::EdDSA, &hmac, Schedule::CONFIGURED)
            .unwrap_err()
            .to_string();
        assert!(err.contains("PKCS#8"), "{err}");
    }

    #[test]
    fn schedule_decides_signing_verifying_and_publication() {
        let mut old = key(Algorithm::ES256);
        old.schedule = Schedule {
            created_at: 0,
            signs_from: 0,
            signs_until: Some(100),
            expires_at: Some(200),
        };
        let mut new = key(Algorithm::ES256);
        new.schedule = Schedule {
            created_at: 50,
            signs_from: 100,
            signs_until: None,
            expires_at: None,
        };
        let (old_kid, new_kid) = (old.kid.clone(), new.kid.clone());
        let set = KeySet::new(Kind::Ws, vec![Arc::new(new), Arc::new(old)]);
        assert_eq!(set.signing(99).kid, old_kid);
        assert_eq!(set.signing(100).kid, new_kid);
        assert_eq!(set.published(60).count(), 2, "next is published early");
        assert!(set.find(&old_kid, 199).is_some());
        assert!(set.find(&old_kid, 200).is_none());
        assert_eq!(set.published(200).count(), 1);
        assert_eq!(set.verifying(150).count(), 2);
    }
}
