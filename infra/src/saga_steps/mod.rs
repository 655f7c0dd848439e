//! The saga timeline, each service's half.
//!
//! Every step of a booking's saga a service takes (a status change, a message sent or
//! received, and the service's own kinds) is recorded in its `saga_steps` table in the
//! same transaction as the step's effect, so the timeline never shows a step that did
//! not happen nor misses one that did. A transaction collects its steps in a [`Steps`]
//! and writes them with one multi-row INSERT ([`Steps::write`]) before it commits.
//! Each service adds the rows of its own kinds through [`Steps::push`] (its `steps`
//! module) and reads them back with [`read`].

pub mod entity;
pub mod migration;

use std::fmt::Display;

use chrono::Utc;
use sea_orm::sea_query::InsertStatement;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QueryTrait,
};
use uuid::Uuid;

use self::entity as saga_steps;

/// A status changed (`from_status` empty: the record was created).
pub const STATUS: &str = "status";
/// A message went into the outbox.
pub const MESSAGE_SENT: &str = "message_sent";
/// A message was claimed in the inbox (duplicates are not recorded: they have no
/// effect).
pub const MESSAGE_RECEIVED: &str = "message_received";
/// A refund was asked for (what the service made of it).
pub const REFUND: &str = "refund";

/// The current OpenTelemetry trace id (lowercase hex), empty when the step runs
/// outside any trace (e.g. a sweeper, or with tracing off).
pub fn current_trace_id() -> String {
    let id = crate::telemetry::current_trace_id();
    if id.bytes().all(|b| b == b'0') {
        String::new()
    } else {
        id
    }
}

/// The steps one transaction records for one booking, written together by
/// [`Steps::write`] inside that transaction.
#[derive(Debug)]
pub struct Steps {
    booking: Uuid,
    trace_id: String,
    rows: Vec<saga_steps::ActiveModel>,
}

impl Steps {
    pub fn new(booking: Uuid) -> Self {
        Self {
            booking,
            trace_id: current_trace_id(),
            rows: Vec::with_capacity(4),
        }
    }

    /// A new step of `kind`, every other field empty, for the caller to fill in.
    pub fn push(&mut self, kind: &str) -> &mut saga_steps::ActiveModel {
        self.rows.push(saga_steps::ActiveModel {
            id: NotSet,
            booking_id: Set(self.booking),
            // The time each step was recorded (not the transaction's start), so the
            // steps of one transaction keep their order.
            at: Set(Utc::now()),
            kind: Set(kind.to_owned()),
            from_status: Set(None),
            to_status: Set(None),
            reason: Set(String::new()),
            message_type: Set(None),
            message_id: Set(None),
            operation: Set(None),
            attempt: Set(0),
            outcome: Set(String::new()),
            http_status: Set(None),
            trace_id: Set(self.trace_id.clone()),
            detail: Set(String::new()),
        });
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }

    /// The record moved from `from` (`None`: it was created) to `to`.
    pub fn status<S: Display>(&mut self, from: Option<S>, to: S, reason: &str) {
        let row = self.push(STATUS);
        row.from_status = Set(from.map(|s| s.to_string()));
        row.to_status = Set(Some(to.to_string()));
        row.reason = Set(reason.to_owned());
    }

    /// `kind` went into the outbox as message `id`.
    pub fn sent(&mut self, kind: &str, id: Uuid) {
        let row = self.push(MESSAGE_SENT);
        row.message_type = Set(Some(kind.to_owned()));
        row.message_id = Set(Some(id));
    }

    /// Message `id` of `kind` was claimed; `outcome` says what it did (empty when it
    /// is known only once the message was handled: [`Steps::outcome`] sets it).
    pub fn received(&mut self, kind: &str, id: Uuid, outcome: &str) {
        let row = self.push(MESSAGE_RECEIVED);
        row.message_type = Set(Some(kind.to_owned()));
        row.message_id = Set(Some(id));
        row.outcome = Set(outcome.to_owned());
    }

    /// Sets the outcome of the first step (the message received).
    pub fn outcome(&mut self, outcome: &str) {
        if let Some(first) = self.rows.first_mut() {
            first.outcome = Set(outcome.to_owned());
        }
    }

    /// Any other step: `kind` with its outcome and a short detail.
    pub fn note(&mut self, kind: &str, outcome: &str, detail: &str) {
        let row = self.push(kind);
        row.outcome = Set(outcome.to_owned());
        row.detail = Set(detail.to_owned());
    }

    /// The one INSERT of [`Steps::write`], to run as part of a larger statement
    /// (`db::in_one_statement`); `None` when there is nothing to write.
    pub fn into_statement(self) -> Option<InsertStatement> {
        (!self.rows.is_empty()).then(|| saga_steps::Entity::insert_many(self.rows).into_query())
    }

    /// Writes the steps, one INSERT for all of them, inside the caller's transaction.
    pub async fn write<C: ConnectionTrait>(self, db: &C) -> Result<(), DbErr> {
        if self.rows.is_empty() {
            return Ok(());
        }
        saga_steps::Entity::insert_many(self.rows)
            .exec_without_returning(db)
            .await?;
        Ok(())
    }
}

/// Every step this service recorded for `booking`, oldest first.
pub async fn read<C: ConnectionTrait>(
    db: &C,
    booking: Uuid,
) -> Result<Vec<saga_steps::Model>, DbErr> {
    saga_steps::Entity::find()
        .filter(saga_steps::Column::BookingId.eq(booking))
        .order_by_asc(saga_steps::Column::At)
        .order_by_asc(saga_steps::Column::Id)
        .all(db)
        .await
}
