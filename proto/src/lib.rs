//! Generated code for every package in `proto/`, plus the encoded descriptor set the
//! gateway reads its REST routes from. Prost types stop at each service's gRPC layer.

/// `FileDescriptorSet` of every proto in this crate, imports included.
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/marquee_descriptor.bin"));

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

pub mod marquee {
    pub mod r#type {
        pub mod v1 {
            tonic::include_proto!("marquee.r#type.v1");
        }
    }
    pub mod booking {
        pub mod v1 {
            tonic::include_proto!("marquee.booking.v1");
        }
    }
    pub mod pay {
        pub mod v1 {
            tonic::include_proto!("marquee.pay.v1");
        }
    }
    pub mod realtime {
        pub mod v1 {
            tonic::include_proto!("marquee.realtime.v1");
        }
    }
    pub mod search {
        pub mod v1 {
            tonic::include_proto!("marquee.search.v1");
        }
    }
    pub mod saga {
        pub mod v1 {
            tonic::include_proto!("marquee.saga.v1");
        }
    }
    pub mod admin {
        pub mod v1 {
            tonic::include_proto!("marquee.admin.v1");
        }
    }
}

pub use marquee::admin::v1 as admin;
pub use marquee::booking::v1 as booking;
pub use marquee::pay::v1 as pay;
pub use marquee::realtime::v1 as realtime;
pub use marquee::saga::v1 as saga;
pub use marquee::search::v1 as search;
pub use marquee::r#type::v1::Money;

/// The type of each bus message, which is also its routing key: one name shared by the
/// service that publishes it and those that consume it.
pub mod kinds {
    /// Saga: booking-svc → pay-svc (`saga::PaymentRequested`).
    pub const PAYMENT_REQUESTED: &str = "payment.requested";
    /// Saga: pay-svc → booking-svc (`saga::PaymentSucceeded`).
    pub const PAYMENT_SUCCEEDED: &str = "payment.succeeded";
    /// Saga: pay-svc → booking-svc (`saga::PaymentFailed`).
    pub const PAYMENT_FAILED: &str = "payment.failed";
    /// Saga: booking-svc → pay-svc (`saga::RefundRequested`).
    pub const REFUND_REQUESTED: &str = "refund.requested";
    /// Saga: pay-svc → booking-svc (`saga::RefundCompleted`).
    pub const REFUND_COMPLETED: &str = "refund.completed";
    /// Saga: booking-svc → pay-svc, a completed transfer's payout (`saga::PayoutRequested`).
    pub const PAYOUT_REQUESTED: &str = "payout.requested";
    /// Saga: pay-svc → booking-svc (`saga::PayoutCompleted`).
    pub const PAYOUT_COMPLETED: &str = "payout.completed";
    /// booking-svc → pay-svc, when an account is created (`saga::AccountOpened`).
    pub const ACCOUNT_OPENED: &str = "account.opened";
    /// Notification: booking-svc → realtime-svc (`booking::SeatChanges`).
    pub const SEATS_CHANGED: &str = "seats.changed";
    /// Notification: booking-svc → realtime-svc (`booking::BookingChanges`).
    pub const BOOKINGS_CHANGED: &str = "bookings.changed";
    /// Notification: booking-svc → search-svc (`booking::EventChanged`).
    pub const EVENT_CHANGED: &str = "catalog.event_changed";
    /// `marquee.booking.v1.QueueAdvanced`: a waiting room opened or admitted buyers.
    pub const QUEUE_ADVANCED: &str = "queue.advanced";
    /// `marquee.booking.v1.AuctionChanged`: an auction took a bid or an award moved.
    pub const AUCTION_CHANGED: &str = "auction.changed";
}
