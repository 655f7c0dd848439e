//! The whole system in one process, for the end-to-end tests and the benchmarks.
//!
//! - [`system`]: pay-svc, booking-svc, realtime-svc replicas and the gateway
//!   ([`System`], [`Options`], the SSE client [`SseStream`]).
//! - [`search`]: booking-svc, search-svc and the gateway, for discovery.
//! - [`checks`]: the invariants every sale must keep, written once: no seat is sold
//!   twice and the seat map agrees with the bookings ([`checks::Oversell`]); no money
//!   is created or lost ([`checks::Money`]).
//!
//! Everything runs against the real local PostgreSQL, Redis and RabbitMQ; each system
//! has its own databases, Redis key prefix and bus names and removes them when stopped.

pub mod checks;
pub mod search;
pub mod system;

pub use checks::{CardMoney, Money, Oversell, WELCOME_CREDIT_MINOR};
pub use marquee_testkit::Reply;
pub use system::{JWT_SECRET, Options, PASSWORD, Seller, SseEvent, SseStream, System, event_body};
