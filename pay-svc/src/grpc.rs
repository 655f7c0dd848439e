//! `marquee.pay.v1.WalletService`: the caller's wallet, read-only; and the internal
//! `PaymentAdminService`: a booking's payment steps for booking-svc's admin timeline
//! (ADMIN only). Protobuf types stop here.

use marquee_infra::auth::TokenKeys;
use marquee_proto::pay::payment_admin_service_server::PaymentAdminService;
use marquee_proto::pay::wallet_service_server::WalletService;
use marquee_proto::pay::{
    EntryKind as ProtoEntryKind, GetWalletRequest, LedgerEntry as ProtoEntry,
    ListPaymentStepsRequest, ListPaymentStepsResponse, PaymentStep, Wallet,
};
use sea_orm::{DatabaseConnection, TransactionTrait};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{AccountId, EntryKind, LedgerEntry, Money, PageSize, WalletView};
use crate::error::PayError;
use crate::{steps, store};

/// The WalletService and PaymentAdminService implementation.
#[derive(Clone)]
pub struct WalletApi {
    db: DatabaseConnection,
    keys: TokenKeys,
}

impl WalletApi {
    pub fn new(db: DatabaseConnection, keys: TokenKeys) -> Self {
        Self { db, keys }
    }

    fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<AccountId, PayError> {
        let claims = self.keys.verify_metadata(metadata)?;
        claims.sub.parse().map_err(|_| PayError::InvalidSubject)
    }

    /// Reads the wallet; never opens one. A token alone does not prove that its
    /// account exists: wallets are opened only by `account.opened` from booking-svc
    /// (or a payment booking-svc asked for), so an unknown account gets NOT_FOUND.
    async fn wallet(&self, account: AccountId, page: PageSize) -> Result<WalletView, PayError> {
        let tx = self.db.begin().await?;
        let view = store::wallet_view(&tx, account, page).await?;
        tx.commit().await?;
        Ok(view)
    }
}

#[tonic::async_trait]
impl WalletService for WalletApi {
    async fn get_wallet(
        &self,
        request: Request<GetWalletRequest>,
    ) -> Result<Response<Wallet>, Status> {
        let account = self.caller(request.metadata())?;
        let page = PageSize::from_request(request.get_ref().page_size).ok_or_else(|| {
            PayError::InvalidArgument("page_size must not be negative".to_owned())
        })?;
        let view = self.wallet(account, page).await?;
        Ok(Response::new(wallet_to_proto(view)))
    }
}

#[tonic::async_trait]
impl PaymentAdminService for WalletApi {
    async fn list_payment_steps(
        &self,
        request: Request<ListPaymentStepsRequest>,
    ) -> Result<Response<ListPaymentStepsResponse>, Status> {
        let claims = self
            .keys
            .verify_metadata(request.metadata())
            .map_err(PayError::from)?;
        if claims.role != "ADMIN" {
            return Err(PayError::PermissionDenied("only admins can list payment steps").into());
        }
        let booking = Uuid::parse_str(&request.get_ref().booking_id)
            .map_err(|_| PayError::InvalidArgument("booking_id must be a UUID".to_owned()))?;
        let rows = steps::read(&self.db, booking)
            .await
            .map_err(PayError::from)?;
        Ok(Response::new(ListPaymentStepsResponse {
            steps: rows.into_iter().map(step_to_proto).collect(),
        }))
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn step_to_proto(row: marquee_infra::saga_steps::entity::Model) -> PaymentStep {
    PaymentStep {
        at: Some(timestamp(row.at)),
        kind: row.kind,
        attempt: row.attempt,
        outcome: row.outcome,
        detail: row.detail,
        message_type: row.message_type.unwrap_or_default(),
        message_id: row.message_id.map(|id| id.to_string()).unwrap_or_default(),
        trace_id: row.trace_id,
        from_status: row.from_status.unwrap_or_default(),
        to_status: row.to_status.unwrap_or_default(),
        reason: row.reason,
        operation: row.operation.unwrap_or_default(),
        http_status: row.http_status.unwrap_or(0),
    }
}

fn money_to_proto(money: &Money) -> marquee_proto::Money {
    marquee_proto::Money {
        amount_minor: money.amount_minor,
        currency: money.currency.as_str().to_owned(),
    }
}

fn kind_to_proto(kind: EntryKind) -> ProtoEntryKind {
    match kind {
        EntryKind::WelcomeCredit => ProtoEntryKind::WelcomeCredit,
        EntryKind::Payment => ProtoEntryKind::Payment,
        EntryKind::Refund => ProtoEntryKind::Refund,
        EntryKind::TransferPayout => ProtoEntryKind::TransferPayout,
    }
}

fn entry_to_proto(entry: &LedgerEntry) -> ProtoEntry {
    ProtoEntry {
        entry_id: entry.entry_id.to_string(),
        kind: kind_to_proto(entry.kind).into(),
        amount: Some(money_to_proto(&entry.amount)),
        balance_after: Some(money_to_proto(&entry.balance_after)),
        booking_id: entry.booking_id.map(|b| b.to_string()).unwrap_or_default(),
        created_at: Some(timestamp(entry.created_at)),
    }
}

fn wallet_to_proto(view: WalletView) -> Wallet {
    Wallet {
        account_id: view.account_id.to_string(),
        balance: Some(money_to_proto(&view.balance)),
        entries: view.entries.iter().map(entry_to_proto).collect(),
    }
}
