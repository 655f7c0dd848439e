//! The gRPC services: each RPC parses its request through [`crate::wire::api`], calls
//! the domain and renders the result through it again. Every RPC that needs identity
//! verifies the bearer token itself, whoever the caller is.

use std::sync::Arc;

use chrono::Duration;
use marquee_infra::auth::TokenKeys;
use marquee_infra::grpc::PropagateTrace;
use marquee_proto::booking::{
    self as pb, account_service_server::AccountService, booking_service_server::BookingService,
    catalog_service_server::CatalogService, saga_admin_service_server::SagaAdminService,
};
use marquee_proto::pay::payment_admin_service_client::PaymentAdminServiceClient;
use marquee_proto::pay::wallet_service_client::WalletServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use marquee_infra::outbox::Relay;

use crate::accounts::{self, Hasher, KnownAccounts, NewAccount};
use crate::bookings::Bookings;
use crate::domain::{
    self, AccountId, BookingId, Email, EventId, HoldId, IdempotencyKey, Lines, Password, Role,
    SagaTimeline, SeatId, SecondFactor, TotpCode,
};
use crate::error::BookingError;
use crate::queue::{AdmissionCheck, WaitingRooms};
use crate::two_factor::{self, TwoFactorPolicy};
use crate::wire;

pub type WalletClient = WalletServiceClient<InterceptedService<Channel, PropagateTrace>>;
/// pay-svc's internal admin service, on the same channel as [`WalletClient`].
pub type PayAdminClient = PaymentAdminServiceClient<InterceptedService<Channel, PropagateTrace>>;

/// Everything the RPCs need; shared by the three services.
#[derive(Clone)]
pub struct Api {
    pub bookings: Arc<Bookings>,
    /// The booking database, for accounts.
    pub pool: sea_orm::DatabaseConnection,
    /// Woken when sign-up wrote its `account.opened` to the outbox.
    pub relay: Relay,
    pub keys: TokenKeys,
    pub hasher: Hasher,
    pub wallet: WalletClient,
    /// pay-svc's steps of a saga, for the admin timeline.
    pub pay_admin: PayAdminClient,
    pub default_max_seats: u32,
    /// Accounts known to exist, checked for every authenticated RPC.
    pub known_accounts: KnownAccounts,
    /// The waiting rooms, and the admissions holds and checkouts need.
    pub queue: Arc<WaitingRooms>,
    /// The seat auctions.
    pub auctions: Arc<crate::auction::Auctions>,
    /// How log-ins with a second factor are policed (the lockout).
    pub two_factor: TwoFactorPolicy,
}

/// The verified caller of an RPC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) id: AccountId,
    pub(crate) role: Role,
    /// Whether the session was created with the second factor (the token's `mfa`).
    pub(crate) mfa: bool,
}

/// Who may call a selling RPC besides the SELLER role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selling {
    /// Sellers only.
    SellersOnly,
    /// Sellers, and admins (who may manage any event's waiting room).
    SellersAndAdmins,
}

impl Api {
    /// The verified caller: a valid token whose subject is an account that exists.
    /// A token signed for an account id nobody signed up with is refused, so it can
    /// neither hold seats nor get money.
    pub(crate) async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, BookingError> {
        let claims = self
            .keys
            .verify_metadata(request.metadata())
            .map_err(|e| BookingError::Unauthenticated(e.to_string()))?;
        let id = wire::api::token_subject(&claims.sub)?;
        let role = claims
            .role
            .parse()
            .map_err(|_| BookingError::Unauthenticated("invalid token role".into()))?;
        if !self.known_accounts.exists(id).await? {
            tracing::warn!(account_id = %id, "valid token for an account that does not exist");
            return Err(BookingError::Unauthenticated(
                "this account does not exist".into(),
            ));
        }
        Ok(Caller {
            id,
            role,
            mfa: claims.mfa,
        })
    }

    /// The verified caller of a selling RPC: the role it needs, and a session created
    /// with the second factor (else PERMISSION_DENIED, reason TWO_FACTOR_REQUIRED).
    /// Every selling RPC goes through here before it reads or changes anything;
    /// ownership of the event is each RPC's own check.
    pub(crate) async fn seller<T>(
        &self,
        request: &Request<T>,
        who: Selling,
        refusal: &'static str,
    ) -> Result<Caller, BookingError> {
        let caller = self.caller(request).await?;
        let allowed = caller.role == Role::Seller
            || (who == Selling::SellersAndAdmins && caller.role == Role::Admin);
        if !allowed {
            return Err(BookingError::PermissionDenied(refusal));
        }
        if !caller.mfa {
            return Err(BookingError::TwoFactorSessionRequired(
                "selling needs a session created with two-factor sign-in: enroll an authenticator (POST /v1/me/two-factor) and log in with its code",
            ));
        }
        Ok(caller)
    }
}

impl Api {
    /// An event as the API shows it, with its waiting room's settings and its
    /// transfer rule (read from the database: a seller may change it at any time).
    pub(crate) async fn event_pb(
        &self,
        event: &crate::catalog::EventInfo,
    ) -> Result<pb::Event, BookingError> {
        let policy = self.bookings.transfer_policy(event.id).await?;
        Ok(self.render_event(event, policy))
    }

    /// [`Self::event_pb`] with the transfer rule already read.
    fn render_event(
        &self,
        event: &crate::catalog::EventInfo,
        policy: crate::domain::TransferPolicy,
    ) -> pb::Event {
        let mut rendered = wire::event_pb(event);
        rendered.waiting_room = self
            .queue
            .settings(event.id)
            .map(|s| wire::queue::settings_pb(&s));
        rendered.transfers = Some(wire::api::transfer_policy_pb(policy));
        rendered
    }
}

/// The request's admission token (`x-admission-token`), if it sent one.
fn admission_token<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("x-admission-token")
        .and_then(|v| v.to_str().ok())
}

/// A request to pay-svc carrying the caller's token, which pay-svc verifies itself.
fn forwarding<T, U>(from: &Request<T>, message: U) -> Request<U> {
    let mut request = Request::new(message);
    if let Some(auth) = from.metadata().get("authorization") {
        request.metadata_mut().insert("authorization", auth.clone());
    }
    request
}

/// The request's idempotency key: the field, else the `Idempotency-Key` header.
pub(crate) fn idempotency_key<T>(
    request: &Request<T>,
    field: &str,
) -> Result<IdempotencyKey, BookingError> {
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
        let role = wire::api::sign_up_role(req.role)?;
        let new = NewAccount {
            email: Email::parse(&req.email)?,
            password: Password::parse(&req.password)?,
            display_name: domain::text("displayName", &req.display_name, 100)?,
            role,
        };
        let account = accounts::sign_up(&self.pool, &self.hasher, &self.relay, new).await?;
        self.known_accounts.remember(account.id);
        Ok(Response::new(wire::api::account_pb(&account)))
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
        let factor = SecondFactor::parse(&req.code, &req.recovery_code)?;
        // The password first: a wrong one is the same 401 with or without two-factor
        // sign-in, and is not a two-factor failure.
        let account = accounts::log_in(&self.pool, &self.hasher, &req.email, &req.password).await?;
        let mfa = two_factor::second_factor(
            &self.pool,
            account.id,
            &factor,
            self.two_factor,
            chrono::Utc::now(),
        )
        .await?;
        let (token, expires) = self
            .keys
            .issue_session(&account.id.to_string(), account.role.as_str(), mfa)
            .map_err(|e| BookingError::Internal(format!("token: {e}")))?;
        Ok(Response::new(wire::api::session_pb(
            token, expires, &account, mfa,
        )))
    }

    async fn enroll_two_factor(
        &self,
        request: Request<pb::EnrollTwoFactorRequest>,
    ) -> Result<Response<pb::EnrollTwoFactorResponse>, Status> {
        let caller = self.caller(&request).await?;
        let account = accounts::get(&self.pool, caller.id).await?;
        let enrollment = two_factor::enroll(&self.pool, &account).await?;
        Ok(Response::new(wire::api::enrollment_pb(enrollment)))
    }

    async fn confirm_two_factor(
        &self,
        request: Request<pb::ConfirmTwoFactorRequest>,
    ) -> Result<Response<pb::ConfirmTwoFactorResponse>, Status> {
        let caller = self.caller(&request).await?;
        let code = TotpCode::parse("code", &request.get_ref().code)?;
        let confirmation =
            two_factor::confirm(&self.pool, caller.id, &code, chrono::Utc::now()).await?;
        Ok(Response::new(wire::api::confirmation_pb(&confirmation)))
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Result<Response<pb::Me>, Status> {
        let caller = self.caller(&request).await?;
        let account = accounts::get(&self.pool, caller.id).await?;
        let wallet_request = forwarding(
            &request,
            marquee_proto::pay::GetWalletRequest { page_size: 1 },
        );
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
        Ok(Response::new(wire::api::me_pb(&account, wallet_balance)))
    }
}

#[tonic::async_trait]
impl CatalogService for Api {
    async fn create_event(
        &self,
        request: Request<pb::CreateEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let caller = self
            .seller(
                &request,
                Selling::SellersOnly,
                "only sellers can create events",
            )
            .await?;
        let req = request.into_inner();
        let room = wire::queue::parse_settings(req.waiting_room.as_ref())?;
        let new = wire::api::parse_create_event(req, self.default_max_seats)?;
        let event = self.bookings.create_event(caller.id, new).await?;
        if room.is_some() {
            self.queue.configure(event.id, room).await?;
        }
        Ok(Response::new(self.event_pb(&event).await?))
    }

    async fn get_seat_snapshot(
        &self,
        request: Request<pb::GetSeatSnapshotRequest>,
    ) -> Result<Response<pb::SeatSnapshot>, Status> {
        let id = EventId::parse("eventId", &request.get_ref().event_id)?;
        let event = self.bookings.event(id).await?;
        let (version, statuses) = self.bookings.seat_snapshot(&event).await?;
        let seats: Vec<SeatId> = event.seats.iter().map(|s| s.id).collect();
        Ok(Response::new(wire::api::snapshot_pb(
            id, version, &seats, statuses,
        )))
    }

    async fn get_seat_versions(
        &self,
        request: Request<pb::GetSeatVersionsRequest>,
    ) -> Result<Response<pb::SeatVersions>, Status> {
        let events = wire::api::seat_version_events(&request.get_ref().event_ids)?;
        let versions = self.bookings.seat_versions(&events).await?;
        Ok(Response::new(wire::api::seat_versions_pb(
            &events, versions,
        )))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let req = request.into_inner();
        let limit = domain::page_size(req.page_size, 20, 100)?;
        let offset = domain::page_offset(&req.page_token)?;
        let ids = self.bookings.event_ids(offset, limit + 1).await?;
        let more = ids.len() as i64 > limit;
        let ids: Vec<EventId> = ids
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        // The page's transfer rules in one query, not one per event.
        let policies = self.bookings.transfer_policies(&ids).await?;
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            let event = self.bookings.event(id).await?;
            let policy = policies.get(&id).copied().unwrap_or_default();
            events.push(self.render_event(&event, policy));
        }
        Ok(Response::new(pb::ListEventsResponse {
            next_page_token: wire::api::next_page_token(more, offset, limit),
            events,
        }))
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let id = EventId::parse("eventId", &request.get_ref().event_id)?;
        let event = self.bookings.event(id).await?;
        Ok(Response::new(self.event_pb(&event).await?))
    }

    async fn list_seats(
        &self,
        request: Request<pb::ListSeatsRequest>,
    ) -> Result<Response<pb::ListSeatsResponse>, Status> {
        let id = EventId::parse("eventId", &request.get_ref().event_id)?;
        let event = self.bookings.event(id).await?;
        let statuses = self.bookings.seat_statuses(&event).await?;
        Ok(Response::new(wire::api::seats_pb(&event, statuses)))
    }

    async fn get_sales(
        &self,
        request: Request<pb::GetSalesRequest>,
    ) -> Result<Response<pb::Sales>, Status> {
        let caller = self
            .seller(
                &request,
                Selling::SellersOnly,
                "only the event's seller can see its sales",
            )
            .await?;
        let id = EventId::parse("eventId", &request.get_ref().event_id)?;
        let event = self.bookings.event(id).await?;
        if event.seller != caller.id {
            return Err(BookingError::PermissionDenied(
                "only the event's seller can see its sales",
            )
            .into());
        }
        let sales = self.bookings.sales(&event).await?;
        Ok(Response::new(wire::api::sales_pb(&event, &sales)))
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
        let token = admission_token(&request).map(str::to_owned);
        let req = request.into_inner();
        let event = EventId::parse("eventId", &req.event_id)?;
        let admission = AdmissionCheck {
            buyer: caller.id,
            event,
            token: token.as_deref(),
        };
        self.queue.check(admission, true).await?;
        let selection = wire::api::hold_selection(&req)?;
        let hold = self.bookings.hold(caller.id, event, selection, key).await?;
        Ok(Response::new(wire::api::hold_pb(&hold)))
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
        let token = admission_token(&request).map(str::to_owned);
        let req = request.into_inner();
        let hold = HoldId::parse("holdId", &req.hold_id)?;
        let payment = wire::api::payment(req.payment_method, &req.card_token)?;
        let admission = self
            .queue
            .check_checkout(caller.id, hold, token.as_deref())
            .await?;
        let booking = self
            .bookings
            .checkout(caller.id, hold, payment, key)
            .await?;
        if let Some(ticket) = admission {
            self.queue.end_after_checkout(ticket).await;
        }
        Ok(Response::new(wire::api::booking_pb(&booking)))
    }

    async fn get_booking(
        &self,
        request: Request<pb::GetBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = self.caller(&request).await?;
        let id = BookingId::parse("bookingId", &request.get_ref().booking_id)?;
        let booking = self.bookings.get_with_history(caller.id, id).await?;
        Ok(Response::new(wire::api::booking_pb(&booking)))
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
                .map(wire::api::booking_pb)
                .collect(),
            next_page_token: wire::api::next_page_token(more, offset, limit),
        }))
    }

    async fn cancel_booking(
        &self,
        request: Request<pb::CancelBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = self.caller(&request).await?;
        let id = BookingId::parse("bookingId", &request.get_ref().booking_id)?;
        let booking = self.bookings.cancel(caller.id, id).await?;
        Ok(Response::new(wire::api::booking_pb(&booking)))
    }
}

#[tonic::async_trait]
impl SagaAdminService for Api {
    /// booking-svc's steps and pay-svc's (asked with the caller's token), merged.
    async fn get_saga_timeline(
        &self,
        request: Request<pb::GetSagaTimelineRequest>,
    ) -> Result<Response<pb::SagaTimeline>, Status> {
        let caller = self.caller(&request).await?;
        if caller.role != Role::Admin {
            return Err(
                BookingError::PermissionDenied("only admins can read saga timelines").into(),
            );
        }
        let id = BookingId::parse("bookingId", &request.get_ref().booking_id)?;
        let (booking, steps) = self.bookings.saga(id).await?;
        let asked = forwarding(
            &request,
            marquee_proto::pay::ListPaymentStepsRequest {
                booking_id: id.to_string(),
            },
        );
        let pay = match self.pay_admin.clone().list_payment_steps(asked).await {
            Ok(reply) => wire::api::pay_steps(reply.into_inner().steps)?,
            Err(status) if status.code() == tonic::Code::PermissionDenied => {
                return Err(BookingError::PermissionDenied(
                    "pay-svc refused this caller its payment steps",
                )
                .into());
            }
            Err(status) => {
                return Err(
                    BookingError::Unavailable(format!("pay-svc: {}", status.message())).into(),
                );
            }
        };
        let timeline = SagaTimeline::merged(booking, steps, pay);
        Ok(Response::new(wire::api::saga_timeline_pb(&timeline)))
    }
}

/// How long issued tokens live.
pub fn token_ttl(minutes: i64) -> Duration {
    Duration::minutes(minutes)
}
