//! One signing key: its material (an HMAC secret or a PKCS#8 PEM private key) parsed for its
//! algorithm, its `kid`, header, public JWK and PEM, and new key material for a rotation.

use std::fmt;

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

use super::{algorithm_name, is_asymmetric, KeyError, Schedule};
use crate::secrets::{self, Secret};

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
