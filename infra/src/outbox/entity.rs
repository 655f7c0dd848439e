//! The outbox and inbox tables as sea-orm entities.

/// `outbox`: one row per message to publish, written in the transaction of its cause.
pub mod message {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        #[sea_orm(unique)]
        pub message_id: Uuid,
        pub kind: String,
        pub saga_id: Uuid,
        pub version: i32,
        pub payload: Vec<u8>,
        pub trace_context: Json,
        pub occurred_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `inbox`: one row per (consumer, message id) handled, written with its effect.
pub mod received {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: Uuid,
        pub received_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
