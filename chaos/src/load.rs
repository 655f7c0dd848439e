//! The load: buyers and sellers signed up over gRPC, events, and sagas (hold, then
//! CreateBooking with WALLET or CARD) driven straight at booking-svc, each call retried
//! with the same idempotency key while booking-svc is down or its Redis is restoring.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use marquee_proto::Money;
use marquee_proto::booking::account_service_client::AccountServiceClient;
use marquee_proto::booking::booking_service_client::BookingServiceClient;
use marquee_proto::booking::catalog_service_client::CatalogServiceClient;
use marquee_proto::booking::{
    BookingStatus, CancelBookingRequest, ConfirmTwoFactorRequest, CreateBookingRequest,
    CreateEventRequest, CreateHoldRequest, EnrollTwoFactorRequest, GetBookingRequest,
    ListSeatsRequest, LogInRequest, PaymentMethod, ReleaseHoldRequest, Role, RowInput, SeatInput,
    SectionInput, SignUpRequest,
};
use marquee_testkit::totp::Authenticator;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

/// How long one call is retried while it fails transiently.
const CALL_BOUND: Duration = Duration::from_secs(90);

/// Every account's password.
const PASSWORD: &str = "correct horse battery";

/// A signed-up account: id, email and bearer token.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// What one saga does.
#[derive(Debug, Clone)]
pub struct SagaSpec {
    pub buyer: usize,
    pub event_id: String,
    pub seats: Vec<String>,
    /// `None` pays with the wallet; `Some(token)` with a card.
    pub card_token: Option<&'static str>,
    /// Wait for CONFIRMED, then cancel (the refund saga).
    pub cancel_after_confirm: bool,
}

/// How a saga ended on the client side.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The booking booking-svc accepted (202).
    pub booking_id: Option<String>,
    /// The seats were taken by someone else (no booking: not a saga).
    pub refused: bool,
    /// Refused at checkout: the hold succeeded but PostgreSQL found the seats in
    /// another active booking (after a Redis loss).
    pub checkout_conflict: bool,
    /// The last error when the saga could not even be started.
    pub error: Option<String>,
}

/// Sagas the driver finished with, for the faults that fire by progress.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicUsize,
    pub total: AtomicUsize,
}

impl Progress {
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(total),
        })
    }

    /// The fraction of the sagas done, 0..=1.
    pub fn fraction(&self) -> f64 {
        let total = self.total.load(Ordering::Relaxed).max(1);
        self.done.load(Ordering::Relaxed) as f64 / total as f64
    }

    /// Waits until `fraction` of the sagas are done.
    pub async fn reached(&self, fraction: f64) {
        while self.fraction() < fraction {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn authed<T>(message: T, token: &str) -> Result<Request<T>> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow!("token is not a header value"))?,
    );
    Ok(request)
}

/// Whether a failed call may be retried as it is.
fn transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Internal
        | Code::ResourceExhausted => true,
        Code::Aborted => status.message().contains("in progress"),
        _ => false,
    }
}

/// `call` until it succeeds, fails for good, or [`CALL_BOUND`] passes.
async fn retry<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status) if transient(&status) && started.elapsed() < CALL_BOUND => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(1000));
            }
            Err(status) => return Err(status),
        }
    }
}

/// The gRPC side of the load.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
}

impl Client {
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }

    fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }

    fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel.clone())
    }

    fn bookings(&self) -> BookingServiceClient<Channel> {
        BookingServiceClient::new(self.channel.clone())
    }

    /// Signs up and logs in one account.
    pub async fn account(&self, role: Role) -> Result<Account> {
        let email = format!("chaos-{}@example.com", Uuid::new_v4().simple());
        let password = PASSWORD.to_owned();
        let signed = retry(|| {
            let mut client = self.accounts();
            let request = SignUpRequest {
                email: email.clone(),
                password: password.clone(),
                display_name: "Chaos".to_owned(),
                role: role as i32,
            };
            async move { client.sign_up(request).await }
        })
        .await;
        // A sign-up whose answer was lost is already there: log in decides.
        if let Err(status) = &signed
            && status.code() != Code::AlreadyExists
        {
            bail!("sign-up: {status}");
        }
        let session = retry(|| {
            let mut client = self.accounts();
            let request = LogInRequest {
                email: email.clone(),
                password: password.clone(),
                ..LogInRequest::default()
            };
            async move { client.log_in(request).await }
        })
        .await
        .map_err(|status| anyhow!("log-in: {status}"))?
        .into_inner();
        let id = session
            .account
            .map(|a| a.account_id)
            .context("log-in answered no account")?;
        let token = if role == Role::Seller {
            self.two_factor(&email, &session.access_token).await?
        } else {
            session.access_token
        };
        Ok(Account { id, email, token })
    }

    /// Enrolls and confirms a TOTP authenticator for the account of `token` and logs in
    /// with a code: a session with the second factor, which selling needs. Each attempt
    /// of a retried log-in takes a fresh code (a code is accepted once).
    async fn two_factor(&self, email: &str, token: &str) -> Result<String> {
        let enrolled = retry(|| {
            let mut client = self.accounts();
            let request = authed(EnrollTwoFactorRequest {}, token);
            async move {
                match request {
                    Ok(request) => client.enroll_two_factor(request).await,
                    Err(error) => Err(Status::invalid_argument(error.to_string())),
                }
            }
        })
        .await
        .map_err(|status| anyhow!("two-factor enrolment: {status}"))?
        .into_inner();
        let authenticator = Arc::new(tokio::sync::Mutex::new(Authenticator::new(enrolled.secret)));
        let confirmed = retry(|| {
            let mut client = self.accounts();
            let authenticator = authenticator.clone();
            async move {
                let code = authenticator.lock().await.next_code().await;
                match authed(ConfirmTwoFactorRequest { code }, token) {
                    Ok(request) => client.confirm_two_factor(request).await.map(|_| ()),
                    Err(error) => Err(Status::invalid_argument(error.to_string())),
                }
            }
        })
        .await;
        // A confirmation whose answer was lost is already there.
        if let Err(status) = confirmed
            && status.code() != Code::AlreadyExists
        {
            bail!("two-factor confirmation: {status}");
        }
        let session = retry(|| {
            let mut client = self.accounts();
            let authenticator = authenticator.clone();
            let email = email.to_owned();
            async move {
                let code = authenticator.lock().await.next_code().await;
                let request = LogInRequest {
                    email,
                    password: PASSWORD.to_owned(),
                    code,
                    recovery_code: String::new(),
                };
                client.log_in(request).await
            }
        })
        .await
        .map_err(|status| anyhow!("log-in with a two-factor code: {status}"))?
        .into_inner();
        Ok(session.access_token)
    }

    /// Logs `account` in again (after its role changed); its new token.
    pub async fn relog(&self, account: &Account) -> Result<String> {
        let session = retry(|| {
            let mut client = self.accounts();
            let request = LogInRequest {
                email: account.email.clone(),
                password: PASSWORD.to_owned(),
                ..LogInRequest::default()
            };
            async move { client.log_in(request).await }
        })
        .await
        .map_err(|status| anyhow!("log-in: {status}"))?
        .into_inner();
        Ok(session.access_token)
    }

    /// `count` buyers, signed up `concurrency` at a time.
    pub async fn buyers(&self, count: usize, concurrency: usize) -> Result<Vec<Account>> {
        futures::stream::iter(0..count)
            .map(|_| self.account(Role::Buyer))
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// An event on sale now with `seats` seats at `price` KRW, rows of 100; returns its
    /// id and seat ids.
    pub async fn event(
        &self,
        seller: &Account,
        seats: usize,
        price: i64,
        max_per_buyer: i32,
    ) -> Result<(String, Vec<String>)> {
        let starts = chrono::Utc::now() + chrono::Duration::days(30);
        let rows: Vec<RowInput> = (0..seats.div_ceil(100))
            .map(|r| RowInput {
                label: format!("R{r}"),
                seats: (0..(seats - r * 100).min(100))
                    .map(|n| SeatInput {
                        number: (n + 1).to_string(),
                        x: n as f64 * 10.0,
                        y: r as f64 * 10.0,
                    })
                    .collect(),
            })
            .collect();
        let request = CreateEventRequest {
            title: "Chaos Night".to_owned(),
            category: "CONCERT".to_owned(),
            description: "chaos suite".to_owned(),
            venue: "Loopback Hall".to_owned(),
            starts_at: Some(prost_types::Timestamp {
                seconds: starts.timestamp(),
                nanos: 0,
            }),
            sale_starts_at: None,
            sale_ends_at: None,
            waiting_room: None,
            transfers: None,
            sections: vec![SectionInput {
                name: "GA".to_owned(),
                price: Some(Money {
                    amount_minor: price,
                    currency: "KRW".to_owned(),
                }),
                rows,
            }],
            max_seats_per_buyer: max_per_buyer,
        };
        let event = retry(|| {
            let mut client = self.catalog();
            let request = authed(request.clone(), &seller.token);
            async move {
                match request {
                    Ok(request) => client.create_event(request).await,
                    Err(error) => Err(Status::invalid_argument(error.to_string())),
                }
            }
        })
        .await
        .map_err(|status| anyhow!("create event: {status}"))?
        .into_inner();
        let seats = self.seat_statuses(&event.event_id).await?;
        Ok((
            event.event_id,
            seats.into_iter().map(|(id, _)| id).collect(),
        ))
    }

    /// Every seat of an event with its status (`ListSeats`).
    pub async fn seat_statuses(&self, event_id: &str) -> Result<Vec<(String, i32)>> {
        let seats = retry(|| {
            let mut client = self.catalog();
            let request = ListSeatsRequest {
                event_id: event_id.to_owned(),
            };
            async move { client.list_seats(request).await }
        })
        .await
        .map_err(|status| anyhow!("list seats: {status}"))?
        .into_inner();
        Ok(seats
            .seats
            .into_iter()
            .map(|s| (s.seat_id, s.status))
            .collect())
    }

    /// The seat statuses of one snapshot (`GetSeatSnapshot`).
    pub async fn snapshot(&self, event_id: &str) -> Result<Vec<(String, i32)>> {
        let snapshot = retry(|| {
            let mut client = self.catalog();
            let request = marquee_proto::booking::GetSeatSnapshotRequest {
                event_id: event_id.to_owned(),
            };
            async move { client.get_seat_snapshot(request).await }
        })
        .await
        .map_err(|status| anyhow!("seat snapshot: {status}"))?
        .into_inner();
        Ok(snapshot
            .seats
            .into_iter()
            .map(|s| (s.seat_id, s.status))
            .collect())
    }

    /// One saga: hold (up to three fresh holds when a checkout finds its hold gone),
    /// check out, and optionally cancel once confirmed.
    pub async fn saga(&self, buyer: &Account, spec: &SagaSpec) -> Outcome {
        let mut last_error = None;
        for _attempt in 0..3 {
            let hold_key = format!("h-{}", Uuid::new_v4().simple());
            let hold = retry(|| {
                let mut client = self.bookings();
                let request = authed(
                    CreateHoldRequest {
                        event_id: spec.event_id.clone(),
                        seat_ids: spec.seats.clone(),
                        idempotency_key: hold_key.clone(),
                        ..Default::default()
                    },
                    &buyer.token,
                );
                async move {
                    match request {
                        Ok(request) => client.create_hold(request).await,
                        Err(error) => Err(Status::invalid_argument(error.to_string())),
                    }
                }
            })
            .await;
            let hold = match hold {
                Ok(hold) => hold.into_inner(),
                Err(status) if status.code() == Code::Aborted => {
                    return Outcome {
                        refused: true,
                        ..Outcome::default()
                    };
                }
                Err(status) => {
                    last_error = Some(format!("hold: {status}"));
                    continue;
                }
            };
            let booking_key = format!("b-{}", Uuid::new_v4().simple());
            let booked = retry(|| {
                let mut client = self.bookings();
                let request = authed(
                    CreateBookingRequest {
                        hold_id: hold.hold_id.clone(),
                        payment_method: if spec.card_token.is_some() {
                            PaymentMethod::Card as i32
                        } else {
                            PaymentMethod::Wallet as i32
                        },
                        idempotency_key: booking_key.clone(),
                        card_token: spec.card_token.unwrap_or_default().to_owned(),
                    },
                    &buyer.token,
                );
                async move {
                    match request {
                        Ok(request) => client.create_booking(request).await,
                        Err(error) => Err(Status::invalid_argument(error.to_string())),
                    }
                }
            })
            .await;
            match booked {
                Ok(booking) => {
                    let booking = booking.into_inner();
                    if spec.cancel_after_confirm {
                        self.cancel_when_confirmed(buyer, &booking.booking_id).await;
                    }
                    return Outcome {
                        booking_id: Some(booking.booking_id),
                        ..Outcome::default()
                    };
                }
                Err(status) if status.code() == Code::Aborted => {
                    // The seats went to another booking (PostgreSQL decided).
                    self.release(buyer, &hold.hold_id).await;
                    return Outcome {
                        refused: true,
                        checkout_conflict: true,
                        ..Outcome::default()
                    };
                }
                Err(status) => {
                    self.release(buyer, &hold.hold_id).await;
                    last_error = Some(format!("checkout: {status}"));
                }
            }
        }
        Outcome {
            error: last_error,
            ..Outcome::default()
        }
    }

    async fn release(&self, buyer: &Account, hold_id: &str) {
        let _ = retry(|| {
            let mut client = self.bookings();
            let request = authed(
                ReleaseHoldRequest {
                    hold_id: hold_id.to_owned(),
                },
                &buyer.token,
            );
            async move {
                match request {
                    Ok(request) => client.release_hold(request).await,
                    Err(error) => Err(Status::invalid_argument(error.to_string())),
                }
            }
        })
        .await;
    }

    /// Polls the booking (up to 60 s) and cancels it once CONFIRMED.
    async fn cancel_when_confirmed(&self, buyer: &Account, booking_id: &str) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let booking = retry(|| {
                let mut client = self.bookings();
                let request = authed(
                    GetBookingRequest {
                        booking_id: booking_id.to_owned(),
                    },
                    &buyer.token,
                );
                async move {
                    match request {
                        Ok(request) => client.get_booking(request).await,
                        Err(error) => Err(Status::invalid_argument(error.to_string())),
                    }
                }
            })
            .await;
            let Ok(booking) = booking else { return };
            let status = booking.into_inner().status;
            if status == BookingStatus::Confirmed as i32 {
                let _ = retry(|| {
                    let mut client = self.bookings();
                    let request = authed(
                        CancelBookingRequest {
                            booking_id: booking_id.to_owned(),
                        },
                        &buyer.token,
                    );
                    async move {
                        match request {
                            Ok(request) => client.cancel_booking(request).await,
                            Err(error) => Err(Status::invalid_argument(error.to_string())),
                        }
                    }
                })
                .await;
                return;
            }
            if status != BookingStatus::PendingPayment as i32 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `specs`, `concurrency` at a time, counting each finished saga in `progress`.
    pub async fn drive(
        &self,
        buyers: &[Account],
        specs: Vec<SagaSpec>,
        concurrency: usize,
        progress: Arc<Progress>,
    ) -> Vec<Outcome> {
        futures::stream::iter(specs)
            .map(|spec| {
                let progress = progress.clone();
                async move {
                    let outcome = match buyers.get(spec.buyer) {
                        Some(buyer) => self.saga(buyer, &spec).await,
                        None => Outcome {
                            error: Some(format!("no buyer {}", spec.buyer)),
                            ..Outcome::default()
                        },
                    };
                    progress.done.fetch_add(1, Ordering::Relaxed);
                    outcome
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    }

    /// Contention: each buyer tries the seats in its own random order until one hold
    /// and checkout succeed or every seat was refused.
    pub async fn crowd(
        &self,
        buyers: &[Account],
        event_id: &str,
        seats: &[String],
        card_every: usize,
        concurrency: usize,
        progress: Arc<Progress>,
    ) -> Vec<Outcome> {
        use rand::seq::SliceRandom;
        // Every checkout here is paid with an approving card or a funded wallet: once
        // there are as many bookings as seats, the event is sold out.
        let booked = Arc::new(AtomicUsize::new(0));
        futures::stream::iter(buyers.iter().enumerate())
            .map(|(i, buyer)| {
                let progress = progress.clone();
                let booked = booked.clone();
                let mut order: Vec<String> = seats.to_vec();
                order.shuffle(&mut rand::rng());
                async move {
                    let mut outcome = Outcome {
                        refused: true,
                        ..Outcome::default()
                    };
                    for seat in order {
                        if booked.load(Ordering::Relaxed) >= seats.len() {
                            break;
                        }
                        let spec = SagaSpec {
                            buyer: i,
                            event_id: event_id.to_owned(),
                            seats: vec![seat],
                            card_token: (card_every > 0 && i % card_every == 0)
                                .then_some("tok_approve"),
                            cancel_after_confirm: false,
                        };
                        outcome = self.saga(buyer, &spec).await;
                        if outcome.booking_id.is_some() {
                            booked.fetch_add(1, Ordering::Relaxed);
                        }
                        if !outcome.refused {
                            break;
                        }
                    }
                    progress.done.fetch_add(1, Ordering::Relaxed);
                    outcome
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    }
}
