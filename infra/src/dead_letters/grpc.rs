//! `marquee.admin.v1.DeadLetterAdminService` over a service's [`DeadLetters`]: admins
//! only. With peers ([`DeadLetterAdmin::with_peer`]) it also lists and redrives the
//! peers' letters, calling them with the caller's token (booking-svc merges in
//! pay-svc's; the gateway routes the public routes to booking-svc only). Protobuf
//! types stop here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use marquee_proto::admin::dead_letter_admin_service_client::DeadLetterAdminServiceClient;
use marquee_proto::admin::dead_letter_admin_service_server::{
    DeadLetterAdminService, DeadLetterAdminServiceServer,
};
use marquee_proto::admin::{
    DeadLetter as PbLetter, DeadLetterState, ListDeadLettersRequest, ListDeadLettersResponse,
    RedriveDeadLettersRequest, RedriveDeadLettersResponse,
};
use sea_orm::DbErr;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Cursor, DeadLetters, Filter, RedriveReport, State, entity};
use crate::auth::{TokenError, TokenKeys};
use crate::grpc::PropagateTrace;

/// The role that may see and redrive dead letters.
const ADMIN: &str = "ADMIN";
/// Letters per page unless asked otherwise, and at most.
const DEFAULT_PAGE: u64 = 50;
const MAX_PAGE: u64 = 500;
/// Most ids one redrive may select.
pub const MAX_REDRIVE: usize = 500;
/// The longest a call to a peer may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

type PeerClient = DeadLetterAdminServiceClient<InterceptedService<Channel, PropagateTrace>>;

/// The one error type of the dead-letter RPCs, and its one mapping to a status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("authentication required: {0}")]
    Unauthenticated(#[from] TokenError),
    #[error("dead letters are for admins only")]
    PermissionDenied,
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// A peer's answer that cannot be merged (a bug on one side).
    #[error("peer answered badly: {0}")]
    BadPeer(String),
    /// A peer's error, passed on with its code.
    #[error("{0}")]
    Peer(Status),
}

impl AdminError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        AdminError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<AdminError> for Status {
    fn from(error: AdminError) -> Self {
        let message = error.to_string();
        match error {
            AdminError::Unauthenticated(_) => Status::unauthenticated(message),
            AdminError::PermissionDenied => Status::permission_denied(message),
            AdminError::InvalidArgument { .. } => Status::invalid_argument(message),
            AdminError::Database(db) if crate::db::is_transient(&db) => {
                tracing::warn!(error = %db, "dead letters: database unavailable");
                Status::unavailable("a dependency is unavailable; retry shortly")
            }
            AdminError::Database(db) => {
                tracing::error!(error = %db, "dead letters: database error");
                Status::internal("internal error")
            }
            AdminError::BadPeer(detail) => {
                tracing::error!(%detail, "dead letters: bad peer answer");
                Status::internal("internal error")
            }
            AdminError::Peer(status) => {
                tracing::warn!(code = ?status.code(), error = %status.message(), "dead letters: peer call failed");
                Status::new(status.code(), format!("peer: {}", status.message()))
            }
        }
    }
}

/// The service, for one service's dead letters and its peers'.
#[derive(Clone)]
pub struct DeadLetterAdmin {
    letters: DeadLetters,
    keys: TokenKeys,
    peers: Vec<PeerClient>,
}

impl std::fmt::Debug for DeadLetterAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterAdmin")
            .field("service", &self.letters.service())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl DeadLetterAdmin {
    /// `keys` verifies callers' tokens.
    pub fn new(letters: DeadLetters, keys: TokenKeys) -> Self {
        Self {
            letters,
            keys,
            peers: Vec::new(),
        }
    }

    /// Also lists and redrives the letters of the service behind `channel`.
    pub fn with_peer(mut self, channel: Channel) -> Self {
        self.peers
            .push(DeadLetterAdminServiceClient::with_interceptor(
                channel,
                PropagateTrace,
            ));
        self
    }

    pub fn into_server(self) -> DeadLetterAdminServiceServer<Self> {
        DeadLetterAdminServiceServer::new(self)
    }

    /// The caller, who must hold a valid token with role ADMIN.
    fn admin<T>(&self, request: &Request<T>) -> Result<String, AdminError> {
        let claims = self.keys.verify_metadata(request.metadata())?;
        if claims.role != ADMIN {
            tracing::warn!(account_id = %claims.sub, role = %claims.role, "dead letters refused to a non-admin");
            return Err(AdminError::PermissionDenied);
        }
        Ok(claims.sub)
    }

    async fn list(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<ListDeadLettersResponse, AdminError> {
        self.admin(&request)?;
        let filter = parse_list(request.get_ref())?;
        let page = filter.limit;
        let mut all: Vec<(Cursor, PbLetter)> = self
            .letters
            .list(&Filter {
                limit: page + 1,
                ..filter.clone()
            })
            .await?
            .iter()
            .map(|row| (Cursor::of(row), render(self.letters.service(), row)))
            .collect();
        let mut more = false;
        for peer in &self.peers {
            let mut forwarded = forward(&request, request.get_ref().clone());
            forwarded.get_mut().page_size = i32::try_from(page).unwrap_or(i32::MAX);
            let reply = peer
                .clone()
                .list_dead_letters(forwarded)
                .await
                .map_err(AdminError::Peer)?
                .into_inner();
            more |= !reply.next_page_token.is_empty();
            for letter in reply.dead_letters {
                all.push((cursor_of(&letter)?, letter));
            }
        }
        // Each source answered its first `page` (or more) after the cursor, so the
        // first `page` of their union is the next page of the whole.
        all.sort_by_key(|(cursor, _)| std::cmp::Reverse((cursor.at, cursor.id)));
        more |= all.len() as u64 > page;
        all.truncate(usize::try_from(page).unwrap_or(usize::MAX));
        let next_page_token = match all.last() {
            Some((cursor, _)) if more => cursor.encode(),
            _ => String::new(),
        };
        Ok(ListDeadLettersResponse {
            dead_letters: all.into_iter().map(|(_, letter)| letter).collect(),
            next_page_token,
        })
    }

    async fn redrive(
        &self,
        request: Request<RedriveDeadLettersRequest>,
    ) -> Result<RedriveDeadLettersResponse, AdminError> {
        let admin = self.admin(&request)?;
        let ids = parse_ids(&request.get_ref().ids)?;
        let mut report = self.letters.redrive(&ids).await?;
        for peer in &self.peers {
            if report.not_found.is_empty() {
                break;
            }
            let ask = RedriveDeadLettersRequest {
                ids: report.not_found.iter().map(Uuid::to_string).collect(),
            };
            let reply = peer
                .clone()
                .redrive_dead_letters(forward(&request, ask))
                .await
                .map_err(AdminError::Peer)?
                .into_inner();
            let theirs = RedriveReport {
                redriven: parse_peer_ids(&reply.redriven)?,
                already_redriven: parse_peer_ids(&reply.already_redriven)?,
                not_found: parse_peer_ids(&reply.not_found)?,
            };
            report.redriven.extend(theirs.redriven);
            report.already_redriven.extend(theirs.already_redriven);
            report.not_found = theirs.not_found;
        }
        tracing::info!(
            service = self.letters.service(),
            admin = %admin,
            redriven = report.redriven.len(),
            already_redriven = report.already_redriven.len(),
            not_found = report.not_found.len(),
            "dead-letter redrive answered"
        );
        let strings = |ids: Vec<Uuid>| ids.iter().map(Uuid::to_string).collect();
        Ok(RedriveDeadLettersResponse {
            redriven: strings(report.redriven),
            already_redriven: strings(report.already_redriven),
            not_found: strings(report.not_found),
        })
    }
}

#[tonic::async_trait]
impl DeadLetterAdminService for DeadLetterAdmin {
    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<RedriveDeadLettersRequest>,
    ) -> Result<Response<RedriveDeadLettersResponse>, Status> {
        Ok(Response::new(self.redrive(request).await?))
    }
}

/// `message` as a call to a peer, with the caller's token and a deadline.
fn forward<T, M>(incoming: &Request<T>, message: M) -> Request<M> {
    let mut outgoing = Request::new(message);
    if let Some(token) = incoming.metadata().get("authorization") {
        outgoing
            .metadata_mut()
            .insert("authorization", token.clone());
    }
    outgoing.set_timeout(PEER_TIMEOUT);
    outgoing
}

fn parse_list(request: &ListDeadLettersRequest) -> Result<Filter, AdminError> {
    let limit = match u64::try_from(request.page_size) {
        Err(_) => return Err(AdminError::invalid("page_size", "must not be negative")),
        Ok(0) => DEFAULT_PAGE,
        Ok(n) => n.min(MAX_PAGE),
    };
    let state = match DeadLetterState::try_from(request.state) {
        Err(_) => return Err(AdminError::invalid("state", "unknown state")),
        Ok(DeadLetterState::Unspecified) => None,
        Ok(DeadLetterState::Pending) => Some(State::Pending),
        Ok(DeadLetterState::Redriven) => Some(State::Redriven),
    };
    let queue = match request.queue.as_str() {
        "" => None,
        q if q.len() > 255 || q.chars().any(char::is_control) => {
            return Err(AdminError::invalid("queue", "not a queue name"));
        }
        q => Some(q.to_owned()),
    };
    let after = match request.page_token.as_str() {
        "" => None,
        token => Some(
            Cursor::parse(token)
                .ok_or_else(|| AdminError::invalid("page_token", "not a page token"))?,
        ),
    };
    Ok(Filter {
        queue,
        state,
        after,
        limit,
    })
}

/// The selection: 1 to [`MAX_REDRIVE`] uuids, duplicates dropped, order kept.
fn parse_ids(ids: &[String]) -> Result<Vec<Uuid>, AdminError> {
    if ids.is_empty() {
        return Err(AdminError::invalid(
            "ids",
            "select at least one dead letter",
        ));
    }
    if ids.len() > MAX_REDRIVE {
        return Err(AdminError::invalid(
            "ids",
            format!("at most {MAX_REDRIVE} dead letters at once"),
        ));
    }
    let mut parsed = Vec::with_capacity(ids.len());
    for id in ids {
        let id: Uuid = id
            .parse()
            .map_err(|_| AdminError::invalid("ids", format!("{id:?} is not a uuid")))?;
        if !parsed.contains(&id) {
            parsed.push(id);
        }
    }
    Ok(parsed)
}

fn parse_peer_ids(ids: &[String]) -> Result<Vec<Uuid>, AdminError> {
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|_| AdminError::BadPeer(format!("id {id:?} is not a uuid")))
        })
        .collect()
}

fn cursor_of(letter: &PbLetter) -> Result<Cursor, AdminError> {
    let at = letter
        .first_dead_lettered_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .ok_or_else(|| AdminError::BadPeer("letter without its time".to_owned()))?;
    let id = letter
        .id
        .parse()
        .map_err(|_| AdminError::BadPeer(format!("letter id {:?} is not a uuid", letter.id)))?;
    Ok(Cursor { at, id })
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn render(service: &str, row: &entity::Model) -> PbLetter {
    PbLetter {
        id: row.id.to_string(),
        service: service.to_owned(),
        queue: row.queue.clone(),
        message_id: row.message_id.to_string(),
        message_type: row.kind.clone(),
        booking_id: row.booking_id.clone().unwrap_or_default(),
        first_error: row.first_error.clone(),
        last_error: row.last_error.clone(),
        deliveries: row.deliveries,
        times_dead_lettered: row.times_dead_lettered,
        first_dead_lettered_at: Some(timestamp(row.first_dead_lettered_at)),
        last_dead_lettered_at: Some(timestamp(row.last_dead_lettered_at)),
        state: match State::of(row) {
            State::Pending => DeadLetterState::Pending,
            State::Redriven => DeadLetterState::Redriven,
        }
        .into(),
        redriven_at: row.redriven_at.map(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_are_bounded_uuids() {
        assert!(matches!(
            parse_ids(&[]),
            Err(AdminError::InvalidArgument { field: "ids", .. })
        ));
        assert!(parse_ids(&["nope".to_owned()]).is_err());
        let many: Vec<String> = (0..=MAX_REDRIVE)
            .map(|_| Uuid::now_v7().to_string())
            .collect();
        assert!(parse_ids(&many).is_err());
        let id = Uuid::now_v7();
        assert_eq!(
            parse_ids(&[id.to_string(), id.to_string()]).ok(),
            Some(vec![id])
        );
    }

    #[test]
    fn page_tokens_round_trip() {
        let cursor = Cursor {
            at: DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap_or_default(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::parse("x:y"), None);
    }
}
