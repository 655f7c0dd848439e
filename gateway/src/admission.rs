//! The waiting room's admission at the edge: a hold or checkout that carries an
//! admission token (`X-Admission-Token`) must carry a valid one, for the caller and, on
//! a hold, for the event in the path; a hold without one on an event with a waiting
//! room is refused too. Otherwise the request stops here with a 403 naming what is
//! wrong. Which events have a waiting room the gateway learns from booking-svc's
//! GetEvent, remembered for a second; booking-svc checks everything again (it alone
//! knows at once when a room is turned on, and whether a checkout ended an admission),
//! so what the gateway refuses is what booking-svc would refuse, only earlier.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode};
use marquee_infra::auth::{Claims, TokenError};

use crate::codec::DynamicCodec;
use crate::error::ApiError;
use crate::routes::{Route, RouteMatch};
use crate::state::AppState;
use crate::transcode::build_request;
use crate::upstream::call_upstream;

/// The header an admission token travels in (forwarded to booking-svc as metadata).
pub const HEADER: &str = "x-admission-token";

/// The RPCs an admission governs.
const GOVERNED: &[&str] = &[
    "/marquee.booking.v1.BookingService/CreateHold",
    "/marquee.booking.v1.BookingService/CreateBooking",
];

/// How long the gateway trusts what booking-svc said about an event's waiting room.
const ROOM_TTL: Duration = Duration::from_secs(1);
/// Events remembered at most; beyond it the memory starts again.
const ROOM_CACHE_LIMIT: usize = 10_000;
/// What booking-svc answers without one (the same words).
const MISSING: &str = "this event has a waiting room: join its queue and send the admission token (X-Admission-Token)";

/// Which events have a waiting room, as booking-svc said at most [`ROOM_TTL`] ago.
#[derive(Debug, Default)]
pub struct RoomCache {
    seen: Mutex<HashMap<String, (Instant, bool)>>,
}

impl RoomCache {
    fn get(&self, event: &str) -> Option<bool> {
        let seen = self.seen.lock().ok()?;
        let (at, has) = seen.get(event)?;
        (at.elapsed() < ROOM_TTL).then_some(*has)
    }

    fn put(&self, event: &str, has: bool) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= ROOM_CACHE_LIMIT {
                seen.clear();
            }
            seen.insert(event.to_owned(), (Instant::now(), has));
        }
    }
}

/// Checks the admission a governed route needs: the token `headers` carry, or, on a
/// hold without one, that its event has no waiting room. `caller`: the bearer token's
/// claims, verified at the edge already (`None` without a token: booking-svc answers
/// 401, which comes before 403).
pub async fn check(
    state: &AppState,
    route: &Route,
    bindings: &[(String, String)],
    headers: &HeaderMap,
    caller: Option<&Claims>,
) -> Result<(), ApiError> {
    if !GOVERNED.contains(&route.grpc_path.as_str()) {
        return Ok(());
    }
    let forbidden = |message: &str| ApiError::new(StatusCode::FORBIDDEN, message);
    let event = bindings
        .iter()
        .find(|(name, _)| name == "event_id")
        .map(|(_, event)| event.trim());
    let Some(value) = headers.get(HEADER) else {
        // Only a hold names its event; a checkout without a token is booking-svc's.
        if let Some(event) = event
            && caller.is_some()
            && has_room(state, event).await
        {
            return Err(forbidden(MISSING));
        }
        return Ok(());
    };
    let token = value
        .to_str()
        .map_err(|_| forbidden("the admission token is not valid"))?
        .trim();
    let claims = state.keys.verify_admission(token).map_err(|e| match e {
        TokenError::Expired => forbidden("the admission token has expired; join the queue again"),
        _ => forbidden("the admission token is not valid"),
    })?;
    if let Some(caller) = caller
        && caller.sub != claims.sub
    {
        return Err(forbidden("the admission token belongs to another account"));
    }
    if let Some(event) = event
        && event != claims.event
    {
        return Err(forbidden("the admission token is for another event"));
    }
    Ok(())
}

/// Whether `event` has a waiting room: remembered, or asked of booking-svc (GetEvent).
/// Anything but a clear yes is a no: booking-svc decides those requests itself.
async fn has_room(state: &AppState, event: &str) -> bool {
    // Only ids that can be one (a UUID's characters) are looked up, so the path built
    // below is the event's and nothing else.
    if event.is_empty()
        || event.len() > 64
        || !event.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    {
        return false;
    }
    if let Some(has) = state.rooms.get(event) {
        return has;
    }
    let RouteMatch::Found { route, bindings } = state
        .routes
        .lookup(&Method::GET, &format!("/v1/events/{event}"))
    else {
        return false;
    };
    let Ok(message) = build_request(&route, &bindings, None, &[]) else {
        return false;
    };
    let codec = DynamicCodec::new(route.output.clone());
    let timeout = state.upstream_timeout;
    let answer = call_upstream(
        state,
        &route,
        &HeaderMap::new(),
        message,
        |mut grpc, mut request, path| async move {
            request.set_timeout(timeout);
            grpc.unary(request, path, codec).await
        },
    )
    .await;
    match answer {
        Ok(reply) => {
            let has = reply.get_ref().has_field_by_name("waiting_room");
            state.rooms.put(event, has);
            has
        }
        Err(error) => {
            tracing::debug!(event_id = %event, status = %error.status, "waiting room lookup failed; booking-svc decides");
            false
        }
    }
}
