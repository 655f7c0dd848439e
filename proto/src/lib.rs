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
}

pub use marquee::booking::v1 as booking;
pub use marquee::pay::v1 as pay;
pub use marquee::realtime::v1 as realtime;
pub use marquee::saga::v1 as saga;
pub use marquee::search::v1 as search;
pub use marquee::r#type::v1::Money;
