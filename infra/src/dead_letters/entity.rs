//! The `dead_letters` table as a sea-orm entity: one row per (queue, message id) that a
//! queue of this service dead-lettered.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The queue that dead-lettered it (full name).
    pub queue: String,
    pub message_id: Uuid,
    /// The message type, also the routing key the redrive publishes it with.
    pub kind: String,
    /// Where it was published to, as the broker recorded it.
    pub exchange: String,
    pub routing_key: String,
    /// The envelope's saga id; `None` for a message without a valid envelope.
    pub saga_id: Option<Uuid>,
    pub version: i32,
    pub occurred_at: Option<DateTimeUtc>,
    pub trace_context: Json,
    pub payload: Vec<u8>,
    /// The booking the message names, if any.
    pub booking_id: Option<String>,
    /// The broker's reason for the latest dead-lettering.
    pub reason: String,
    pub first_error: String,
    pub last_error: String,
    pub deliveries: i64,
    pub times_dead_lettered: i64,
    /// `PENDING` or `REDRIVEN`.
    pub state: String,
    pub first_dead_lettered_at: DateTimeUtc,
    pub last_dead_lettered_at: DateTimeUtc,
    pub redriven_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
