//! booking-svc: the saga owner. Accounts, the catalog, seat holds in Redis, bookings in
//! Postgres, and booking-svc's half of the payment saga over RabbitMQ.

pub mod accounts;
pub mod bookings;
pub mod catalog;
pub mod changes;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod holds;
pub mod seat_relay;
pub mod startup;
pub mod wire;

pub use startup::{Application, BookingConfig};
