//! sea-orm entities for every table pay-svc owns: one module per table. The outbox and
//! inbox tables are `marquee_infra::outbox::entity`'s, `saga_steps` is
//! `marquee_infra::saga_steps::entity`.

pub mod card_ledger_entries;
pub mod ledger_entries;
pub mod payments;
pub mod wallets;
