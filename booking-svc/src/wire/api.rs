//! gRPC messages ↔ domain types: requests parsed (invalid input becomes
//! INVALID_ARGUMENT naming the field), results rendered.

use chrono::{DateTime, Utc};
use marquee_proto::booking as pb;

use super::{count, money, seat_status_pb, status_pb, timestamp};
use crate::catalog::{
    EventDetails, EventInfo, NewEvent, NewRow, NewSeat, NewSection, SectionSales,
};
use crate::domain::{
    self, Account, AccountId, Booking, Currency, EventId, HoldGranted, HoldSelection, Money,
    Payment, PaymentMethod, Role, SagaStep, SagaTimeline, SeatId, SeatStatus, StepService,
    TransferPolicy,
};
use crate::error::BookingError;

// ------------------------------------------------------------------ rendering

pub fn role_pb(role: Role) -> pb::Role {
    match role {
        Role::Buyer => pb::Role::Buyer,
        Role::Seller => pb::Role::Seller,
        Role::Admin => pb::Role::Admin,
    }
}

pub fn account_pb(a: &Account) -> pb::Account {
    pb::Account {
        account_id: a.id.to_string(),
        email: a.email.clone(),
        display_name: a.display_name.clone(),
        role: role_pb(a.role) as i32,
        created_at: timestamp(a.created_at),
    }
}

pub fn booking_pb(b: &Booking) -> pb::Booking {
    pb::Booking {
        booking_id: b.id.to_string(),
        event_id: b.event.to_string(),
        buyer_id: b.buyer.to_string(),
        status: status_pb(b.status) as i32,
        seats: b
            .seats
            .iter()
            .map(|s| pb::BookedSeat {
                seat_id: s.seat.to_string(),
                section: s.section.clone(),
                row: s.row.clone(),
                number: s.number.clone(),
                price: money(&Money {
                    amount_minor: s.price_minor,
                    currency: b.total.currency.clone(),
                }),
            })
            .collect(),
        total: money(&b.total),
        payment_method: method_pb(b.method) as i32,
        cancel_reason: b.cancel_reason.clone(),
        created_at: timestamp(b.created_at),
        updated_at: timestamp(b.updated_at),
        history: b
            .history
            .iter()
            .map(|change| pb::StatusChange {
                status: status_pb(change.status) as i32,
                reason: change.reason.clone(),
                at: timestamp(change.at),
            })
            .collect(),
        transfer_of: b.transfer_of.map(|id| id.to_string()).unwrap_or_default(),
    }
}

fn method_pb(method: PaymentMethod) -> pb::PaymentMethod {
    match method {
        PaymentMethod::Wallet => pb::PaymentMethod::Wallet,
        PaymentMethod::Card => pb::PaymentMethod::Card,
    }
}

/// The admin view of a booking's saga.
pub fn saga_timeline_pb(t: &SagaTimeline) -> pb::SagaTimeline {
    let b = &t.booking;
    pb::SagaTimeline {
        booking: Some(pb::SagaBooking {
            booking_id: b.id.to_string(),
            buyer_id: b.buyer.to_string(),
            status: status_pb(b.status) as i32,
            payment_method: method_pb(b.method) as i32,
            amount: money(&b.total),
            cancel_reason: b.cancel_reason.clone(),
            created_at: timestamp(b.created_at),
            updated_at: timestamp(b.updated_at),
        }),
        steps: t
            .steps
            .iter()
            .map(|step| pb::SagaStep {
                at: timestamp(step.at),
                service: step.service.as_str().to_owned(),
                kind: step.kind.clone(),
                attempt: step.attempt,
                outcome: step.outcome.clone(),
                detail: step.detail.clone(),
                message_type: step.message_type.clone(),
                message_id: step.message_id.map(|id| id.to_string()).unwrap_or_default(),
                trace_id: step.trace_id.clone(),
                from_status: step.from_status.clone(),
                to_status: step.to_status.clone(),
                reason: step.reason.clone(),
                operation: step.operation.clone(),
                http_status: step.http_status.unwrap_or(0),
            })
            .collect(),
    }
}

/// pay-svc's steps of a booking's payment (`ListPaymentSteps`), parsed: a step pay-svc
/// sent without a time or with a malformed message id is its bug, reported as an
/// internal error rather than shown wrong.
pub fn pay_steps(
    steps: Vec<marquee_proto::pay::PaymentStep>,
) -> Result<Vec<SagaStep>, BookingError> {
    let bad = |what: String| BookingError::Internal(format!("pay-svc step: {what}"));
    steps
        .into_iter()
        .map(|step| {
            let at = step
                .at
                .as_ref()
                .and_then(|t| {
                    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                })
                .ok_or_else(|| bad(format!("{} has no valid time", step.kind)))?;
            let message_id = if step.message_id.is_empty() {
                None
            } else {
                Some(
                    uuid::Uuid::parse_str(&step.message_id)
                        .map_err(|e| bad(format!("message id {:?}: {e}", step.message_id)))?,
                )
            };
            Ok(SagaStep {
                at,
                service: StepService::Pay,
                kind: step.kind,
                attempt: step.attempt,
                outcome: step.outcome,
                detail: step.detail,
                message_type: step.message_type,
                message_id,
                trace_id: step.trace_id,
                from_status: step.from_status,
                to_status: step.to_status,
                reason: step.reason,
                operation: step.operation,
                http_status: (step.http_status != 0).then_some(step.http_status),
            })
        })
        .collect()
}

pub fn session_pb(
    token: String,
    expires: DateTime<Utc>,
    account: &Account,
    two_factor: bool,
) -> pb::Session {
    pb::Session {
        access_token: token,
        token_type: "Bearer".into(),
        expires_at: timestamp(expires),
        account: Some(account_pb(account)),
        two_factor,
    }
}

pub fn enrollment_pb(enrollment: crate::two_factor::Enrollment) -> pb::EnrollTwoFactorResponse {
    pb::EnrollTwoFactorResponse {
        secret: enrollment.secret,
        otpauth_uri: enrollment.uri,
    }
}

pub fn confirmation_pb(
    confirmation: &crate::two_factor::Confirmation,
) -> pb::ConfirmTwoFactorResponse {
    pb::ConfirmTwoFactorResponse {
        recovery_codes: confirmation
            .recovery_codes
            .iter()
            .map(crate::domain::RecoveryCode::display)
            .collect(),
        confirmed_at: timestamp(confirmation.confirmed_at),
    }
}

pub fn me_pb(account: &Account, wallet_balance: Option<marquee_proto::Money>) -> pb::Me {
    pb::Me {
        account: Some(account_pb(account)),
        wallet_balance,
    }
}

pub fn hold_pb(hold: &HoldGranted) -> pb::Hold {
    pb::Hold {
        hold_id: hold.hold_id.to_string(),
        event_id: hold.event.to_string(),
        seat_ids: hold.seats.iter().map(ToString::to_string).collect(),
        expires_at: timestamp(hold.expires_at),
        total: money(&hold.total),
    }
}

pub fn snapshot_pb(
    event: EventId,
    version: i64,
    seats: &[SeatId],
    statuses: Vec<SeatStatus>,
) -> pb::SeatSnapshot {
    pb::SeatSnapshot {
        event_id: event.to_string(),
        version,
        seats: seats
            .iter()
            .zip(statuses)
            .map(|(seat, status)| pb::SeatState {
                seat_id: seat.to_string(),
                status: seat_status_pb(status) as i32,
            })
            .collect(),
    }
}

pub fn seat_versions_pb(events: &[EventId], versions: Vec<i64>) -> pb::SeatVersions {
    pb::SeatVersions {
        versions: events
            .iter()
            .zip(versions)
            .map(|(event, version)| pb::SeatVersion {
                event_id: event.to_string(),
                version,
            })
            .collect(),
    }
}

pub fn seats_pb(event: &EventInfo, statuses: Vec<SeatStatus>) -> pb::ListSeatsResponse {
    let seats = event
        .seats
        .iter()
        .zip(statuses)
        .map(|(seat, status)| {
            let section = event.section_of(seat);
            pb::Seat {
                seat_id: seat.id.to_string(),
                section_id: section.id.to_string(),
                section: section.name.clone(),
                row: seat.row.clone(),
                number: seat.number.clone(),
                price: money(&section.price),
                x: seat.x,
                y: seat.y,
                status: seat_status_pb(status) as i32,
            }
        })
        .collect();
    pb::ListSeatsResponse { seats }
}

pub fn sales_pb(event: &EventInfo, sales: &[SectionSales]) -> pb::Sales {
    let currency = event.details.currency.clone();
    let revenue: i64 = sales.iter().map(|s| s.revenue_minor).sum();
    let sold: u32 = sales.iter().map(|s| s.seats_sold).sum();
    pb::Sales {
        event_id: event.id.to_string(),
        seats_sold: count(sold),
        seats_total: count(event.seats.len()),
        revenue: money(&Money {
            amount_minor: revenue,
            currency: currency.clone(),
        }),
        sections: sales
            .iter()
            .map(|s| {
                let section = &event.sections[s.section];
                pb::SectionSales {
                    section_id: section.id.to_string(),
                    name: section.name.clone(),
                    seats_sold: count(s.seats_sold),
                    seats_total: count(section.seat_count),
                    revenue: money(&Money {
                        amount_minor: s.revenue_minor,
                        currency: currency.clone(),
                    }),
                }
            })
            .collect(),
    }
}

/// The token for the next page after `offset` + `limit`, or none.
pub fn next_page_token(more: bool, offset: i64, limit: i64) -> String {
    if more {
        (offset + limit).to_string()
    } else {
        String::new()
    }
}

// ------------------------------------------------------------------ parsing

/// The role a new account asks for: buyers and sellers sign up; admins do not.
pub fn sign_up_role(role: i32) -> Result<Role, BookingError> {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Buyer) => Ok(Role::Buyer),
        Ok(pb::Role::Seller) => Ok(Role::Seller),
        _ => Err(BookingError::invalid("role", "must be BUYER or SELLER")),
    }
}

pub fn payment_method(method: i32) -> Result<PaymentMethod, BookingError> {
    match pb::PaymentMethod::try_from(method) {
        Ok(pb::PaymentMethod::Wallet) => Ok(PaymentMethod::Wallet),
        Ok(pb::PaymentMethod::Card) => Ok(PaymentMethod::Card),
        _ => Err(BookingError::invalid(
            "paymentMethod",
            "must be WALLET or CARD",
        )),
    }
}

/// A checkout's `paymentMethod` and `cardToken`: a token is required with CARD and
/// refused with WALLET ([`Payment::parse`]).
pub fn payment(method: i32, card_token: &str) -> Result<Payment, BookingError> {
    Payment::parse(payment_method(method)?, card_token)
}

/// What a `CreateHold` asks for: `seatIds`, or `quantity` with the optional
/// `sectionId` and `maxPrice` (best available), never both ([`HoldSelection::parse`]).
pub fn hold_selection(req: &pb::CreateHoldRequest) -> Result<HoldSelection, BookingError> {
    HoldSelection::parse(
        &req.seat_ids,
        req.quantity,
        &req.section_id,
        req.max_price
            .as_ref()
            .map(|price| (price.amount_minor, price.currency.as_str())),
    )
}

/// At most this many events in one `GetSeatVersions`.
const MAX_VERSION_EVENTS: usize = 1000;

pub fn seat_version_events(ids: &[String]) -> Result<Vec<EventId>, BookingError> {
    if ids.len() > MAX_VERSION_EVENTS {
        return Err(BookingError::invalid(
            "eventIds",
            "at most 1000 events per request",
        ));
    }
    ids.iter()
        .map(|id| EventId::parse("eventIds", id))
        .collect()
}

/// The caller's account id, from a verified token's subject.
pub fn token_subject(sub: &str) -> Result<AccountId, BookingError> {
    AccountId::parse("sub", sub)
        .map_err(|_| BookingError::Unauthenticated("invalid token subject".into()))
}

pub fn time(
    field: &'static str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, BookingError> {
    match t {
        None => Ok(None),
        Some(t) => u32::try_from(t.nanos)
            .ok()
            .and_then(|n| DateTime::from_timestamp(t.seconds, n))
            .map(Some)
            .ok_or_else(|| BookingError::invalid(field, "not a valid timestamp")),
    }
}

const MAX_SEATS_PER_EVENT: usize = 50_000;

/// An event's transfer rule from a request: absent is the default (allowed, at up to
/// face value).
pub fn transfer_policy(
    field_percent: &'static str,
    policy: Option<&pb::TransferPolicy>,
) -> Result<TransferPolicy, BookingError> {
    match policy {
        None => Ok(TransferPolicy::default()),
        Some(p) => TransferPolicy::parse(field_percent, p.allowed, p.max_price_percent),
    }
}

pub fn transfer_policy_pb(policy: TransferPolicy) -> pb::TransferPolicy {
    pb::TransferPolicy {
        allowed: Some(policy.allowed()),
        max_price_percent: i32::from(policy.max_price_percent()),
    }
}

pub fn parse_create_event(
    req: pb::CreateEventRequest,
    default_max_seats: u32,
) -> Result<NewEvent, BookingError> {
    let now = Utc::now();
    let starts_at = time("startsAt", req.starts_at.as_ref())?
        .ok_or_else(|| BookingError::invalid("startsAt", "is required"))?;
    if starts_at <= now {
        return Err(BookingError::invalid("startsAt", "must be in the future"));
    }
    let sale_starts_at = time("saleStartsAt", req.sale_starts_at.as_ref())?.unwrap_or(now);
    let sale_ends_at = time("saleEndsAt", req.sale_ends_at.as_ref())?.unwrap_or(starts_at);
    if sale_starts_at >= sale_ends_at {
        return Err(BookingError::invalid(
            "saleEndsAt",
            "must be after saleStartsAt",
        ));
    }
    if sale_ends_at > starts_at {
        return Err(BookingError::invalid(
            "saleEndsAt",
            "must not be after startsAt",
        ));
    }
    let max_seats_per_buyer = match req.max_seats_per_buyer {
        0 => default_max_seats,
        n @ 1..=20 => n.unsigned_abs(),
        _ => {
            return Err(BookingError::invalid(
                "maxSeatsPerBuyer",
                "must be between 1 and 20",
            ));
        }
    };
    let transfers = transfer_policy("transfers.maxPricePercent", req.transfers.as_ref())?;
    if req.sections.is_empty() {
        return Err(BookingError::invalid(
            "sections",
            "at least one section is required",
        ));
    }
    if req.sections.len() > 100 {
        return Err(BookingError::invalid("sections", "at most 100 sections"));
    }
    let mut currency: Option<Currency> = None;
    let mut names = std::collections::HashSet::new();
    let mut seat_total = 0usize;
    let mut sections = Vec::with_capacity(req.sections.len());
    for section in req.sections {
        let name = domain::text("sections.name", &section.name, 100)?;
        if !names.insert(name.clone()) {
            return Err(BookingError::invalid(
                "sections.name",
                format!("section {name:?} is listed twice"),
            ));
        }
        let price = section
            .price
            .ok_or_else(|| BookingError::invalid("sections.price", "is required"))?;
        if price.amount_minor < 0 {
            return Err(BookingError::invalid(
                "sections.price.amountMinor",
                "must not be negative",
            ));
        }
        let c = Currency::parse("sections.price.currency", &price.currency)?;
        match &currency {
            None => currency = Some(c),
            Some(existing) if *existing != c => {
                return Err(BookingError::invalid(
                    "sections.price.currency",
                    "every section must be priced in the same currency",
                ));
            }
            Some(_) => {}
        }
        if section.rows.is_empty() {
            return Err(BookingError::invalid(
                "sections.rows",
                format!("section {name:?} has no rows"),
            ));
        }
        let mut rows = Vec::with_capacity(section.rows.len());
        let mut labels = std::collections::HashSet::new();
        for row in section.rows {
            let label = domain::text("sections.rows.label", &row.label, 20)?;
            if !labels.insert(label.clone()) {
                return Err(BookingError::invalid(
                    "sections.rows.label",
                    format!("row {label:?} is listed twice"),
                ));
            }
            if row.seats.is_empty() {
                return Err(BookingError::invalid(
                    "sections.rows.seats",
                    format!("row {label:?} has no seats"),
                ));
            }
            let mut numbers = std::collections::HashSet::new();
            let mut seats = Vec::with_capacity(row.seats.len());
            for seat in row.seats {
                let number = domain::text("sections.rows.seats.number", &seat.number, 20)?;
                if !numbers.insert(number.clone()) {
                    return Err(BookingError::invalid(
                        "sections.rows.seats.number",
                        format!("seat {number:?} is listed twice in row {label:?}"),
                    ));
                }
                if !seat.x.is_finite() || !seat.y.is_finite() {
                    return Err(BookingError::invalid(
                        "sections.rows.seats",
                        "coordinates must be finite numbers",
                    ));
                }
                seats.push(NewSeat {
                    number,
                    x: seat.x,
                    y: seat.y,
                });
            }
            seat_total += seats.len();
            if seat_total > MAX_SEATS_PER_EVENT {
                return Err(BookingError::invalid(
                    "sections",
                    "too many seats for one event",
                ));
            }
            rows.push(NewRow { label, seats });
        }
        sections.push(NewSection {
            name,
            price_minor: price.amount_minor,
            rows,
        });
    }
    Ok(NewEvent {
        details: EventDetails {
            title: domain::text("title", &req.title, 200)?,
            category: domain::text("category", &req.category, 50)?,
            description: domain::long_text("description", &req.description, 10_000)?,
            venue: domain::text("venue", &req.venue, 200)?,
            starts_at,
            sale_starts_at,
            sale_ends_at,
            currency: currency.unwrap_or(Currency::parse("currency", "KRW")?),
            max_seats_per_buyer,
        },
        sections,
        transfers,
    })
}
