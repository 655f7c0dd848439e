//! search-svc: Korean-aware full-text search over the event catalog, as-you-type
//! suggestions and popularity rankings. The index is derived data: rebuilt from
//! booking-svc's catalog and kept fresh by its change events.

pub mod analysis;
pub mod app;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod generator;
pub mod grpc;
pub mod index;
pub mod korean;
pub mod rankings;
pub mod synonyms;

pub use app::Application;
pub use config::SearchConfig;
