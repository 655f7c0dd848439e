//! Two-factor codes as an authenticator app computes them (RFC 6238: HMAC-SHA1, 6
//! digits, 30 s steps), with the same crate booking-svc checks them with, so every
//! test computes codes one way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use totp_rs::{Algorithm, Builder, Secret};

/// Seconds per step.
pub const STEP: Duration = Duration::from_secs(30);

/// The 6-digit code of `secret` (base32, as enrolment answers it) at `at`.
pub fn code(secret: &str, at: SystemTime) -> String {
    let bytes = Secret::try_from_base32(secret).expect("secret is base32");
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP.as_secs())
        .with_secret(bytes)
        .build()
        .expect("totp");
    let time = at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    totp.generate(time).to_string()
}

/// The code at `now + offset` (`offset` may be negative), in seconds.
pub fn code_at_offset(secret: &str, offset: i64) -> String {
    let now = SystemTime::now();
    let at = if offset >= 0 {
        now + Duration::from_secs(offset.unsigned_abs())
    } else {
        now - Duration::from_secs(offset.unsigned_abs())
    };
    code(secret, at)
}

/// Waits, if need be, until at least `margin` is left of the current step, so that a
/// code computed now is checked by the server in the same step (a test of the skew
/// window that crossed a step boundary between computing and checking would test
/// another offset than it says).
pub async fn settle(margin: Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    let into =
        Duration::from_millis(u64::try_from(now.as_millis() % STEP.as_millis()).unwrap_or(0));
    let left = STEP.saturating_sub(into);
    if left < margin {
        // Into the next step, a little past its start.
        tokio::time::sleep(left + Duration::from_millis(200)).await;
    }
}

/// The current step number.
fn step_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / STEP.as_secs()
}

/// An authenticator app: the secret, and the last step whose code it gave out, so that
/// each code it gives is for a later step than the last (the server accepts each step
/// once). Codes are for the current step or the next (the server accepts one step of
/// skew); when both are used up it waits for the next step.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub secret: String,
    last_step: Option<u64>,
}

impl Authenticator {
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            last_step: None,
        }
    }

    /// The last step whose code was given out (codes for it and earlier steps are
    /// spent once the server accepted one).
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
    }

    /// A code for a step after the last one given out.
    pub async fn next_code(&mut self) -> String {
        loop {
            let now = step_now();
            let step = self.last_step.map_or(now, |last| (last + 1).max(now));
            if step <= now + 1 {
                self.last_step = Some(step);
                return code(
                    &self.secret,
                    UNIX_EPOCH + Duration::from_secs(step * STEP.as_secs()),
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
