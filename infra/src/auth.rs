//! Bearer tokens: HS256 JWTs issued by booking-svc at log-in and verified by the
//! gateway (to answer 401 at the edge) and again by every service (so a token is the
//! only proof of identity, whoever calls). The role travels as an opaque string; each
//! service parses it into its own type.
//!
//! Every token names its key in the header (`kid`) and carries an issuer (`iss`) and
//! an audience (`aud`); all three are required and checked. Tokens are signed with
//! the current key (`JWT_KEY_ID`, `JWT_SECRET`) and verified with it or with one of
//! the previous keys (`JWT_PREVIOUS_SECRETS`), so a secret can be rotated without
//! logging everyone out: start signing with a new `kid` and keep the old key as a
//! previous one until the tokens it signed have expired.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, DEV_MODE_VAR, Settings, parse_dev_mode};

/// The secret a service uses without `JWT_SECRET`, in development mode only.
pub const DEV_SECRET: &str = "marquee-dev-secret-change-me";
/// `JWT_KEY_ID` when unset.
pub const DEFAULT_KEY_ID: &str = "k1";
/// `JWT_ISSUER` and `JWT_AUDIENCE` when unset.
pub const DEFAULT_ISSUER: &str = "marquee";
pub const DEFAULT_AUDIENCE: &str = "marquee";

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
    /// Who issued the token (`JWT_ISSUER`).
    pub iss: String,
    /// Who the token is for (`JWT_AUDIENCE`).
    pub aud: String,
    /// Whether the session was created with the second factor (a TOTP or recovery
    /// code). Tokens issued before the claim existed have none: false.
    #[serde(default)]
    pub mfa: bool,
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

/// What a waiting room's admission token says: `sub` (the account) may hold seats of
/// `event` and check them out until `exp`, on the strength of ticket `ticket`. Signed
/// with the same keys as session tokens but for the audience `<JWT_AUDIENCE>:admission`,
/// so neither kind of token passes for the other.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdmissionClaims {
    pub sub: String,
    pub event: String,
    pub ticket: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub aud: String,
}

/// A verification-only key: a previous secret, still accepted under its `kid`.
#[derive(Clone)]
pub struct VerificationKey {
    pub key_id: String,
    pub secret: SecretString,
}

/// The token settings: the signing key, the previous keys still accepted, the issuer
/// and the audience. Secrets are `SecretString`s and `Debug` shows only key ids.
#[derive(Clone)]
pub struct JwtConfig {
    /// `JWT_KEY_ID`: the `kid` of tokens signed with `secret`.
    pub key_id: String,
    /// `JWT_SECRET`: signs new tokens (and verifies those with `key_id`).
    pub secret: SecretString,
    /// `JWT_PREVIOUS_SECRETS` (`kid:secret,kid2:secret2`): verify only.
    pub previous: Vec<VerificationKey>,
    /// `JWT_ISSUER`.
    pub issuer: String,
    /// `JWT_AUDIENCE`.
    pub audience: String,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(|k| k.key_id.as_str()).collect();
        f.debug_struct("JwtConfig")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .field("previous_key_ids", &previous)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl From<&str> for JwtConfig {
    fn from(secret: &str) -> Self {
        Self::new(secret)
    }
}

impl JwtConfig {
    /// One signing secret under the default key id, issuer and audience.
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            key_id: DEFAULT_KEY_ID.to_owned(),
            secret: SecretString::from(secret.into()),
            previous: Vec::new(),
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
        }
    }

    /// The same settings signing under another key id.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = key_id.into();
        self
    }

    /// The same settings also accepting tokens signed with `secret` under `key_id`.
    pub fn with_previous(mut self, key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.previous.push(VerificationKey {
            key_id: key_id.into(),
            secret: SecretString::from(secret.into()),
        });
        self
    }

    /// The token keys from `env`; a problem is recorded there (and the keys returned are
    /// then unusable, but [`Settings::finish`] refuses to go on).
    pub fn from_settings(env: &mut Settings) -> Self {
        match Self::from_lookup(|name| env.lookup(name)) {
            Ok(jwt) => jwt,
            Err(error) => {
                env.record(error);
                Self::new(String::new())
            }
        }
    }

    /// From `JWT_SECRET`, `JWT_KEY_ID`, `JWT_PREVIOUS_SECRETS`, `JWT_ISSUER` and
    /// `JWT_AUDIENCE`, read through `get`. Without `JWT_SECRET` this fails, naming it,
    /// unless `MARQUEE_DEV` turns on development mode, which uses [`DEV_SECRET`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let dev = parse_dev_mode(get(DEV_MODE_VAR).as_deref())?;
        let secret = match set("JWT_SECRET") {
            Some(secret) => secret,
            None if dev => {
                tracing::warn!(
                    "jwt_secret is unset: development mode signs tokens with the public development secret"
                );
                DEV_SECRET.to_owned()
            }
            None => {
                return Err(ConfigError::Missing {
                    name: "JWT_SECRET".to_owned(),
                    reason: format!(
                        "set it to the token signing secret (or {DEV_MODE_VAR}=1 to run in \
                         development mode with a built-in secret)"
                    ),
                });
            }
        };
        let key_id =
            set("JWT_KEY_ID").map_or_else(|| DEFAULT_KEY_ID.to_owned(), |k| k.trim().to_owned());
        let mut config = Self::new(secret).with_key_id(key_id);
        if let Some(previous) = set("JWT_PREVIOUS_SECRETS") {
            config.previous = parse_previous(&previous, &config.key_id)?;
        }
        if let Some(issuer) = set("JWT_ISSUER") {
            config.issuer = issuer.trim().to_owned();
        }
        if let Some(audience) = set("JWT_AUDIENCE") {
            config.audience = audience.trim().to_owned();
        }
        Ok(config)
    }
}

/// `kid:secret,kid2:secret2`; a secret may contain `:` but not `,`. The error names
/// the entry by position, never by content.
fn parse_previous(value: &str, current: &str) -> Result<Vec<VerificationKey>, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidSecret {
        name: "JWT_PREVIOUS_SECRETS".to_owned(),
        reason,
    };
    let mut keys: Vec<VerificationKey> = Vec::new();
    for (n, entry) in value
        .split(',')
        .enumerate()
        .filter(|(_, e)| !e.trim().is_empty())
    {
        let position = n + 1;
        let Some((key_id, secret)) = entry.trim().split_once(':') else {
            return Err(invalid(format!("entry {position} is not kid:secret")));
        };
        let key_id = key_id.trim();
        if key_id.is_empty() || secret.is_empty() {
            return Err(invalid(format!(
                "entry {position} has an empty kid or secret"
            )));
        }
        if key_id == current || keys.iter().any(|k| k.key_id == key_id) {
            return Err(invalid(format!(
                "entry {position} repeats the key id {key_id:?} (JWT_KEY_ID or an earlier entry)"
            )));
        }
        keys.push(VerificationKey {
            key_id: key_id.to_owned(),
            secret: SecretString::from(secret.to_owned()),
        });
    }
    Ok(keys)
}

/// Signs with the current key and verifies with the key the token's `kid` names.
#[derive(Clone)]
pub struct TokenKeys {
    key_id: String,
    encoding: EncodingKey,
    decoding: Arc<HashMap<String, DecodingKey>>,
    validation: Validation,
    /// Like `validation`, for admission tokens' audience.
    admission: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from the token settings; issued tokens live `ttl`.
    pub fn from_config(config: &JwtConfig, ttl: Duration) -> Self {
        let mut decoding = HashMap::new();
        for key in &config.previous {
            decoding.insert(
                key.key_id.clone(),
                DecodingKey::from_secret(key.secret.expose_secret().as_bytes()),
            );
        }
        let current = config.secret.expose_secret().as_bytes();
        decoding.insert(config.key_id.clone(), DecodingKey::from_secret(current));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        let mut admission = validation.clone();
        admission.set_audience(&[admission_audience(&config.audience)]);
        admission.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            key_id: config.key_id.clone(),
            encoding: EncodingKey::from_secret(current),
            decoding: Arc::new(decoding),
            validation,
            admission,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl,
        }
    }

    /// Keys for a service that only verifies tokens and never issues one.
    pub fn verifier(config: &JwtConfig) -> Self {
        Self::from_config(config, Duration::zero())
    }

    /// Keys with one secret under the default key id, issuer and audience (what the
    /// tests' and benchmarks' services use).
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self::from_config(&JwtConfig::new(secret), ttl)
    }

    /// A token for `sub` with `role`, and when it expires; a session without the
    /// second factor.
    pub fn issue(&self, sub: &str, role: &str) -> anyhow::Result<(String, DateTime<Utc>)> {
        self.issue_session(sub, role, false)
    }

    /// A token for `sub` with `role`, saying whether the session was created with the
    /// second factor (`mfa`), and when it expires.
    pub fn issue_session(
        &self,
        sub: &str,
        role: &str,
        mfa: bool,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires = now + self.ttl;
        let claims = Claims {
            sub: sub.to_owned(),
            role: role.to_owned(),
            exp: expires.timestamp(),
            iat: now.timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            mfa,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        Ok((token, expires))
    }

    /// Verifies with the key the header's `kid` names; a token without a `kid`, or
    /// naming a key this service does not have, is invalid.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let key = header
            .kid
            .and_then(|kid| self.decoding.get(&kid))
            .ok_or(TokenError::Invalid)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    /// An admission token for `account` to `event` through `ticket`, valid until
    /// `expires` (whole seconds).
    pub fn issue_admission(
        &self,
        account: &str,
        event: &str,
        ticket: &str,
        expires: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let claims = AdmissionClaims {
            sub: account.to_owned(),
            event: event.to_owned(),
            ticket: ticket.to_owned(),
            exp: expires.timestamp(),
            iat: Utc::now().timestamp(),
            iss: self.issuer.clone(),
            aud: admission_audience(&self.audience),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.key_id.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// Verifies an admission token: signature, `kid`, issuer, audience and expiry (no
    /// leeway beyond the session tokens' few seconds).
    pub fn verify_admission(&self, token: &str) -> Result<AdmissionClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let key = header
            .kid
            .and_then(|kid| self.decoding.get(&kid))
            .ok_or(TokenError::Invalid)?;
        jsonwebtoken::decode::<AdmissionClaims>(token, key, &self.admission)
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

/// The audience of admission tokens, derived from the session tokens' one.
fn admission_audience(audience: &str) -> String {
    format!("{audience}:admission")
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
    fn the_second_factor_claim_round_trips_and_old_tokens_have_none() {
        let keys = TokenKeys::new("s3cret", Duration::minutes(5));
        let (with, _) = keys.issue_session("acc-1", "SELLER", true).unwrap();
        assert!(keys.verify(&with).unwrap().mfa);
        let (without, _) = keys.issue("acc-1", "SELLER").unwrap();
        assert!(!keys.verify(&without).unwrap().mfa);
        // A token issued before the claim existed: no `mfa` at all, still valid.
        let now = Utc::now().timestamp();
        let old = serde_json::json!({
            "sub": "acc-1", "role": "SELLER", "exp": now + 300, "iat": now,
            "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE,
        });
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(DEFAULT_KEY_ID.to_owned());
        let old =
            jsonwebtoken::encode(&header, &old, &EncodingKey::from_secret(b"s3cret")).unwrap();
        let claims = keys.verify(&old).unwrap();
        assert_eq!(claims.sub, "acc-1");
        assert!(!claims.mfa);
    }

    #[test]
    fn admission_and_session_tokens_do_not_pass_for_each_other() {
        let keys = TokenKeys::new("s3cret", Duration::minutes(5));
        let expires = Utc::now() + Duration::minutes(10);
        let admission = keys
            .issue_admission("acc-1", "ev-1", "t-1", expires)
            .unwrap();
        let claims = keys.verify_admission(&admission).unwrap();
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.event.as_str(),
                claims.ticket.as_str()
            ),
            ("acc-1", "ev-1", "t-1")
        );
        assert_eq!(claims.exp, expires.timestamp());
        assert_eq!(keys.verify(&admission), Err(TokenError::Invalid));
        let (session, _) = keys.issue("acc-1", "BUYER").unwrap();
        assert_eq!(keys.verify_admission(&session), Err(TokenError::Invalid));
        let other = TokenKeys::new("another", Duration::minutes(5));
        assert_eq!(other.verify_admission(&admission), Err(TokenError::Invalid));
        let stale = keys
            .issue_admission("acc-1", "ev-1", "t-1", Utc::now() - Duration::minutes(1))
            .unwrap();
        assert_eq!(keys.verify_admission(&stale), Err(TokenError::Expired));
        // One changed character of the payload breaks the signature.
        let mut parts: Vec<String> = admission.split('.').map(str::to_owned).collect();
        let payload = parts[1].clone();
        let flipped = if payload.ends_with('A') { 'B' } else { 'A' };
        parts[1] = format!("{}{flipped}", &payload[..payload.len() - 1]);
        assert_eq!(
            keys.verify_admission(&parts.join(".")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = TokenKeys::new("s3cret", Duration::seconds(-60));
        let (token, _) = keys.issue("acc-1", "BUYER").unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Expired));
    }

    /// A token with these claims and header `kid`, signed with `secret`.
    fn forged(secret: &str, kid: Option<&str>, iss: &str, aud: &str) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: "acc-1".into(),
            role: "BUYER".into(),
            exp: now + 300,
            iat: now,
            iss: iss.into(),
            aud: aud.into(),
            mfa: false,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn a_token_signed_with_the_old_key_still_verifies_after_a_rotation() {
        let before = JwtConfig::new("old-secret").with_key_id("k1");
        let (old_token, _) = TokenKeys::from_config(&before, Duration::minutes(5))
            .issue("acc-1", "BUYER")
            .unwrap();

        let after = JwtConfig::new("new-secret")
            .with_key_id("k2")
            .with_previous("k1", "old-secret");
        let keys = TokenKeys::from_config(&after, Duration::minutes(5));
        assert_eq!(keys.verify(&old_token).unwrap().sub, "acc-1");
        // New tokens are signed with the new key, under its kid.
        let (new_token, _) = keys.issue("acc-2", "BUYER").unwrap();
        let header = jsonwebtoken::decode_header(&new_token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k2"));
        assert_eq!(keys.verify(&new_token).unwrap().sub, "acc-2");
        // A service not yet rotated refuses the new kid rather than guessing a key.
        let stale = TokenKeys::verifier(&before);
        assert_eq!(stale.verify(&new_token), Err(TokenError::Invalid));
        // Once the old key is dropped, its tokens are refused.
        let dropped = TokenKeys::verifier(&JwtConfig::new("new-secret").with_key_id("k2"));
        assert_eq!(dropped.verify(&old_token), Err(TokenError::Invalid));
    }

    #[test]
    fn the_kid_selects_the_key_and_one_key_cannot_pass_for_another() {
        let config = JwtConfig::new("new-secret")
            .with_key_id("k2")
            .with_previous("k1", "old-secret");
        let keys = TokenKeys::verifier(&config);
        let m = DEFAULT_AUDIENCE;
        assert!(keys.verify(&forged("old-secret", Some("k1"), m, m)).is_ok());
        assert_eq!(
            keys.verify(&forged("old-secret", Some("k2"), m, m)),
            Err(TokenError::Invalid),
            "old secret under the new kid"
        );
        assert_eq!(
            keys.verify(&forged("new-secret", None, m, m)),
            Err(TokenError::Invalid),
            "no kid"
        );
        assert_eq!(
            keys.verify(&forged("new-secret", Some("k3"), m, m)),
            Err(TokenError::Invalid),
            "unknown kid"
        );
    }

    #[test]
    fn a_token_for_another_audience_or_from_another_issuer_is_refused() {
        let keys = TokenKeys::verifier(&JwtConfig::new("s3cret"));
        let (iss, aud) = (DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        assert!(keys.verify(&forged("s3cret", Some("k1"), iss, aud)).is_ok());
        assert_eq!(
            keys.verify(&forged("s3cret", Some("k1"), iss, "another-app")),
            Err(TokenError::Invalid),
            "wrong aud"
        );
        assert_eq!(
            keys.verify(&forged("s3cret", Some("k1"), "someone-else", aud)),
            Err(TokenError::Invalid),
            "wrong iss"
        );
        // A token made for another audience by a differently configured issuer.
        let mut other = JwtConfig::new("s3cret");
        other.audience = "admin-console".into();
        let (token, _) = TokenKeys::from_config(&other, Duration::minutes(5))
            .issue("acc-1", "ADMIN")
            .unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn without_jwt_secret_only_development_mode_starts() {
        let error = JwtConfig::from_lookup(env(&[])).unwrap_err().to_string();
        assert!(error.contains("JWT_SECRET"), "{error}");
        assert!(error.contains("MARQUEE_DEV"), "{error}");
        let error = JwtConfig::from_lookup(env(&[("JWT_SECRET", "  "), ("MARQUEE_DEV", "0")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("JWT_SECRET"), "blank is unset: {error}");

        let dev = JwtConfig::from_lookup(env(&[("MARQUEE_DEV", "1")])).unwrap();
        assert_eq!(dev.secret.expose_secret(), DEV_SECRET);
        assert_eq!(dev.key_id, DEFAULT_KEY_ID);
        assert_eq!(
            (dev.issuer.as_str(), dev.audience.as_str()),
            ("marquee", "marquee")
        );
    }

    #[test]
    fn the_env_names_the_key_the_previous_keys_issuer_and_audience() {
        let config = JwtConfig::from_lookup(env(&[
            ("JWT_SECRET", "now"),
            ("JWT_KEY_ID", "2025-06"),
            (
                "JWT_PREVIOUS_SECRETS",
                "2025-01:before:with:colons, 2024-07:long-ago",
            ),
            ("JWT_ISSUER", "marquee-auth"),
            ("JWT_AUDIENCE", "marquee-api"),
        ]))
        .unwrap();
        assert_eq!(config.key_id, "2025-06");
        let previous: Vec<(&str, &str)> = config
            .previous
            .iter()
            .map(|k| (k.key_id.as_str(), k.secret.expose_secret()))
            .collect();
        assert_eq!(
            previous,
            [("2025-01", "before:with:colons"), ("2024-07", "long-ago")]
        );
        assert_eq!(config.issuer, "marquee-auth");
        assert_eq!(config.audience, "marquee-api");
    }

    #[test]
    fn a_malformed_previous_key_is_an_error_that_does_not_show_the_secret() {
        for (value, what) in [
            ("no-colon-secret-xyz", "not kid:secret"),
            (":secret-xyz", "empty kid"),
            ("k0:", "empty secret"),
            ("k1:secret-xyz", "the current kid"),
            ("k0:secret-xyz,k0:secret-xyz", "a repeated kid"),
        ] {
            let error = JwtConfig::from_lookup(env(&[
                ("JWT_SECRET", "now"),
                ("JWT_PREVIOUS_SECRETS", value),
            ]))
            .unwrap_err()
            .to_string();
            assert!(error.contains("JWT_PREVIOUS_SECRETS"), "{what}: {error}");
            assert!(
                !error.contains("secret-xyz"),
                "{what} shows the secret: {error}"
            );
        }
    }

    #[test]
    fn debug_shows_key_ids_but_no_secret() {
        let config =
            JwtConfig::new("current-secret-value").with_previous("k0", "older-secret-value");
        let shown = format!("{config:?} {:?}", TokenKeys::verifier(&config));
        assert!(!shown.contains("current-secret-value"), "{shown}");
        assert!(!shown.contains("older-secret-value"), "{shown}");
        assert!(shown.contains("k0") && shown.contains("k1"), "{shown}");
    }
}
