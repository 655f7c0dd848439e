//! The waiting room's admission at the edge: a hold or checkout that carries an
//! admission token (`X-Admission-Token`) must carry a valid one, for the caller and, on
//! a hold, for the event in the path; otherwise the request stops here with a 403
//! naming what is wrong. booking-svc checks again, and it alone knows whether an event
//! has a waiting room (so a missing token on such an event is refused there, with the
//! same kind of answer) and whether a checkout ended the admission.

use http::{HeaderMap, StatusCode};
use marquee_infra::auth::TokenError;

use crate::error::ApiError;
use crate::routes::Route;
use crate::state::AppState;

/// The header an admission token travels in (forwarded to booking-svc as metadata).
pub const HEADER: &str = "x-admission-token";

/// The RPCs an admission governs.
const GOVERNED: &[&str] = &[
    "/marquee.booking.v1.BookingService/CreateHold",
    "/marquee.booking.v1.BookingService/CreateBooking",
];

/// Checks the admission token `headers` carry, if the route is governed by one.
pub fn check(
    state: &AppState,
    route: &Route,
    bindings: &[(String, String)],
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if !GOVERNED.contains(&route.grpc_path.as_str()) {
        return Ok(());
    }
    let Some(value) = headers.get(HEADER) else {
        return Ok(());
    };
    let forbidden = |message: &str| ApiError::new(StatusCode::FORBIDDEN, message);
    let token = value
        .to_str()
        .map_err(|_| forbidden("the admission token is not valid"))?
        .trim();
    let claims = state.keys.verify_admission(token).map_err(|e| match e {
        TokenError::Expired => forbidden("the admission token has expired; join the queue again"),
        _ => forbidden("the admission token is not valid"),
    })?;
    // The bearer token was verified before this; without one booking-svc answers 401.
    let caller = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| state.keys.verify_header(Some(v)).ok());
    if let Some(caller) = caller
        && caller.sub != claims.sub
    {
        return Err(forbidden("the admission token belongs to another account"));
    }
    if let Some((_, event)) = bindings.iter().find(|(name, _)| name == "event_id")
        && event.trim() != claims.event
    {
        return Err(forbidden("the admission token is for another event"));
    }
    Ok(())
}
