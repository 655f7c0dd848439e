//! sea-orm entities for every table the sandbox owns: one module per table.

pub mod psp_faults;
pub mod psp_idempotency;
pub mod psp_payments;
