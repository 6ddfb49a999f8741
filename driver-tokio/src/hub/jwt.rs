//! Signed tokens for the hub: `jsonwebtoken` checks the signature, the algorithm and `exp`
//! against this machine's clock, and reads `sub`, `exp` and the optional `projects` claim into
//! the core's `Claims` (what the hub then does with them is the core's decision).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sockline_core::hub::{Claims, SecretSource, TokenError, TokenVerifier};

/// The shortest HS256 secret accepted: a shorter one can be brute-forced from one token.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtKeyError {
    /// An HS256 secret shorter than [`MIN_SECRET_BYTES`].
    #[error("an HS256 secret must be at least {MIN_SECRET_BYTES} bytes, this one is {0}")]
    ShortSecret(usize),
    /// A secret the crypto backend refuses.
    #[error("the HS256 secret cannot be used: {0}")]
    BadSecret(String),
    /// Neither an RSA nor a P-256 public key in PEM.
    #[error("not an RSA or EC (P-256) public key in PEM: {0}")]
    BadPublicKey(String),
}

/// Verifies the hub's tokens: HS256 with a shared secret, or RS256/ES256 with a public key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

/// The claims read; required ones are optional here so that a missing one is named as such.
#[derive(Deserialize)]
struct Payload {
    sub: Option<String>,
    exp: Option<u64>,
    #[serde(default)]
    projects: Option<Vec<u64>>,
}

impl JwtVerifier {
    /// HS256 tokens signed with `secret` (a trailing newline, as `echo` leaves in a file, is not
    /// part of it).
    pub fn hs256(secret: &[u8]) -> Result<JwtVerifier, JwtKeyError> {
        let secret = secret.strip_suffix(b"\n").unwrap_or(secret);
        let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
        if secret.len() < MIN_SECRET_BYTES {
            return Err(JwtKeyError::ShortSecret(secret.len()));
        }
        let key =
            DecodingKey::from_secret(secret).map_err(|e| JwtKeyError::BadSecret(e.to_string()))?;
        Ok(JwtVerifier::with(key, Algorithm::HS256))
    }

    /// RS256 tokens (an RSA public key) or ES256 tokens (a P-256 public key), in PEM.
    pub fn public_key_pem(pem: &[u8]) -> Result<JwtVerifier, JwtKeyError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(JwtVerifier::with(key, Algorithm::RS256));
        }
        DecodingKey::from_ec_pem(pem)
            .map(|key| JwtVerifier::with(key, Algorithm::ES256))
            .map_err(|e| JwtKeyError::BadPublicKey(e.to_string()))
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> JwtVerifier {
        // One algorithm only (no confusion between a public key and an HMAC secret), `exp`
        // and `sub` required, no leeway: the hub's own clock decides.
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        validation.validate_aud = false;
        JwtVerifier { key, validation }
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Payload>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm(e.to_string())
                }
                ErrorKind::MissingRequiredClaim(c) if c == "exp" => TokenError::MissingClaim("exp"),
                ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim("sub"),
                _ => TokenError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        let exp = claims.exp.ok_or(TokenError::MissingClaim("exp"))?;
        let sub = claims.sub.ok_or(TokenError::MissingClaim("sub"))?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let exp_ms = exp.saturating_mul(1000);
        if exp_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(Claims {
            sub,
            expires_in_ms: exp_ms - now_ms,
            projects: claims.projects.map(BTreeSet::from_iter),
        })
    }
}

/// The operating system's CSPRNG, for the hub's session ids.
#[derive(Debug, Default)]
pub struct OsSecrets;

impl SecretSource for OsSecrets {
    fn fill(&mut self, buf: &mut [u8]) {
        // The OS source failing is a broken machine: no session id may come from anything
        // weaker, so the hub stops rather than hand out guessable ones.
        getrandom::fill(buf).expect("the operating system's random source failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a secret of at least thirty-two bytes!";

    fn now_s() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_good_token_gives_its_claims_and_forgeries_are_refused_by_kind() {
        let v = JwtVerifier::hs256(SECRET).unwrap();
        let good = hs(
            json!({"sub": "ann", "exp": now_s() + 600, "projects": [1, 2]}),
            SECRET,
        );
        let c = v.verify(&good).unwrap();
        assert_eq!(c.sub, "ann");
        assert!(
            (590_000..=600_000).contains(&c.expires_in_ms),
            "{}",
            c.expires_in_ms
        );
        assert_eq!(c.projects, Some(BTreeSet::from([1, 2])));

        let wrong_key = hs(
            json!({"sub": "ann", "exp": now_s() + 600}),
            b"another secret, also thirty-two bytes",
        );
        assert_eq!(v.verify(&wrong_key), Err(TokenError::BadSignature));
        let expired = hs(json!({"sub": "ann", "exp": now_s() - 1}), SECRET);
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
        let no_exp = hs(json!({"sub": "ann"}), SECRET);
        assert_eq!(v.verify(&no_exp), Err(TokenError::MissingClaim("exp")));
        let no_sub = hs(json!({"exp": now_s() + 600}), SECRET);
        assert_eq!(v.verify(&no_sub), Err(TokenError::MissingClaim("sub")));

        // The payload changed after signing (eve for ann): the signature no longer matches.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = good.split('.').collect();
        let eve = b64.encode(json!({"sub": "eve", "exp": now_s() + 600}).to_string());
        let tampered = format!("{}.{eve}.{}", parts[0], parts[2]);
        assert_eq!(v.verify(&tampered), Err(TokenError::BadSignature));

        // `alg: none`, unsigned.
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(json!({"sub": "eve", "exp": now_s() + 600}).to_string())
        );
        assert!(v.verify(&none).is_err(), "alg none is refused");
        assert!(matches!(
            v.verify("not a token"),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn short_secrets_are_refused_and_a_trailing_newline_is_not_part_of_one() {
        assert!(matches!(
            JwtVerifier::hs256(b"short"),
            Err(JwtKeyError::ShortSecret(5))
        ));
        let mut file = SECRET.to_vec();
        file.push(b'\n');
        let v = JwtVerifier::hs256(&file).unwrap();
        let token = hs(json!({"sub": "ann", "exp": now_s() + 60}), SECRET);
        assert!(v.verify(&token).is_ok());
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key_and_an_hs256_one_is_refused() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let v = JwtVerifier::public_key_pem(pair.public_key_pem().as_bytes()).unwrap();
        let private = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let claims = json!({"sub": "ann", "exp": now_s() + 600});
        let token = encode(&Header::new(Algorithm::ES256), &claims, &private).unwrap();
        assert_eq!(v.verify(&token).unwrap().sub, "ann");
        // Signed with HMAC using the public key's text as the secret (algorithm confusion).
        let confused = hs(claims, pair.public_key_pem().as_bytes());
        assert!(v.verify(&confused).is_err());
        assert!(JwtVerifier::public_key_pem(b"-----BEGIN NOTHING-----").is_err());
    }

    #[test]
    fn os_secrets_differ() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        OsSecrets.fill(&mut a);
        OsSecrets.fill(&mut b);
        assert_ne!(a, b);
    }
}
