//! The gRPC edge: prost types are parsed into domain types here and nowhere else, and
//! domain results are rendered back. Every RPC that needs identity verifies the bearer
//! token itself, whoever the caller is.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use marquee_infra::auth::TokenKeys;
use marquee_infra::grpc::PropagateTrace;
use marquee_proto::booking::{
    self as pb, account_service_server::AccountService, booking_service_server::BookingService,
    catalog_service_server::CatalogService,
};
use marquee_proto::pay::wallet_service_client::WalletServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::accounts::{self, Account, Hasher, KnownAccounts, NewAccount};
use crate::bookings::{Booking, Bookings};
use crate::catalog::{self, EventDetails, EventInfo, NewEvent, NewRow, NewSeat, NewSection};
use crate::domain::{
    self, AccountId, BookingId, BookingStatus, Currency, Email, EventId, HoldId, IdempotencyKey,
    Lines, Money, Password, PaymentMethod, Role, SeatId, SeatSelection, SeatStatus,
};
use crate::error::BookingError;

fn seat_status_pb(status: SeatStatus) -> pb::SeatStatus {
    match status {
        SeatStatus::Available => pb::SeatStatus::Available,
        SeatStatus::Held => pb::SeatStatus::Held,
        SeatStatus::Sold => pb::SeatStatus::Sold,
    }
}

pub type WalletClient = WalletServiceClient<InterceptedService<Channel, PropagateTrace>>;

/// Everything the RPCs need; shared by the three services.
#[derive(Clone)]
pub struct Api {
    pub bookings: Arc<Bookings>,
    pub keys: TokenKeys,
    pub hasher: Hasher,
    pub wallet: WalletClient,
    pub default_max_seats: u32,
    /// Accounts known to exist, checked for every authenticated RPC.
    pub known_accounts: KnownAccounts,
}

/// The verified caller of an RPC.
#[derive(Debug, Clone, Copy)]
struct Caller {
    id: AccountId,
    role: Role,
}

impl Api {
    /// The verified caller: a valid token whose subject is an account that exists.
    /// A token signed for an account id nobody signed up with is refused, so it can
    /// neither hold seats nor get money.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, BookingError> {
        let claims = self
            .keys
            .verify_metadata(request.metadata())
            .map_err(|e| BookingError::Unauthenticated(e.to_string()))?;
        let id = AccountId::parse("sub", &claims.sub)
            .map_err(|_| BookingError::Unauthenticated("invalid token subject".into()))?;
        let role = claims
            .role
            .parse()
            .map_err(|_| BookingError::Unauthenticated("invalid token role".into()))?;
        if !self.known_accounts.exists(self.pool(), id).await? {
            tracing::warn!(account_id = %id, "valid token for an account that does not exist");
            return Err(BookingError::Unauthenticated(
                "this account does not exist".into(),
            ));
        }
        Ok(Caller { id, role })
    }

    fn pool(&self) -> &sqlx::PgPool {
        &self.bookings.pool
    }
}

// ------------------------------------------------------------------ rendering

pub(crate) fn timestamp(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// A count for a proto `int32` field (saturating; counts here stay far below it).
fn count(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

fn money(m: &Money) -> Option<marquee_proto::Money> {
    Some(marquee_proto::Money {
        amount_minor: m.amount_minor,
        currency: m.currency.as_str().to_owned(),
    })
}

fn role_pb(role: Role) -> pb::Role {
    match role {
        Role::Buyer => pb::Role::Buyer,
        Role::Seller => pb::Role::Seller,
        Role::Admin => pb::Role::Admin,
    }
}

fn account_pb(a: &Account) -> pb::Account {
    pb::Account {
        account_id: a.id.to_string(),
        email: a.email.clone(),
        display_name: a.display_name.clone(),
        role: role_pb(a.role) as i32,
        created_at: timestamp(a.created_at),
    }
}

fn event_pb(e: &EventInfo) -> pb::Event {
    let d = &e.details;
    pb::Event {
        event_id: e.id.to_string(),
        seller_id: e.seller.to_string(),
        title: d.title.clone(),
        category: d.category.clone(),
        description: d.description.clone(),
        venue: d.venue.clone(),
        starts_at: timestamp(d.starts_at),
        sale_starts_at: timestamp(d.sale_starts_at),
        sale_ends_at: timestamp(d.sale_ends_at),
        sections: e
            .sections
            .iter()
            .map(|s| pb::Section {
                section_id: s.id.to_string(),
                name: s.name.clone(),
                price: money(&s.price),
                seat_count: count(s.seat_count),
            })
            .collect(),
        max_seats_per_buyer: count(d.max_seats_per_buyer),
        seat_count: count(e.seats.len()),
        created_at: timestamp(e.created_at),
    }
}

pub(crate) fn status_pb(s: BookingStatus) -> pb::BookingStatus {
    match s {
        BookingStatus::PendingPayment => pb::BookingStatus::PendingPayment,
        BookingStatus::Confirmed => pb::BookingStatus::Confirmed,
        BookingStatus::Cancelling => pb::BookingStatus::Cancelling,
        BookingStatus::Cancelled => pb::BookingStatus::Cancelled,
    }
}

fn booking_pb(b: &Booking) -> pb::Booking {
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
        payment_method: match b.method {
            PaymentMethod::Wallet => pb::PaymentMethod::Wallet as i32,
        },
        cancel_reason: b.cancel_reason.clone(),
        created_at: timestamp(b.created_at),
        updated_at: timestamp(b.updated_at),
    }
}

// ------------------------------------------------------------------ parsing

fn time(
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

fn parse_create_event(
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
    })
}

/// The request's idempotency key: the field, else the `Idempotency-Key` header.
fn idempotency_key<T>(request: &Request<T>, field: &str) -> Result<IdempotencyKey, BookingError> {
    optional_idempotency_key(request, field)?.ok_or_else(|| {
        BookingError::invalid("idempotencyKey", "an Idempotency-Key header is required")
    })
}

/// Like [`idempotency_key`], for requests where the key is optional.
fn optional_idempotency_key<T>(
    request: &Request<T>,
    field: &str,
) -> Result<Option<IdempotencyKey>, BookingError> {
    if !field.is_empty() {
        return IdempotencyKey::parse(field).map(Some);
    }
    let header = request
        .metadata()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| BookingError::invalid("idempotencyKey", "must be ASCII"))
        })
        .transpose()?
        .unwrap_or_default();
    if header.trim().is_empty() {
        return Ok(None);
    }
    IdempotencyKey::parse(header).map(Some)
}

// ------------------------------------------------------------------ services

#[tonic::async_trait]
impl AccountService for Api {
    async fn sign_up(
        &self,
        request: Request<pb::SignUpRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let req = request.into_inner();
        let role = match pb::Role::try_from(req.role) {
            Ok(pb::Role::Buyer) => Role::Buyer,
            Ok(pb::Role::Seller) => Role::Seller,
            _ => return Err(BookingError::invalid("role", "must be BUYER or SELLER").into()),
        };
        let new = NewAccount {
            email: Email::parse(&req.email)?,
            password: Password::parse(&req.password)?,
            display_name: domain::text("displayName", &req.display_name, 100)?,
            role,
        };
        let account =
            accounts::sign_up(self.pool(), &self.hasher, &self.bookings.relay, new).await?;
        self.known_accounts.remember(account.id);
        Ok(Response::new(account_pb(&account)))
    }

    async fn log_in(
        &self,
        request: Request<pb::LogInRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        // The email is looked up in the database (trimmed, as `Email::parse` does); the
        // password is only hashed, and one set before control characters were refused
        // must still log in.
        domain::storable("email", req.email.trim(), Lines::One)?;
        let account =
            accounts::log_in(self.pool(), &self.hasher, &req.email, &req.password).await?;
        let (token, expires) = self
            .keys
            .issue(&account.id.to_string(), account.role.as_str())
            .map_err(|e| BookingError::Internal(format!("token: {e}")))?;
        Ok(Response::new(pb::Session {
            access_token: token,
            token_type: "Bearer".into(),
            expires_at: timestamp(expires),
            account: Some(account_pb(&account)),
        }))
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Result<Response<pb::Me>, Status> {
        let caller = self.caller(&request).await?;
        let account = accounts::get(self.pool(), caller.id).await?;
        let mut wallet_request =
            Request::new(marquee_proto::pay::GetWalletRequest { page_size: 1 });
        if let Some(auth) = request.metadata().get("authorization") {
            wallet_request
                .metadata_mut()
                .insert("authorization", auth.clone());
        }
        // A new account's wallet is opened by pay-svc once it consumed the sign-up's
        // account.opened; until then there is no balance to show, which is not an error.
        let wallet_balance = match self.wallet.clone().get_wallet(wallet_request).await {
            Ok(wallet) => wallet.into_inner().balance,
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => {
                return Err(
                    BookingError::Unavailable(format!("pay-svc: {}", status.message())).into(),
                );
            }
        };
        Ok(Response::new(pb::Me {
            account: Some(account_pb(&account)),
            wallet_balance,
        }))
    }
}

#[tonic::async_trait]
impl CatalogService for Api {
    async fn create_event(
        &self,
        request: Request<pb::CreateEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let caller = self.caller(&request).await?;
        if caller.role != Role::Seller {
            return Err(BookingError::PermissionDenied("only sellers can create events").into());
        }
        let new = parse_create_event(request.into_inner(), self.default_max_seats)?;
        let id = catalog::create_event(self.pool(), caller.id, new).await?;
        let event = event_pb(&*self.bookings.catalog.event(self.pool(), id).await?);
        self.bookings.changes.event(event.clone());
        Ok(Response::new(event))
    }

    async fn get_seat_snapshot(
        &self,
        request: Request<pb::GetSeatSnapshotRequest>,
    ) -> Result<Response<pb::SeatSnapshot>, Status> {
        let id = EventId::parse("eventId", &request.get_ref().event_id)?;
        let event = self.bookings.catalog.event(self.pool(), id).await?;
        let seat_ids: Vec<SeatId> = event.seats.iter().map(|s| s.id).collect();
        let (version, statuses) = self.bookings.holds.snapshot(id, &seat_ids).await?;
        Ok(Response::new(pb::SeatSnapshot {
            event_id: id.to_string(),
            version,
            seats: seat_ids
                .iter()
                .zip(statuses)
                .map(|(seat, status)| pb::SeatState {
                    seat_id: seat.to_string(),
                    status: seat_status_pb(status) as i32,
                })
                .collect(),
        }))
    }

    async fn get_seat_versions(
        &self,
        request: Request<pb::GetSeatVersionsRequest>,
    ) -> Result<Response<pb::SeatVersions>, Status> {
        /// Most events one request may ask about.
        const MAX_EVENTS: usize = 1000;
        let ids = &request.get_ref().event_ids;
        if ids.len() > MAX_EVENTS {
            return Err(
                BookingError::invalid("eventIds", "at most 1000 events per request").into(),
            );
        }
        let events = ids
            .iter()
            .map(|id| EventId::parse("eventIds", id))
            .collect::<Result<Vec<_>, _>>()?;
        let versions = self.bookings.holds.seat_versions(&events).await?;
        Ok(Response::new(pb::SeatVersions {
            versions: events
                .iter()
                .zip(versions)
                .map(|(event, version)| pb::SeatVersion {
                    event_id: event.to_string(),
                    version,
                })
                .collect(),
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let req = request.into_inner();
        let limit = domain::page_size(req.page_size, 20, 100)?;
        let offset = domain::page_offset(&req.page_token)?;
        let ids = catalog::list_event_ids(self.pool(), offset, limit + 1).await?;
        let more = ids.len() as i64 > limit;
        let mut events = Vec::with_capacity(ids.len());
        for id in ids.into_iter().take(usize::try_from(limit).unwrap_or(0)) {
            events.push(event_pb(
                &*self.bookings.catalog.event(self.pool(), id).await?,
            ));
        }
        Ok(Response::new(pb::ListEventsResponse {
            next_page_token: if more {
                (offset + limit).to_string()
            } else {
                String::new()
            },
            events,
        }))
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let id = EventId::parse("eventId", &request.get_ref().event_id)?;
        let event = self.bookings.catalog.event(self.pool(), id).await?;
        Ok(Response::new(event_pb(&event)))
    }

    async fn list_seats(
        &self,
        request: Request<pb::ListSeatsRequest>,
    ) -> Result<Response<pb::ListSeatsResponse>, Status> {
        let id = EventId::parse("eventId", &request.get_ref().event_id)?;
        let event = self.bookings.catalog.event(self.pool(), id).await?;
        let statuses = catalog::seat_statuses(self.pool(), &self.bookings.holds, &event).await?;
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
        Ok(Response::new(pb::ListSeatsResponse { seats }))
    }

    async fn get_sales(
        &self,
        request: Request<pb::GetSalesRequest>,
    ) -> Result<Response<pb::Sales>, Status> {
        let caller = self.caller(&request).await?;
        let id = EventId::parse("eventId", &request.get_ref().event_id)?;
        let event = self.bookings.catalog.event(self.pool(), id).await?;
        if event.seller != caller.id {
            return Err(BookingError::PermissionDenied(
                "only the event's seller can see its sales",
            )
            .into());
        }
        let sales = catalog::sales(self.pool(), &event).await?;
        let currency = event.details.currency.clone();
        let revenue: i64 = sales.iter().map(|s| s.revenue_minor).sum();
        let sold: u32 = sales.iter().map(|s| s.seats_sold).sum();
        Ok(Response::new(pb::Sales {
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
        }))
    }
}

#[tonic::async_trait]
impl BookingService for Api {
    async fn create_hold(
        &self,
        request: Request<pb::CreateHoldRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        let caller = self.caller(&request).await?;
        let key = optional_idempotency_key(&request, &request.get_ref().idempotency_key)?;
        let req = request.into_inner();
        let event = EventId::parse("eventId", &req.event_id)?;
        let selection = SeatSelection::parse(&req.seat_ids)?;
        let hold = self.bookings.hold(caller.id, event, selection, key).await?;
        Ok(Response::new(pb::Hold {
            hold_id: hold.hold_id.to_string(),
            event_id: hold.event.to_string(),
            seat_ids: hold.seats.iter().map(ToString::to_string).collect(),
            expires_at: timestamp(hold.expires_at),
            total: money(&hold.total),
        }))
    }

    async fn release_hold(
        &self,
        request: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&request).await?;
        let hold = HoldId::parse("holdId", &request.get_ref().hold_id)?;
        self.bookings.release(caller.id, hold).await?;
        Ok(Response::new(()))
    }

    async fn create_booking(
        &self,
        request: Request<pb::CreateBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = self.caller(&request).await?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key)?;
        let req = request.into_inner();
        let hold = HoldId::parse("holdId", &req.hold_id)?;
        let method = match pb::PaymentMethod::try_from(req.payment_method) {
            Ok(pb::PaymentMethod::Wallet) => PaymentMethod::Wallet,
            _ => return Err(BookingError::invalid("paymentMethod", "must be WALLET").into()),
        };
        let booking = self.bookings.checkout(caller.id, hold, method, key).await?;
        Ok(Response::new(booking_pb(&booking)))
    }

    async fn get_booking(
        &self,
        request: Request<pb::GetBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = self.caller(&request).await?;
        let id = BookingId::parse("bookingId", &request.get_ref().booking_id)?;
        let booking = self.bookings.get(caller.id, id).await?;
        Ok(Response::new(booking_pb(&booking)))
    }

    async fn list_bookings(
        &self,
        request: Request<pb::ListBookingsRequest>,
    ) -> Result<Response<pb::ListBookingsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let limit = domain::page_size(req.page_size, 20, 100)?;
        let offset = domain::page_offset(&req.page_token)?;
        let bookings = self.bookings.list(caller.id, offset, limit + 1).await?;
        let more = bookings.len() as i64 > limit;
        Ok(Response::new(pb::ListBookingsResponse {
            bookings: bookings
                .iter()
                .take(usize::try_from(limit).unwrap_or(0))
                .map(booking_pb)
                .collect(),
            next_page_token: if more {
                (offset + limit).to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn cancel_booking(
        &self,
        request: Request<pb::CancelBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = self.caller(&request).await?;
        let id = BookingId::parse("bookingId", &request.get_ref().booking_id)?;
        let booking = self.bookings.cancel(caller.id, id).await?;
        Ok(Response::new(booking_pb(&booking)))
    }
}

/// How long issued tokens live.
pub fn token_ttl(minutes: i64) -> Duration {
    Duration::minutes(minutes)
}
