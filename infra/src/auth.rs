//! Bearer tokens: HS256 JWTs issued by booking-svc at log-in and verified by the
//! gateway (to answer 401 at the edge) and again by every service (so a token is the
//! only proof of identity, whoever calls). The role travels as an opaque string; each
//! service parses it into its own type.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The account id.
    pub sub: String,
    /// The account's role, e.g. "BUYER".
    pub role: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed authorization header")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
        }
    }

    /// Keys for a service that only verifies tokens and never issues one.
    pub fn verifier(secret: &str) -> Self {
        Self::new(secret, Duration::zero())
    }

    /// A token for `sub` with `role`, and when it expires.
    pub fn issue(&self, sub: &str, role: &str) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires = now + self.ttl;
        let claims = Claims {
            sub: sub.to_owned(),
            role: role.to_owned(),
            exp: expires.timestamp(),
            iat: now.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, expires))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    /// Verifies the value of an `authorization` header (`Bearer <token>`).
    pub fn verify_header(&self, value: Option<&str>) -> Result<Claims, TokenError> {
        let value = value.ok_or(TokenError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(TokenError::Malformed)?;
        self.verify(token.trim())
    }

    /// Reads and verifies the `authorization` entry of gRPC request metadata.
    pub fn verify_metadata(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Claims, TokenError> {
        let value = match metadata.get("authorization") {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| TokenError::Malformed)?),
        };
        self.verify_header(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies_and_forged_does_not() {
        let keys = TokenKeys::new("s3cret", Duration::minutes(5));
        let (token, _) = keys.issue("acc-1", "BUYER").unwrap();
        let claims = keys
            .verify_header(Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(claims.sub, "acc-1");
        assert_eq!(claims.role, "BUYER");

        let other = TokenKeys::new("another", Duration::minutes(5));
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        assert_eq!(keys.verify_header(Some(&token)), Err(TokenError::Malformed));
        assert_eq!(keys.verify_header(None), Err(TokenError::Missing));
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = TokenKeys::new("s3cret", Duration::seconds(-60));
        let (token, _) = keys.issue("acc-1", "BUYER").unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Expired));
    }
}
