//! Two-factor sign-in with TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, the
//! current step and one step of clock skew either way, nothing further): enrolment
//! (a pending secret, replaced by enrolling again until it is confirmed), confirmation
//! with a first code (which answers ten recovery codes, stored as SHA-256 hashes), and
//! the second factor of a log-in.
//!
//! Every log-in of an account with a confirmed authenticator runs in one transaction
//! holding its `account_two_factor` row (`FOR UPDATE`), so concurrent attempts are
//! counted one after the other: [`MAX_FAILURES`] consecutive wrong codes lock the
//! account for the configured lockout however many arrive at once. A code is
//! single-use: the step it matched must be after the last accepted one (`last_step`);
//! a replayed code is refused like a wrong one and counts as a failure. A recovery
//! code is used by an `UPDATE … WHERE used_at IS NULL`, so it logs in once even when
//! sent twice at the same moment; it also unlocks a locked account.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::domain::{Account, AccountId, RecoveryCode, SecondFactor, TotpCode};
use crate::entity::{account_two_factor, recovery_codes};
use crate::error::BookingError;

/// Consecutive wrong codes that lock an account.
pub const MAX_FAILURES: u32 = 5;
/// Recovery codes made at the confirmation.
pub const RECOVERY_CODES: usize = 10;
/// The issuer authenticator apps show (and the otpauth label's prefix).
pub const ISSUER: &str = "Marquee";
/// Seconds per TOTP step.
pub const STEP_SECONDS: u64 = 30;
/// Bytes of a new secret (160 bits, as RFC 4226 recommends for HMAC-SHA1).
const SECRET_BYTES: usize = 20;

/// How log-ins with a second factor are policed.
#[derive(Debug, Clone, Copy)]
pub struct TwoFactorPolicy {
    /// `TWO_FACTOR_LOCKOUT_SECS`: how long [`MAX_FAILURES`] wrong codes lock an account.
    pub lockout: Duration,
}

/// A pending authenticator: what the user's app needs.
pub struct Enrollment {
    /// Base32 (RFC 4648, no padding).
    pub secret: String,
    /// `otpauth://totp/Marquee:<email>?secret=…&issuer=Marquee&algorithm=SHA1&digits=6&period=30`.
    pub uri: String,
}

/// Never shows the secret.
impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrollment(..)")
    }
}

/// A confirmed authenticator: the recovery codes, shown once.
pub struct Confirmation {
    pub recovery_codes: Vec<RecoveryCode>,
    pub confirmed_at: DateTime<Utc>,
}

/// The TOTP of `secret` (base32) with Marquee's parameters.
fn totp(secret: &str) -> Result<Totp, BookingError> {
    let bytes = Secret::try_from_base32(secret)
        .map_err(|_| BookingError::Internal("stored two-factor secret is not base32".into()))?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(bytes)
        .build()
        .map_err(|e| BookingError::Internal(format!("two-factor secret: {e}")))
}

/// The step `code` matches at `now` (within one step either way), if any.
fn matching_step(
    secret: &str,
    code: &TotpCode,
    now: DateTime<Utc>,
) -> Result<Option<i64>, BookingError> {
    let time = u64::try_from(now.timestamp()).unwrap_or(0);
    Ok(totp(secret)?
        .check(code.expose(), time)
        .and_then(|step| i64::try_from(step).ok()))
}

/// The otpauth URI of `secret` for the account `email` (label and issuer
/// percent-encoded; every parameter explicit, as some apps need).
fn otpauth_uri(email: &str, secret: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'@');
    format!(
        "otpauth://totp/{issuer}:{email}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
        issuer = utf8_percent_encode(ISSUER, SET),
        email = utf8_percent_encode(email, SET),
    )
}

/// What is stored of a recovery code: lowercase hex SHA-256 of its canonical form.
/// The codes carry 80 random bits, so a fast hash is enough.
fn recovery_hash(code: &RecoveryCode) -> String {
    Sha256::digest(code.canonical().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh secret for `account`, replacing a pending one; ALREADY_EXISTS once an
/// authenticator is confirmed (changing it is not supported).
pub async fn enroll(
    pool: &DatabaseConnection,
    account: &Account,
) -> Result<Enrollment, BookingError> {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    let secret = Secret::from(bytes.to_vec()).to_base32();
    // One statement: a pending row is replaced, a confirmed one is left alone (and
    // nothing is written: 0 rows).
    let written = account_two_factor::Entity::insert(account_two_factor::ActiveModel {
        account_id: Set(account.id.0),
        secret: Set(secret.clone()),
        enrolled_at: Set(Utc::now()),
        confirmed_at: Set(None),
        last_step: Set(None),
        failed_attempts: Set(0),
        locked_until: Set(None),
    })
    .on_conflict(
        OnConflict::column(account_two_factor::Column::AccountId)
            .update_columns([
                account_two_factor::Column::Secret,
                account_two_factor::Column::EnrolledAt,
                account_two_factor::Column::LastStep,
                account_two_factor::Column::FailedAttempts,
                account_two_factor::Column::LockedUntil,
            ])
            .action_and_where(sea_orm::ExprTrait::is_null(Expr::col((
                account_two_factor::Entity,
                account_two_factor::Column::ConfirmedAt,
            ))))
            .to_owned(),
    )
    .exec_without_returning(pool)
    .await?;
    if written == 0 {
        return Err(BookingError::AlreadyExists(
            "two-factor sign-in is already confirmed for this account; changing the authenticator is not supported",
        ));
    }
    tracing::info!(account_id = %account.id, "two-factor enrolment started");
    Ok(Enrollment {
        uri: otpauth_uri(&account.email, &secret),
        secret,
    })
}

/// The account's two-factor row, locked for this transaction.
async fn locked_row(
    tx: &DatabaseTransaction,
    account: AccountId,
) -> Result<Option<account_two_factor::Model>, BookingError> {
    Ok(account_two_factor::Entity::find_by_id(account.0)
        .lock_exclusive()
        .one(tx)
        .await?)
}

/// Confirms the pending authenticator with `code`; answers the recovery codes. A code
/// that does not match changes nothing (INVALID_ARGUMENT on `code`).
pub async fn confirm(
    pool: &DatabaseConnection,
    account: AccountId,
    code: &TotpCode,
    now: DateTime<Utc>,
) -> Result<Confirmation, BookingError> {
    let tx = pool.begin().await?;
    let Some(row) = locked_row(&tx, account).await? else {
        return Err(BookingError::FailedPrecondition(
            "no two-factor enrolment to confirm: enroll first (POST /v1/me/two-factor)".into(),
        ));
    };
    if row.confirmed_at.is_some() {
        return Err(BookingError::AlreadyExists(
            "two-factor sign-in is already confirmed for this account",
        ));
    }
    let Some(step) = matching_step(&row.secret, code, now)? else {
        return Err(BookingError::invalid(
            "code",
            "does not match the authenticator: enter its current code (and check the device's clock)",
        ));
    };
    account_two_factor::Entity::update_many()
        .col_expr(account_two_factor::Column::ConfirmedAt, Expr::value(now))
        .col_expr(account_two_factor::Column::LastStep, Expr::value(step))
        .col_expr(account_two_factor::Column::FailedAttempts, Expr::value(0))
        .filter(account_two_factor::Column::AccountId.eq(account.0))
        .exec(&tx)
        .await?;
    let codes: Vec<RecoveryCode> = (0..RECOVERY_CODES)
        .map(|_| RecoveryCode::generate())
        .collect();
    recovery_codes::Entity::delete_many()
        .filter(recovery_codes::Column::AccountId.eq(account.0))
        .exec(&tx)
        .await?;
    recovery_codes::Entity::insert_many(codes.iter().map(|code| recovery_codes::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        account_id: Set(account.0),
        code_hash: Set(recovery_hash(code)),
        created_at: NotSet,
        used_at: Set(None),
    }))
    .exec_without_returning(&tx)
    .await?;
    tx.commit().await?;
    tracing::info!(account_id = %account, "two-factor sign-in confirmed");
    Ok(Confirmation {
        recovery_codes: codes,
        confirmed_at: now,
    })
}

/// Uses `code` if it is one of the account's unused recovery codes: the guard
/// `used_at IS NULL` makes a second use, even a concurrent one, update nothing.
async fn use_recovery_code(
    tx: &DatabaseTransaction,
    account: AccountId,
    code: &RecoveryCode,
    now: DateTime<Utc>,
) -> Result<bool, BookingError> {
    let used = recovery_codes::Entity::update_many()
        .col_expr(recovery_codes::Column::UsedAt, Expr::value(now))
        .filter(recovery_codes::Column::AccountId.eq(account.0))
        .filter(recovery_codes::Column::CodeHash.eq(recovery_hash(code)))
        .filter(recovery_codes::Column::UsedAt.is_null())
        .exec(tx)
        .await?;
    Ok(used.rows_affected == 1)
}

/// Writes the outcome of an attempt: the failure count, the lock and the last step.
async fn record(
    tx: &DatabaseTransaction,
    account: AccountId,
    failed: u32,
    locked_until: Option<DateTime<Utc>>,
    last_step: Option<i64>,
) -> Result<(), BookingError> {
    account_two_factor::Entity::update_many()
        .col_expr(
            account_two_factor::Column::FailedAttempts,
            Expr::value(i32::try_from(failed).unwrap_or(i32::MAX)),
        )
        .col_expr(
            account_two_factor::Column::LockedUntil,
            Expr::value(locked_until),
        )
        .col_expr(account_two_factor::Column::LastStep, Expr::value(last_step))
        .filter(account_two_factor::Column::AccountId.eq(account.0))
        .exec(tx)
        .await?;
    Ok(())
}

/// The second factor of a log-in whose password was right: whether the session is
/// created with it (`true`), or why not. An account without a confirmed
/// authenticator logs in without (`false`), and refuses a code (FAILED_PRECONDITION).
///
/// With one: no code → [`BookingError::TwoFactorCodeMissing`]; a wrong, replayed or
/// out-of-window code (or an unknown recovery code) counts a failure and answers
/// [`BookingError::TwoFactorCodeInvalid`], the [`MAX_FAILURES`]th locks the account
/// and answers [`BookingError::AccountLocked`], as does every attempt while it is
/// locked, even with a right code; a valid recovery code logs in always, unlocking the
/// account. When a lock has expired the count starts again from zero.
pub async fn second_factor(
    pool: &DatabaseConnection,
    account: AccountId,
    factor: &SecondFactor,
    policy: TwoFactorPolicy,
    now: DateTime<Utc>,
) -> Result<bool, BookingError> {
    let tx = pool.begin().await?;
    let row = locked_row(&tx, account)
        .await?
        .filter(|row| row.confirmed_at.is_some());
    let Some(row) = row else {
        return match factor {
            SecondFactor::None => Ok(false),
            SecondFactor::Code(_) | SecondFactor::Recovery(_) => Err(BookingError::FailedPrecondition(
                "this account has no confirmed two-factor authenticator: log in without code or recoveryCode".into(),
            )),
        };
    };
    let mut failed = u32::try_from(row.failed_attempts).unwrap_or(0);
    let mut locked_until = row.locked_until;
    if locked_until.is_some_and(|until| until <= now) {
        // The lock has run out: a fresh count.
        failed = 0;
        locked_until = None;
    }
    if let Some(until) = locked_until {
        if let SecondFactor::Recovery(code) = factor
            && use_recovery_code(&tx, account, code, now).await?
        {
            record(&tx, account, 0, None, row.last_step).await?;
            tx.commit().await?;
            tracing::info!(account_id = %account, "account unlocked with a recovery code");
            return Ok(true);
        }
        tracing::info!(account_id = %account, "log-in refused: account locked");
        return Err(BookingError::AccountLocked { until });
    }
    let accepted = match factor {
        SecondFactor::None => return Err(BookingError::TwoFactorCodeMissing),
        SecondFactor::Code(code) => match matching_step(&row.secret, code, now)? {
            Some(step) if row.last_step.is_none_or(|last| step > last) => Some(step),
            _ => None,
        }
        .map(Some),
        SecondFactor::Recovery(code) => use_recovery_code(&tx, account, code, now)
            .await?
            .then_some(row.last_step),
    };
    match accepted {
        Some(last_step) => {
            record(&tx, account, 0, None, last_step).await?;
            tx.commit().await?;
            Ok(true)
        }
        None => {
            failed += 1;
            if failed >= MAX_FAILURES {
                let until = now + policy.lockout;
                record(&tx, account, failed, Some(until), row.last_step).await?;
                tx.commit().await?;
                tracing::warn!(account_id = %account, failures = failed, %until, "account locked after wrong two-factor codes");
                metrics::counter!("two_factor_lockouts_total").increment(1);
                Err(BookingError::AccountLocked { until })
            } else {
                record(&tx, account, failed, None, row.last_step).await?;
                tx.commit().await?;
                tracing::info!(account_id = %account, failures = failed, "wrong two-factor code");
                Err(BookingError::TwoFactorCodeInvalid {
                    attempts_left: MAX_FAILURES - failed,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_names_issuer_account_and_every_parameter() {
        let uri = otpauth_uri("seller+1@example.com", "JBSWY3DPEHPK3PXP");
        assert_eq!(
            uri,
            "otpauth://totp/Marquee:seller%2B1@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Marquee&algorithm=SHA1&digits=6&period=30"
        );
    }

    /// RFC 6238's SHA1 test vectors (the last six digits of its 8-digit values).
    #[test]
    fn codes_follow_rfc_6238() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        let totp = totp(&secret).expect("totp");
        for (time, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "at {time}");
        }
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        let totp = totp(&secret).expect("totp");
        let now = DateTime::from_timestamp(1_111_111_109, 0).expect("time");
        let step = 1_111_111_109 / 30;
        for (offset, accepted) in [
            (-60i64, false),
            (-30, true),
            (0, true),
            (30, true),
            (60, false),
        ] {
            let at = u64::try_from(1_111_111_109 + offset).expect("time");
            let code = TotpCode::parse("code", &totp.generate(at).to_string()).expect("code");
            let matched = matching_step(&secret, &code, now).expect("check");
            assert_eq!(matched.is_some(), accepted, "offset {offset}");
            if accepted {
                assert_eq!(matched, Some(step + offset / 30));
            }
        }
    }

    #[test]
    fn a_recovery_hash_is_of_the_canonical_form() {
        let shown = RecoveryCode::generate();
        let typed =
            RecoveryCode::parse("recoveryCode", &shown.display().to_uppercase()).expect("parse");
        assert_eq!(recovery_hash(&shown), recovery_hash(&typed));
        assert_eq!(recovery_hash(&shown).len(), 64);
    }
}
