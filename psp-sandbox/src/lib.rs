//! The sandbox payment provider (PSP): an honest stand-in for the one external system,
//! serving the HTTP contract of `/work/notes/psp-contract.md` (confirm, inquiry,
//! cancel, ledger) with test card tokens that approve, decline, fail, stall or drop the
//! connection, over a durable ledger in PostgreSQL.
//!
//! `domain` (tokens, requests, error codes, the Payment object) ← `entity`,
//! `migration` ← `store` (every decision committed before it is answered) ← `api`
//! (routes, auth) ← `app` (`Application`, layers, the HTTP/1 connections).

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod entity;
pub mod migration;
pub mod store;

pub use app::Application;
pub use config::PspConfig;
