//! realtime-svc: live views for buyers. It keeps, per watched event, the seat statuses
//! and the latest changes in memory (and, per watched waiting room, how far its queue
//! has advanced), fed by booking-svc's change events (every replica subscribes with a
//! queue of its own), and streams them over server-streaming gRPC, which the gateway
//! serves as SSE. Stateless: everything is re-read from booking-svc.

pub mod app;
pub mod auctions;
pub mod bookings;
pub mod config;
pub mod error;
pub mod grpc;
pub mod queue;
pub mod seats;

pub use app::Application;
pub use config::RealtimeConfig;
