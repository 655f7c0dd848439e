//! Marquee's public door: REST/JSON in front of the gRPC services.
//!
//! Every route comes from a `google.api.http` annotation in `proto/` (read from
//! [`marquee_proto::DESCRIPTOR_SET`] at start-up) and is transcoded by one generic
//! handler; server-streaming RPCs become SSE streams, one upstream stream per distinct request
//! of a shared route fanned out to all its clients. Nothing here knows a domain type. Around it: bearer-token checks at the
//! edge (and admission tokens of waiting rooms), request ids, traces, CORS, body limits, rate limits shared through Redis,
//! Prometheus metrics, health and an OpenAPI document generated from the same route
//! table.

pub mod admission;
pub mod app;
pub mod codec;
pub mod config;
pub mod error;
pub mod fanout;
pub mod openapi;
pub mod proxy;
pub mod ratelimit;
pub mod rendering;
pub mod routes;
pub mod sse;
pub mod state;
pub mod template;
pub mod transcode;
pub mod ui;
pub mod upstream;

pub use app::{Application, router};
pub use config::GatewayConfig;
pub use error::ApiError;
pub use routes::{Route, RouteTable};
