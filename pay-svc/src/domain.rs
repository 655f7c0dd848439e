//! Domain types. Wire types (prost) are parsed into these at the edges (the gRPC
//! module and the saga consumer) and never travel further.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The wallet currency: every wallet is in KRW.
pub const WALLET_CURRENCY: &str = "KRW";

/// An account (the buyer), as booking-svc names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountId(pub Uuid);

/// A booking, which is also the saga id and the payment's idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BookingId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaymentId(pub Uuid);

impl PaymentId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for PaymentId {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! uuid_display {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl FromStr for $t {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )*};
}
uuid_display!(AccountId, BookingId, PaymentId);

/// An ISO 4217 currency code: three uppercase ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

impl Currency {
    pub fn krw() -> Self {
        Self(WALLET_CURRENCY.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an ISO 4217 currency code: {0:?}")]
pub struct InvalidCurrency(pub String);

impl FromStr for Currency {
    type Err = InvalidCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidCurrency(s.to_owned()))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A strictly positive number of minor units: what can be charged or refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    /// `None` unless `minor > 0`.
    pub fn positive(minor: i64) -> Option<Self> {
        (minor > 0).then_some(Self(minor))
    }

    pub fn minor(self) -> i64 {
        self.0
    }
}

/// An amount of money, possibly zero or negative (ledger entries are signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err(UnknownValue { kind: stringify!($name), value: other.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

string_enum!(
    /// Where a payment stands. A wallet payment is PENDING only inside its charging
    /// transaction; a card payment stays PENDING until the payment provider's answer
    /// is known. REFUNDING: captured, the PSP cancel is under way (then REFUNDED).
    /// VOIDING: the PSP charged a different amount; the payment failed and the charge
    /// is being cancelled (then FAILED).
    PaymentStatus {
        Pending => "PENDING",
        Captured => "CAPTURED",
        Failed => "FAILED",
        Refunding => "REFUNDING",
        Refunded => "REFUNDED",
        Voiding => "VOIDING",
    }
);

string_enum!(
    /// What a ledger entry records.
    EntryKind {
        WelcomeCredit => "WELCOME_CREDIT",
        Payment => "PAYMENT",
        Refund => "REFUND",
        TransferPayout => "TRANSFER_PAYOUT",
    }
);

string_enum!(
    /// How a buyer pays.
    PaymentMethod {
        Wallet => "WALLET",
        Card => "CARD",
    }
);

string_enum!(
    /// What a card ledger entry records: money the PSP captured or gave back.
    CardEntryKind {
        Capture => "CAPTURE",
        Refund => "REFUND",
    }
);

/// Why a payment failed; sent to booking-svc as `PaymentFailed.reason` (machine
/// readable, UPPER_SNAKE).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureReason {
    InsufficientFunds,
    UnsupportedMethod,
    InvalidAmount,
    UnsupportedCurrency,
    /// CARD without a usable card token.
    InvalidCardToken,
    /// The payment provider never recorded the charge after every confirm allowed.
    ProviderUnavailable,
    /// The payment provider charged a different amount (it is cancelled).
    ProviderAmountMismatch,
    /// The payment provider reports the charge cancelled, not by us.
    ProviderCanceled,
    /// The payment provider declined the card, with its code.
    Declined(DeclineCode),
}

impl FailureReason {
    /// The reasons that are not a PSP's decline code.
    pub const FIXED: &'static [FailureReason] = &[
        Self::InsufficientFunds,
        Self::UnsupportedMethod,
        Self::InvalidAmount,
        Self::UnsupportedCurrency,
        Self::InvalidCardToken,
        Self::ProviderUnavailable,
        Self::ProviderAmountMismatch,
        Self::ProviderCanceled,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Self::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Self::UnsupportedMethod => "UNSUPPORTED_METHOD",
            Self::InvalidAmount => "INVALID_AMOUNT",
            Self::UnsupportedCurrency => "UNSUPPORTED_CURRENCY",
            Self::InvalidCardToken => "INVALID_CARD_TOKEN",
            Self::ProviderUnavailable => "PSP_UNAVAILABLE",
            Self::ProviderAmountMismatch => "PSP_AMOUNT_MISMATCH",
            Self::ProviderCanceled => "PSP_CANCELED",
            Self::Declined(code) => code.as_str(),
        }
    }

    /// A bounded metric label: every decline code is `CARD_DECLINED`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Self::UnsupportedMethod => "UNSUPPORTED_METHOD",
            Self::InvalidAmount => "INVALID_AMOUNT",
            Self::UnsupportedCurrency => "UNSUPPORTED_CURRENCY",
            Self::InvalidCardToken => "INVALID_CARD_TOKEN",
            Self::ProviderUnavailable => "PSP_UNAVAILABLE",
            Self::ProviderAmountMismatch => "PSP_AMOUNT_MISMATCH",
            Self::ProviderCanceled => "PSP_CANCELED",
            Self::Declined(_) => "CARD_DECLINED",
        }
    }
}

impl FromStr for FailureReason {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(fixed) = Self::FIXED.iter().find(|r| r.as_str() == s) {
            return Ok(fixed.clone());
        }
        DeclineCode::parse(s)
            .map(Self::Declined)
            .ok_or_else(|| UnknownValue {
                kind: "FailureReason",
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payment provider's decline code: 1 to 64 of `A-Z`, `0-9`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeclineCode(String);

impl DeclineCode {
    /// What stands for a code the PSP sent that is not UPPER_SNAKE.
    pub const FALLBACK: &'static str = "CARD_DECLINED";

    pub fn parse(code: &str) -> Option<Self> {
        let valid = (1..=64).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        valid.then(|| Self(code.to_owned()))
    }

    /// The PSP's code, or [`Self::FALLBACK`] when it is not UPPER_SNAKE.
    pub fn from_psp(code: &str) -> Self {
        Self::parse(code).unwrap_or_else(|| Self(Self::FALLBACK.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A payment request as received: identities parsed, the rest still to be judged,
/// because a bad amount or method is a business outcome (FAILED), not a bad message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub booking_id: BookingId,
    pub account_id: AccountId,
    pub amount_minor: i64,
    pub currency: String,
    pub method: String,
    /// With CARD: the PSP's card token.
    pub card_token: String,
}

/// A charge that may be attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidCharge {
    pub amount: Amount,
    pub currency: Currency,
    pub method: PaymentMethod,
}

impl ChargeRequest {
    /// Judges the request; the error is the payment's failure reason.
    pub fn validate(&self) -> Result<ValidCharge, FailureReason> {
        let method = self
            .method
            .parse::<PaymentMethod>()
            .map_err(|_| FailureReason::UnsupportedMethod)?;
        let amount = Amount::positive(self.amount_minor).ok_or(FailureReason::InvalidAmount)?;
        let currency = self
            .currency
            .parse::<Currency>()
            .map_err(|_| FailureReason::InvalidAmount)?;
        if currency.as_str() != WALLET_CURRENCY {
            return Err(FailureReason::UnsupportedCurrency);
        }
        if method == PaymentMethod::Card && !valid_card_token(&self.card_token) {
            return Err(FailureReason::InvalidCardToken);
        }
        Ok(ValidCharge {
            amount,
            currency,
            method,
        })
    }
}

/// A card token as the PSP issues them: 1 to 200 printable ASCII characters.
fn valid_card_token(token: &str) -> bool {
    (1..=200).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// A refund request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub booking_id: BookingId,
    pub account_id: AccountId,
    pub reason: String,
}

/// A transfer's payout as received: credit `amount` to `account_id` once per
/// `payout_id` (the recipient's booking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRequest {
    pub payout_id: BookingId,
    pub account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub reason: String,
}

/// A payment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: PaymentId,
    pub booking_id: BookingId,
    pub account_id: AccountId,
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub currency: String,
    pub failure_reason: Option<FailureReason>,
    /// As stored (`WALLET`, `CARD`).
    pub method: String,
    /// CARD: a refund arrived while the charge was undecided.
    pub refund_wanted: bool,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub entry_id: Uuid,
    pub kind: EntryKind,
    pub amount: Money,
    pub balance_after: Money,
    pub booking_id: Option<BookingId>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A wallet with its newest entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletView {
    pub account_id: AccountId,
    pub balance: Money,
    pub entries: Vec<LedgerEntry>,
}

/// How many ledger entries GetWallet returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub const DEFAULT: u32 = 50;
    pub const MAX: u32 = 500;

    /// 0 means the default; above the maximum is clamped; negative is refused.
    pub fn from_request(requested: i32) -> Option<Self> {
        match requested {
            n if n < 0 => None,
            0 => Some(Self(Self::DEFAULT)),
            n => Some(Self(n.unsigned_abs().min(Self::MAX))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(amount: i64, currency: &str, method: &str) -> ChargeRequest {
        ChargeRequest {
            booking_id: BookingId(Uuid::nil()),
            account_id: AccountId(Uuid::nil()),
            amount_minor: amount,
            currency: currency.to_owned(),
            method: method.to_owned(),
            card_token: String::new(),
        }
    }

    #[test]
    fn enums_round_trip_through_their_database_text() {
        for s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>(), Ok(*s));
        }
        for k in EntryKind::ALL {
            assert_eq!(k.as_str().parse::<EntryKind>(), Ok(*k));
        }
        for r in FailureReason::FIXED {
            assert_eq!(r.as_str().parse::<FailureReason>().as_ref(), Ok(r));
        }
        let declined = FailureReason::Declined(DeclineCode::from_psp("REJECT_CARD_PAYMENT"));
        assert_eq!("REJECT_CARD_PAYMENT".parse::<FailureReason>(), Ok(declined));
        assert_eq!(DeclineCode::from_psp("잔액 부족").as_str(), "CARD_DECLINED");
        assert!("".parse::<FailureReason>().is_err());
        assert!("captured".parse::<PaymentStatus>().is_err());
    }

    #[test]
    fn charge_requests_are_judged() {
        assert_eq!(
            request(5_000, "KRW", "WALLET").validate(),
            Ok(ValidCharge {
                amount: Amount(5_000),
                currency: Currency::krw(),
                method: PaymentMethod::Wallet
            })
        );
        assert_eq!(
            request(5_000, "KRW", "PAYPAL").validate(),
            Err(FailureReason::UnsupportedMethod)
        );
        assert_eq!(
            request(5_000, "KRW", "CARD").validate(),
            Err(FailureReason::InvalidCardToken)
        );
        let card = ChargeRequest {
            card_token: "tok_approve".to_owned(),
            ..request(5_000, "KRW", "CARD")
        };
        assert_eq!(card.validate().map(|c| c.method), Ok(PaymentMethod::Card));
        assert_eq!(
            request(0, "KRW", "WALLET").validate(),
            Err(FailureReason::InvalidAmount)
        );
        assert_eq!(
            request(-1, "KRW", "WALLET").validate(),
            Err(FailureReason::InvalidAmount)
        );
        assert_eq!(
            request(1, "krw", "WALLET").validate(),
            Err(FailureReason::InvalidAmount)
        );
        assert_eq!(
            request(1, "USD", "WALLET").validate(),
            Err(FailureReason::UnsupportedCurrency)
        );
    }

    #[test]
    fn page_size_defaults_clamps_and_refuses_negative() {
        assert_eq!(PageSize::from_request(0).map(PageSize::get), Some(50));
        assert_eq!(PageSize::from_request(7).map(PageSize::get), Some(7));
        assert_eq!(PageSize::from_request(10_000).map(PageSize::get), Some(500));
        assert_eq!(PageSize::from_request(-1), None);
    }
}
