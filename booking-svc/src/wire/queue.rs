//! The waiting room's requests and replies (`WaitingRoomService`).

use chrono::Utc;
use marquee_proto::booking as pb;

use super::api::time;
use super::timestamp;
use crate::error::BookingError;
use crate::queue::{QueueStatus, RoomSettings, Ticket, TicketState};

/// A request's waiting-room settings (`field` names them in errors); `None` when absent.
pub fn parse_settings(
    settings: Option<&pb::WaitingRoomSettings>,
) -> Result<Option<RoomSettings>, BookingError> {
    let Some(s) = settings else { return Ok(None) };
    let opens_at = time("waitingRoom.opensAt", s.opens_at.as_ref())?.unwrap_or_else(Utc::now);
    RoomSettings::new(
        opens_at,
        s.admit_per_second,
        s.max_shoppers,
        s.admission_seconds,
    )
    .map(Some)
}

pub fn settings_pb(s: &RoomSettings) -> pb::WaitingRoomSettings {
    let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    pb::WaitingRoomSettings {
        opens_at: timestamp(s.opens_at),
        admit_per_second: clamp(s.admit_per_second),
        max_shoppers: clamp(s.max_shoppers),
        admission_seconds: i32::try_from(s.admission.as_secs()).unwrap_or(i32::MAX),
    }
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn ticket_pb(t: &Ticket) -> pb::QueueTicket {
    let state = match t.state {
        TicketState::BeforeOpening => pb::QueueTicketState::BeforeOpening,
        TicketState::Waiting => pb::QueueTicketState::Waiting,
        TicketState::Admitted => pb::QueueTicketState::Admitted,
        TicketState::Expired => pb::QueueTicketState::Expired,
        TicketState::Used => pb::QueueTicketState::Used,
    };
    let (admission_token, admission_expires_at) = match &t.admission {
        Some((token, expires)) => (token.clone(), timestamp(*expires)),
        None => (String::new(), None),
    };
    pb::QueueTicket {
        ticket_id: t.id.to_string(),
        event_id: t.id.event.to_string(),
        state: state.into(),
        number: count(t.number),
        position: count(t.position),
        eta_seconds: count(t.eta_seconds),
        opens_at: timestamp(t.opens_at),
        joined_at: timestamp(t.joined_at),
        admission_token,
        admission_expires_at,
    }
}

pub fn status_pb(s: &QueueStatus) -> pb::QueueStatus {
    pb::QueueStatus {
        event_id: s.event.to_string(),
        waiting_room: Some(settings_pb(&s.settings)),
        opened: s.opened,
        joined: count(s.joined),
        waiting: count(s.waiting),
        admitted: count(s.admitted),
        shopping: count(s.shopping),
        admit_rate: s.admit_rate,
        eta_seconds: count(s.eta_seconds),
    }
}
