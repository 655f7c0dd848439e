//! Domain types. Everything here is valid by construction: the gRPC layer parses
//! requests into these and nothing else reaches the logic.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use uuid::Uuid;

use crate::error::BookingError;

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses a request field named `field`.
            pub fn parse(field: &'static str, value: &str) -> Result<Self, BookingError> {
                if value.trim().is_empty() {
                    return Err(BookingError::invalid(field, concat!($what, " is required")));
                }
                Uuid::parse_str(value.trim())
                    .map(Self)
                    .map_err(|_| BookingError::invalid(field, concat!("not a valid ", $what)))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(AccountId, "account id");
id_type!(AuctionId, "auction id");
id_type!(EventId, "event id");
id_type!(SectionId, "section id");
id_type!(SeatId, "seat id");
id_type!(HoldId, "hold id");
id_type!(BookingId, "booking id");
id_type!(TransferOfferId, "transfer offer id");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Buyer,
    Seller,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "BUYER",
            Role::Seller => "SELLER",
            Role::Admin => "ADMIN",
        }
    }
}

impl FromStr for Role {
    type Err = BookingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "BUYER" => Ok(Role::Buyer),
            "SELLER" => Ok(Role::Seller),
            "ADMIN" => Ok(Role::Admin),
            other => Err(BookingError::Internal(format!("unknown role {other:?}"))),
        }
    }
}

/// A lower-cased email address with one `@` and a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, BookingError> {
        let value = value.trim().to_lowercase();
        storable("email", &value, Lines::One)?;
        let valid = value.len() <= 254
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            })
            && !value.chars().any(char::is_whitespace);
        if valid {
            Ok(Self(value))
        } else {
            Err(BookingError::invalid("email", "not a valid email address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 128 characters, without control characters, as typed (not
/// trimmed). Never logged.
pub struct Password(String);

impl Password {
    pub fn parse(value: &str) -> Result<Self, BookingError> {
        storable("password", value, Lines::One)?;
        let n = value.chars().count();
        if !(8..=128).contains(&n) {
            return Err(BookingError::invalid(
                "password",
                "must be 8 to 128 characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A TOTP code as a user types it: exactly six ASCII digits (surrounding spaces
/// trimmed). Whether it is right is for [`crate::two_factor`] to say.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, BookingError> {
        let value = value.trim();
        if value.len() != 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BookingError::invalid(field, "must be 6 digits"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Never shows the code.
impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(..)")
    }
}

/// The letters of a recovery code: RFC 4648's base32 alphabet, lowercase.
pub const RECOVERY_CODE_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters of a recovery code (80 bits), shown in groups of four.
pub const RECOVERY_CODE_LEN: usize = 16;

/// A two-factor recovery code: 16 characters of [`RECOVERY_CODE_ALPHABET`], shown as
/// `xxxx-xxxx-xxxx-xxxx`; parsed in any case, with or without the dashes and spaces.
/// Held in its canonical form (lowercase, no separators), which is what is hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, BookingError> {
        let canonical: String = value
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if canonical.len() != RECOVERY_CODE_LEN
            || !canonical
                .bytes()
                .all(|b| RECOVERY_CODE_ALPHABET.contains(&b))
        {
            return Err(BookingError::invalid(
                field,
                "must be a recovery code such as abcd-efgh-ijkl-mnop (16 letters a-z and digits 2-7)",
            ));
        }
        Ok(Self(canonical))
    }

    /// A new random code (rand's thread generator: a CSPRNG seeded by the OS).
    pub fn generate() -> Self {
        use rand::Rng as _;
        let mut rng = rand::rng();
        let canonical = (0..RECOVERY_CODE_LEN)
            .map(|_| {
                let i = rng.random_range(0..RECOVERY_CODE_ALPHABET.len());
                char::from(RECOVERY_CODE_ALPHABET[i])
            })
            .collect();
        Self(canonical)
    }

    /// The canonical form (lowercase, no dashes): what is hashed.
    pub fn canonical(&self) -> &str {
        &self.0
    }

    /// As shown to the user: groups of four joined by dashes.
    pub fn display(&self) -> String {
        self.0
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }
}

/// Never shows the code.
impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

/// The second factor a log-in brings, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactor {
    None,
    Code(TotpCode),
    Recovery(RecoveryCode),
}

impl SecondFactor {
    /// From LogIn's `code` and `recoveryCode` fields: at most one of them.
    pub fn parse(code: &str, recovery_code: &str) -> Result<Self, BookingError> {
        match (code.trim().is_empty(), recovery_code.trim().is_empty()) {
            (true, true) => Ok(Self::None),
            (false, true) => Ok(Self::Code(TotpCode::parse("code", code)?)),
            (true, false) => Ok(Self::Recovery(RecoveryCode::parse(
                "recoveryCode",
                recovery_code,
            )?)),
            (false, false) => Err(BookingError::invalid(
                "recoveryCode",
                "give either code or recoveryCode, not both",
            )),
        }
    }
}

/// Whether a text field may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Names, labels, emails, keys: no control character at all.
    One,
    /// Free text such as an event's description: tab, line feed and carriage return
    /// are allowed, every other control character is not.
    Many,
}

/// The one rule for text a request may carry into storage: no control character
/// (Unicode category Cc: U+0000–U+001F, U+007F–U+009F), except the line breaks and
/// tabs of [`Lines::Many`]. PostgreSQL cannot store U+0000 at all, and the others
/// are never meant to be in a name or a label. Every text field of a request is
/// checked with it before anything else looks at the value.
pub fn storable(field: &'static str, value: &str, lines: Lines) -> Result<(), BookingError> {
    let allowed = |c: char| lines == Lines::Many && matches!(c, '\t' | '\n' | '\r');
    match value.chars().find(|&c| c.is_control() && !allowed(c)) {
        None => Ok(()),
        Some(c) => Err(BookingError::invalid(
            field,
            format!(
                "must not contain control characters such as U+{:04X}",
                u32::from(c)
            ),
        )),
    }
}

/// Trimmed, non-empty, single-line text of at most `max` characters.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String, BookingError> {
    let value = value.trim();
    storable(field, value, Lines::One)?;
    if value.is_empty() {
        return Err(BookingError::invalid(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(BookingError::invalid(field, "is too long"));
    }
    Ok(value.to_owned())
}

/// Trimmed, optional text that may span lines, cut to at most `max` characters (and
/// trimmed again, should the cut fall on whitespace).
pub fn long_text(field: &'static str, value: &str, max: usize) -> Result<String, BookingError> {
    let value = value.trim();
    storable(field, value, Lines::Many)?;
    let cut: String = value.chars().take(max).collect();
    Ok(cut.trim_end().to_owned())
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(String);

impl Currency {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, BookingError> {
        let value = value.trim();
        storable(field, value, Lines::One)?;
        let value = if value.is_empty() { "KRW" } else { value };
        if value.len() == 3 && value.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(BookingError::invalid(
                field,
                "must be an ISO 4217 code such as KRW",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A non-negative amount in a currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

// ------------------------------------------------------------------ records

/// An account as stored (without its password hash).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Seats held for a buyer until `expires_at`.
#[derive(Debug, Clone)]
pub struct HoldGranted {
    pub hold_id: HoldId,
    pub event: EventId,
    pub seats: Vec<SeatId>,
    pub expires_at: DateTime<Utc>,
    pub total: Money,
}

#[derive(Debug, Clone)]
pub struct BookedSeat {
    pub seat: SeatId,
    pub section: String,
    pub row: String,
    pub number: String,
    pub price_minor: i64,
}

#[derive(Debug, Clone)]
pub struct Booking {
    pub id: BookingId,
    pub event: EventId,
    pub buyer: AccountId,
    pub hold: HoldId,
    pub status: BookingStatus,
    pub total: Money,
    pub method: PaymentMethod,
    pub cancel_reason: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub seats: Vec<BookedSeat>,
    /// The status changes, oldest first; read only for a single booking's view
    /// (`Bookings::get`), empty elsewhere.
    pub history: Vec<StatusChange>,
    /// For a booking made by accepting a transfer offer: the booking it takes over.
    pub transfer_of: Option<BookingId>,
}

/// One status change of a booking, as its buyer sees it (no internal detail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub status: BookingStatus,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Which service recorded a saga step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepService {
    Booking,
    Pay,
}

impl StepService {
    pub fn as_str(self) -> &'static str {
        match self {
            StepService::Booking => "booking-svc",
            StepService::Pay => "pay-svc",
        }
    }
}

/// One recorded step of a booking's saga, from either service (each one's
/// `saga_steps`, `marquee_infra::saga_steps`). Text fields are empty when they do not
/// apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaStep {
    pub at: DateTime<Utc>,
    pub service: StepService,
    /// `status`, `message_sent`, `message_received`, `psp_call`, `wallet`, `refund`,
    /// `deadline`.
    pub kind: String,
    pub attempt: i32,
    pub outcome: String,
    pub detail: String,
    pub message_type: String,
    pub message_id: Option<Uuid>,
    pub trace_id: String,
    pub from_status: String,
    pub to_status: String,
    pub reason: String,
    pub operation: String,
    pub http_status: Option<i32>,
}

/// A booking and its saga's steps from both services, merged oldest first.
#[derive(Debug, Clone)]
pub struct SagaTimeline {
    pub booking: Booking,
    pub steps: Vec<SagaStep>,
}

impl SagaTimeline {
    /// Merges pay-svc's steps into booking-svc's, in time order (a stable sort: steps
    /// of one service recorded at the same instant keep their recorded order).
    pub fn merged(booking: Booking, mut steps: Vec<SagaStep>, pay: Vec<SagaStep>) -> Self {
        steps.extend(pay);
        steps.sort_by_key(|step| step.at);
        Self { booking, steps }
    }
}

/// A booking's status after a committed transition.
#[derive(Debug, Clone)]
pub struct BookingMoved {
    pub id: BookingId,
    pub buyer: AccountId,
    pub event: EventId,
    pub status: BookingStatus,
    pub cancel_reason: String,
    pub updated_at: DateTime<Utc>,
}

/// Why seats changed status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatChange {
    Held,
    Released,
    Expired,
    Sold,
}

impl SeatChange {
    /// The name the hold scripts write in the change stream.
    pub fn as_str(self) -> &'static str {
        match self {
            SeatChange::Held => "held",
            SeatChange::Released => "released",
            SeatChange::Expired => "expired",
            SeatChange::Sold => "sold",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "held" => SeatChange::Held,
            "released" => SeatChange::Released,
            "expired" => SeatChange::Expired,
            "sold" => SeatChange::Sold,
            _ => return None,
        })
    }
}

/// Seats of one event that changed status together, as of a seat version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatsChanged {
    pub event: EventId,
    pub version: i64,
    pub change: SeatChange,
    pub seats: Vec<SeatId>,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingStatus {
    PendingPayment,
    Confirmed,
    Cancelling,
    Cancelled,
    /// A transfer of the booking was accepted; the recipient's payment is under way.
    Transferring,
    /// Transferred to another buyer (final); its seats are the recipient's booking's.
    Transferred,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::PendingPayment => "PENDING_PAYMENT",
            BookingStatus::Confirmed => "CONFIRMED",
            BookingStatus::Cancelling => "CANCELLING",
            BookingStatus::Cancelled => "CANCELLED",
            BookingStatus::Transferring => "TRANSFERRING",
            BookingStatus::Transferred => "TRANSFERRED",
        }
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BookingStatus {
    type Err = BookingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PENDING_PAYMENT" => Ok(BookingStatus::PendingPayment),
            "CONFIRMED" => Ok(BookingStatus::Confirmed),
            "CANCELLING" => Ok(BookingStatus::Cancelling),
            "CANCELLED" => Ok(BookingStatus::Cancelled),
            "TRANSFERRING" => Ok(BookingStatus::Transferring),
            "TRANSFERRED" => Ok(BookingStatus::Transferred),
            other => Err(BookingError::Internal(format!(
                "unknown booking status {other:?}"
            ))),
        }
    }
}

/// How a booking is paid, as stored (`bookings.payment_method`,
/// `bookings_payment_method_check`) and sent in `payment.requested`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethod {
    /// The buyer's Marquee wallet, debited by pay-svc.
    Wallet,
    /// A card, charged by pay-svc through the payment provider with a [`CardToken`].
    Card,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Wallet => "WALLET",
            PaymentMethod::Card => "CARD",
        }
    }
}

impl FromStr for PaymentMethod {
    type Err = BookingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "WALLET" => Ok(PaymentMethod::Wallet),
            "CARD" => Ok(PaymentMethod::Card),
            other => Err(BookingError::Internal(format!(
                "unknown payment method {other:?}"
            ))),
        }
    }
}

/// The payment provider's token for a buyer's card (its checkout widget makes one):
/// `tok_` followed by 1 to 64 of `[A-Za-z0-9_]`. Not a card number, which Marquee never
/// sees; still never logged in full: `Debug` shows its first characters only.
#[derive(Clone, PartialEq, Eq)]
pub struct CardToken(String);

impl CardToken {
    const PREFIX: &'static str = "tok_";

    /// Parses the request field `cardToken` (trimmed).
    pub fn parse(value: &str) -> Result<Self, BookingError> {
        let value = value.trim();
        storable("cardToken", value, Lines::One)?;
        if value.is_empty() {
            return Err(BookingError::invalid("cardToken", "is required with CARD"));
        }
        let valid = value.strip_prefix(Self::PREFIX).is_some_and(|rest| {
            (1..=64).contains(&rest.len())
                && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(BookingError::invalid(
                "cardToken",
                "must be tok_ followed by 1 to 64 letters, digits or underscores",
            ))
        }
    }

    /// The whole token, for the payment request alone.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What logs may show: the prefix and at most four characters, never more than half
    /// of what follows the prefix, so even a short token is never shown whole.
    pub fn redacted(&self) -> String {
        let rest = self.0.len() - Self::PREFIX.len();
        let shown = &self.0[..Self::PREFIX.len() + (rest / 2).min(4)];
        format!("{shown}…")
    }
}

impl fmt::Debug for CardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardToken({})", self.redacted())
    }
}

/// How a checkout pays: the method the buyer chose with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    Wallet,
    Card(CardToken),
}

impl Payment {
    /// A checkout's method and card token, parsed together: the token is required with
    /// CARD and refused with WALLET (both a 400 naming `cardToken`).
    pub fn parse(method: PaymentMethod, card_token: &str) -> Result<Self, BookingError> {
        match method {
            PaymentMethod::Card => CardToken::parse(card_token).map(Payment::Card),
            PaymentMethod::Wallet if card_token.trim().is_empty() => Ok(Payment::Wallet),
            PaymentMethod::Wallet => Err(BookingError::invalid(
                "cardToken",
                "must be empty with WALLET (only CARD takes a card token)",
            )),
        }
    }

    pub fn method(&self) -> PaymentMethod {
        match self {
            Payment::Wallet => PaymentMethod::Wallet,
            Payment::Card(_) => PaymentMethod::Card,
        }
    }

    pub fn card_token(&self) -> Option<&CardToken> {
        match self {
            Payment::Wallet => None,
            Payment::Card(token) => Some(token),
        }
    }
}

/// The seats of one hold request: 1 to `limit` distinct ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatSelection(Vec<SeatId>);

impl SeatSelection {
    pub fn parse(values: &[String]) -> Result<Self, BookingError> {
        if values.is_empty() {
            return Err(BookingError::invalid(
                "seatIds",
                "at least one seat is required",
            ));
        }
        if values.len() > MAX_SEATS_PER_HOLD {
            return Err(BookingError::invalid("seatIds", "too many seats"));
        }
        let mut seats = Vec::with_capacity(values.len());
        for value in values {
            let seat = SeatId::parse("seatIds", value)?;
            if seats.contains(&seat) {
                return Err(BookingError::invalid("seatIds", "a seat is listed twice"));
            }
            seats.push(seat);
        }
        Ok(Self(seats))
    }

    pub fn seats(&self) -> &[SeatId] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The most seats one hold request may name or ask for (before the event's own
/// per-buyer limit, which is at most 20).
pub const MAX_SEATS_PER_HOLD: usize = 64;

/// What a hold request asks for: the seats it names, or the best block of adjacent
/// seats (best available). Parsed from `seatIds`, `quantity`, `sectionId` and
/// `maxPrice` together, so a request with both, or with best-available terms but no
/// quantity, never gets past the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldSelection {
    Seats(SeatSelection),
    Best(BestAvailable),
}

impl From<SeatSelection> for HoldSelection {
    fn from(seats: SeatSelection) -> Self {
        HoldSelection::Seats(seats)
    }
}

impl From<BestAvailable> for HoldSelection {
    fn from(best: BestAvailable) -> Self {
        HoldSelection::Best(best)
    }
}

impl HoldSelection {
    /// `seat_ids` or `quantity`, never both (400 naming both fields); `section_id` and
    /// `max_price` (amount, currency) only with a quantity. No seats and no quantity is
    /// the seat path's "at least one seat is required".
    pub fn parse(
        seat_ids: &[String],
        quantity: i32,
        section_id: &str,
        max_price: Option<(i64, &str)>,
    ) -> Result<Self, BookingError> {
        if quantity != 0 && !seat_ids.is_empty() {
            return Err(BookingError::invalid(
                "quantity",
                "give either seatIds (those seats) or quantity (best available), not both",
            ));
        }
        if quantity == 0 {
            if !section_id.trim().is_empty() {
                return Err(BookingError::invalid(
                    "sectionId",
                    "only goes with quantity (best available)",
                ));
            }
            if max_price.is_some() {
                return Err(BookingError::invalid(
                    "maxPrice",
                    "only goes with quantity (best available)",
                ));
            }
            return SeatSelection::parse(seat_ids).map(HoldSelection::Seats);
        }
        BestAvailable::parse(quantity, section_id, max_price).map(HoldSelection::Best)
    }
}

/// A best-available request: `quantity` adjacent seats in one row, only in `section`
/// if given, and only where a seat costs at most `max_price` if given (see
/// [`crate::best`] for what "best" means).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestAvailable {
    quantity: u32,
    section: Option<SectionId>,
    max_price: Option<Money>,
}

impl BestAvailable {
    /// `quantity` 1 to [`MAX_SEATS_PER_HOLD`] (the event's limit is checked by the hold
    /// itself); an empty `section_id` is any section; `max_price` a non-negative amount
    /// in a currency (empty: KRW, as prices are).
    pub fn parse(
        quantity: i32,
        section_id: &str,
        max_price: Option<(i64, &str)>,
    ) -> Result<Self, BookingError> {
        let quantity = u32::try_from(quantity)
            .ok()
            .filter(|n| (1..=MAX_SEATS_PER_HOLD).contains(&(*n as usize)))
            .ok_or_else(|| {
                BookingError::invalid(
                    "quantity",
                    format!("must be between 1 and the event's seats per buyer (at most {MAX_SEATS_PER_HOLD})"),
                )
            })?;
        let section = if section_id.trim().is_empty() {
            None
        } else {
            Some(SectionId::parse("sectionId", section_id)?)
        };
        let max_price = match max_price {
            None => None,
            Some((amount_minor, currency)) => {
                if amount_minor < 0 {
                    return Err(BookingError::invalid(
                        "maxPrice.amountMinor",
                        "must not be negative",
                    ));
                }
                Some(Money {
                    amount_minor,
                    currency: Currency::parse("maxPrice.currency", currency)?,
                })
            }
        };
        Ok(Self {
            quantity,
            section,
            max_price,
        })
    }

    pub fn quantity(&self) -> u32 {
        self.quantity
    }

    pub fn section(&self) -> Option<SectionId> {
        self.section
    }

    pub fn max_price(&self) -> Option<&Money> {
        self.max_price.as_ref()
    }

    /// What an idempotency key is bound to for this request: its terms, not the seats
    /// they got, so a retry replays the hold even though the seats it chose are taken
    /// by then (and the same key with other terms is refused). Never contains `|`, and
    /// never looks like a list of seat ids.
    pub fn terms(&self) -> String {
        let section = self.section.map(|s| s.to_string()).unwrap_or_default();
        let price = self
            .max_price
            .as_ref()
            .map(|m| format!("{}{}", m.amount_minor, m.currency.as_str()))
            .unwrap_or_default();
        format!("best:{}:{section}:{price}", self.quantity)
    }
}

/// A client-chosen key that makes a checkout retry-safe: 1 to 200 visible ASCII chars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, BookingError> {
        let value = value.trim();
        storable("idempotencyKey", value, Lines::One)?;
        if value.is_empty() {
            return Err(BookingError::invalid(
                "idempotencyKey",
                "an Idempotency-Key header is required",
            ));
        }
        if value.len() > 200 || !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err(BookingError::invalid(
                "idempotencyKey",
                "must be 1 to 200 visible ASCII characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// ------------------------------------------------------------------ transfers

/// An event's rule for ticket transfers: whether they are allowed, and the highest
/// price, in percent (1..=100) of what a booking cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferPolicy {
    allowed: bool,
    max_price_percent: u8,
}

impl Default for TransferPolicy {
    /// Allowed, at up to face value.
    fn default() -> Self {
        Self {
            allowed: true,
            max_price_percent: 100,
        }
    }
}

impl TransferPolicy {
    /// Parses a request's rule: `allowed` absent means allowed; a percent of 0 means
    /// 100; anything else outside 1..=100 is invalid. `field` is the rule's field name
    /// (`transfers`).
    pub fn parse(
        field_percent: &'static str,
        allowed: Option<bool>,
        max_price_percent: i32,
    ) -> Result<Self, BookingError> {
        let max_price_percent = match max_price_percent {
            0 => 100,
            n @ 1..=100 => u8::try_from(n).unwrap_or(100),
            _ => {
                return Err(BookingError::invalid(
                    field_percent,
                    "must be between 1 and 100 (or 0 for 100)",
                ));
            }
        };
        Ok(Self {
            allowed: allowed.unwrap_or(true),
            max_price_percent,
        })
    }

    /// The rule as stored; a stored percent outside 1..=100 (the check forbids it) is
    /// read as 100.
    pub fn stored(allowed: bool, max_price_percent: i32) -> Self {
        Self {
            allowed,
            max_price_percent: u8::try_from(max_price_percent)
                .ok()
                .filter(|p| (1..=100).contains(p))
                .unwrap_or(100),
        }
    }

    pub fn allowed(self) -> bool {
        self.allowed
    }

    pub fn max_price_percent(self) -> u8 {
        self.max_price_percent
    }

    /// The highest transfer price of a booking that cost `face_value` (rounded down).
    pub fn cap(self, face_value: i64) -> i64 {
        let capped = i128::from(face_value) * i128::from(self.max_price_percent) / 100;
        i64::try_from(capped).unwrap_or(face_value)
    }
}

/// A transfer offer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferStatus {
    Offered,
    Accepted,
    Completed,
    Withdrawn,
}

impl OfferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Offered => "OFFERED",
            OfferStatus::Accepted => "ACCEPTED",
            OfferStatus::Completed => "COMPLETED",
            OfferStatus::Withdrawn => "WITHDRAWN",
        }
    }
}

impl FromStr for OfferStatus {
    type Err = BookingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "OFFERED" => Ok(OfferStatus::Offered),
            "ACCEPTED" => Ok(OfferStatus::Accepted),
            "COMPLETED" => Ok(OfferStatus::Completed),
            "WITHDRAWN" => Ok(OfferStatus::Withdrawn),
            other => Err(BookingError::Internal(format!(
                "unknown transfer offer status {other:?}"
            ))),
        }
    }
}

/// Who may accept an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// The account with this email only.
    Named(Email),
    /// Anyone but the owner: an open listing.
    Anyone,
}

impl Recipient {
    /// `recipientEmail`: empty for anyone.
    pub fn parse(value: &str) -> Result<Self, BookingError> {
        if value.trim().is_empty() {
            return Ok(Recipient::Anyone);
        }
        let email = Email::parse(value).map_err(|e| match e {
            BookingError::InvalidArgument { reason, .. } => {
                BookingError::invalid("recipientEmail", reason)
            }
            other => other,
        })?;
        Ok(Recipient::Named(email))
    }

    pub fn email(&self) -> Option<&str> {
        match self {
            Recipient::Named(email) => Some(email.as_str()),
            Recipient::Anyone => None,
        }
    }
}

/// A price asked for a transfer: more than 0, in a valid currency (checked against
/// the booking and the event's rule by the domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferPrice(Money);

impl TransferPrice {
    pub fn parse(price: Option<(i64, &str)>) -> Result<Self, BookingError> {
        let Some((amount_minor, currency)) = price else {
            return Err(BookingError::invalid("price", "is required"));
        };
        if amount_minor <= 0 {
            return Err(BookingError::invalid(
                "price.amountMinor",
                "must be more than 0",
            ));
        }
        let currency = Currency::parse("price.currency", currency)?;
        Ok(Self(Money {
            amount_minor,
            currency,
        }))
    }

    pub fn money(&self) -> &Money {
        &self.0
    }
}

/// A new transfer offer, parsed.
#[derive(Debug, Clone)]
pub struct NewOffer {
    pub price: TransferPrice,
    pub recipient: Recipient,
}

/// A transfer offer as the API shows it.
#[derive(Debug, Clone)]
pub struct TransferOffer {
    pub id: TransferOfferId,
    pub booking: BookingId,
    pub event: EventId,
    pub owner: AccountId,
    pub recipient: Option<String>,
    pub price: Money,
    pub status: OfferStatus,
    pub seats: Vec<BookedSeat>,
    pub transfer_booking: Option<BookingId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One owner in a ticket's chain of transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLink {
    pub booking: BookingId,
    pub owner: AccountId,
    pub price: Money,
    pub transferred_at: DateTime<Utc>,
}

/// Page size of a list request: 1 to `max`, `default` when 0.
pub fn page_size(value: i32, default: i64, max: i64) -> Result<i64, BookingError> {
    match value {
        0 => Ok(default),
        n if n < 0 => Err(BookingError::invalid("pageSize", "must not be negative")),
        n => Ok(i64::from(n).min(max)),
    }
}

/// A page token: the offset of the next page, as decimal text.
pub fn page_offset(token: &str) -> Result<i64, BookingError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| BookingError::invalid("pageToken", "not a valid page token"))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(Email::parse(" A@B.com ").unwrap().as_str(), "a@b.com");
        for bad in ["", "a", "a@b", "@b.com", "a@@b.com", "a b@c.com", "a@.com"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_characters_are_refused_naming_the_field() {
        for bad in [
            "a\0b",
            "\0",
            "a\u{1b}[31m",
            "a\nb",
            "a\tb",
            "a\u{7f}",
            "a\u{85}b",
        ] {
            let error = text("title", bad, 200).unwrap_err();
            assert!(
                matches!(error, BookingError::InvalidArgument { field: "title", .. }),
                "{bad:?}: {error}"
            );
        }
        assert!(long_text("description", "a\0b", 10).is_err());
        assert!(long_text("description", "a\u{7}b", 10).is_err());
        assert_eq!(
            long_text("description", " one\n\ttwo\r\n ", 100).unwrap(),
            "one\n\ttwo"
        );
        assert_eq!(text("title", "  Flash  Sale ", 200).unwrap(), "Flash  Sale");
        assert_eq!(text("title", "공연 🎫", 200).unwrap(), "공연 🎫");
        assert!(Email::parse("a\0@b.com").is_err());
        assert!(Password::parse("long enough\0pw").is_err());
        assert!(Currency::parse("currency", "KR\0").is_err());
        assert!(IdempotencyKey::parse("k\0").is_err());
    }

    /// Found by `proptests`: the cut came after the trim, so a description cut at a
    /// space was stored with trailing whitespace (and read back differently).
    #[test]
    fn long_text_cut_at_a_space_is_still_trimmed() {
        assert_eq!(long_text("description", "ab cd", 3).unwrap(), "ab");
        assert_eq!(long_text("description", "ab\n\ncd", 4).unwrap(), "ab");
        assert_eq!(long_text("description", "ab cd", 4).unwrap(), "ab c");
    }

    #[test]
    fn seat_selection_rejects_empty_duplicates_and_junk() {
        let id = Uuid::now_v7().to_string();
        assert!(SeatSelection::parse(&[]).is_err());
        assert!(SeatSelection::parse(&[id.clone(), id.clone()]).is_err());
        assert!(SeatSelection::parse(&["nope".into()]).is_err());
        assert_eq!(SeatSelection::parse(&[id]).unwrap().len(), 1);
    }

    #[test]
    fn a_hold_asks_for_seats_or_a_quantity_never_both() {
        let id = Uuid::now_v7().to_string();
        let section = Uuid::now_v7().to_string();
        let field = |result: Result<HoldSelection, BookingError>| match result {
            Err(BookingError::InvalidArgument { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        };
        assert!(matches!(
            HoldSelection::parse(std::slice::from_ref(&id), 0, "", None),
            Ok(HoldSelection::Seats(_))
        ));
        let both = HoldSelection::parse(std::slice::from_ref(&id), 2, "", None);
        let message = both.as_ref().map(|_| ()).unwrap_err().to_string();
        assert!(
            message.contains("seatIds") && message.contains("quantity"),
            "{message}"
        );
        assert_eq!(field(both), "quantity");
        assert_eq!(field(HoldSelection::parse(&[], 0, "", None)), "seatIds");
        assert_eq!(field(HoldSelection::parse(&[], -1, "", None)), "quantity");
        assert_eq!(field(HoldSelection::parse(&[], 65, "", None)), "quantity");
        assert_eq!(field(HoldSelection::parse(&[], 2, "A", None)), "sectionId");
        assert_eq!(
            field(HoldSelection::parse(&[], 0, &section, None)),
            "sectionId"
        );
        assert_eq!(
            field(HoldSelection::parse(&[], 0, "", Some((1, "KRW")))),
            "maxPrice"
        );
        assert_eq!(
            field(HoldSelection::parse(&[], 2, "", Some((-1, "KRW")))),
            "maxPrice.amountMinor"
        );
        assert_eq!(
            field(HoldSelection::parse(&[], 2, "", Some((1, "won")))),
            "maxPrice.currency"
        );
        let Ok(HoldSelection::Best(best)) =
            HoldSelection::parse(&[], 3, &format!(" {section} "), Some((30_000, "")))
        else {
            panic!("a best-available request");
        };
        assert_eq!(best.quantity(), 3);
        assert_eq!(best.section().map(|s| s.to_string()), Some(section.clone()));
        assert_eq!(best.max_price().map(|m| m.currency.as_str()), Some("KRW"));
        assert_eq!(best.terms(), format!("best:3:{section}:30000KRW"));
        let plain = BestAvailable::parse(3, "", None).expect("best");
        assert_eq!(plain.terms(), "best:3::");
        assert_ne!(plain.terms(), best.terms());
    }

    #[test]
    fn card_tokens_go_with_card_only_and_are_never_shown_whole() {
        let token = CardToken::parse(" tok_approve ").expect("token");
        assert_eq!(token.expose(), "tok_approve");
        assert_eq!(format!("{token:?}"), "CardToken(tok_app…)");
        let long = format!("tok_{}", "a".repeat(64));
        assert!(CardToken::parse(&long).is_ok());
        for bad in [
            "",
            "tok_",
            "tok-abc",
            "TOK_abc",
            "4111111111111111",
            "tok_a b",
            "tok_ä",
            "tok_a\0",
            &format!("tok_{}", "a".repeat(65)),
        ] {
            let error = CardToken::parse(bad).unwrap_err();
            assert!(
                matches!(
                    error,
                    BookingError::InvalidArgument {
                        field: "cardToken",
                        ..
                    }
                ),
                "{bad:?}: {error}"
            );
            // The reason never repeats what was sent.
            assert!(
                bad.len() <= 4 || !error.to_string().contains(bad),
                "{error}"
            );
        }
        assert_eq!(
            Payment::parse(PaymentMethod::Card, "tok_approve").expect("card"),
            Payment::Card(token)
        );
        assert_eq!(
            Payment::parse(PaymentMethod::Wallet, " ").expect("wallet"),
            Payment::Wallet
        );
        for (method, token) in [
            (PaymentMethod::Card, ""),
            (PaymentMethod::Card, "tok_"),
            (PaymentMethod::Wallet, "tok_approve"),
        ] {
            let error = Payment::parse(method, token).unwrap_err();
            assert!(
                matches!(
                    error,
                    BookingError::InvalidArgument {
                        field: "cardToken",
                        ..
                    }
                ),
                "{method:?} {token:?}: {error}"
            );
        }
    }

    #[test]
    fn page_tokens() {
        assert_eq!(page_offset("").unwrap(), 0);
        assert_eq!(page_offset("40").unwrap(), 40);
        assert!(page_offset("-1").is_err());
        assert!(page_offset("x").is_err());
        assert_eq!(page_size(0, 20, 100).unwrap(), 20);
        assert_eq!(page_size(1000, 20, 100).unwrap(), 100);
        assert!(page_size(-1, 20, 100).is_err());
    }
}
