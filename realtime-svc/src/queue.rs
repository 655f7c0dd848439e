//! Waiting-room watchers: one queue ticket's place in line, for its buyer.
//!
//! A watch reads the ticket from booking-svc with the caller's own token (so another
//! account's ticket is NOT_FOUND, as in GetQueueTicket) and sends it. A ticket that is
//! already ADMITTED, EXPIRED or USED ends the stream there. Otherwise the watcher joins
//! its event's room: the `queue.advanced` notifications of the event, merged into one
//! [`Progress`] (counts only grow, the pace is the latest), held in a
//! `tokio::sync::watch` channel that every watcher of the event shares, so an advance
//! costs each watcher one comparison however many there are. From each advance the
//! watcher recomputes its position and ETA; it re-reads the ticket from booking-svc when
//! the queue opens (the ticket now has a number) and when its number is admitted (the
//! re-read carries the admission token, and ends the stream), and every
//! `refresh` in any case, since notifications are lossy.
//!
//! The ticket's event is known only once the ticket is read, so the watcher joins the
//! room after its first read: if the room started merging after that read began and an
//! advance came in meanwhile (the hub counts them), the ticket is read once more, so no
//! advance falls between the read and the room.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use marquee_infra::grpc::PropagateTrace;
use marquee_proto::booking::waiting_room_service_client::WaitingRoomServiceClient;
use marquee_proto::booking::{GetQueueTicketRequest, QueueAdvanced, QueueTicket, QueueTicketState};
use marquee_proto::realtime::QueueTicketUpdate;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::RealtimeError;

pub type WaitingRoomClient = WaitingRoomServiceClient<InterceptedService<Channel, PropagateTrace>>;

/// The longest ticket id passed on to booking-svc.
const MAX_TICKET_ID_CHARS: usize = 128;

/// A ticket id as the caller sent it: opaque here (booking-svc validates it), only
/// bounded in length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketId(String);

impl TicketId {
    pub fn parse(value: &str) -> Result<Self, RealtimeError> {
        if value.is_empty() {
            return Err(RealtimeError::invalid("ticketId", "is required"));
        }
        if value.chars().count() > MAX_TICKET_ID_CHARS {
            return Err(RealtimeError::invalid(
                "ticketId",
                format!("must be at most {MAX_TICKET_ID_CHARS} characters"),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the `queue.advanced` notifications of one event say, merged in any order:
/// `admitted` and `joined` are the largest seen, `opened` stays true once seen, and
/// `admit_rate` is the one of the latest `at`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub opened: bool,
    /// The tickets numbered 1..=admitted are admitted.
    pub admitted: i64,
    pub joined: i64,
    /// Buyers admitted per second; never negative nor NaN.
    pub admit_rate: f64,
    /// `at` of the advance `admit_rate` came from, as (seconds, nanos).
    rate_at: Option<(i64, i32)>,
}

impl Progress {
    /// Merges `advance` in; whether anything changed (a late or repeated advance
    /// changes nothing, and wakes no watcher).
    pub fn merge(&mut self, advance: &QueueAdvanced) -> bool {
        let before = *self;
        self.opened |= advance.opened;
        self.admitted = self.admitted.max(advance.admitted);
        self.joined = self.joined.max(advance.joined);
        let at = advance.at.as_ref().map(|at| (at.seconds, at.nanos));
        // `None` sorts first: an advance without `at` only replaces a rate without one.
        if at >= self.rate_at {
            self.rate_at = at;
            self.admit_rate = if advance.admit_rate.is_finite() && advance.admit_rate > 0.0 {
                advance.admit_rate
            } else {
                0.0
            };
        }
        *self != before
    }
}

/// Where a ticket numbered `number` stands at `progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Its number is admitted.
    Admitted,
    /// Still in line: `position` buyers ahead are still waiting; `eta_seconds` at the
    /// current pace, `None` without one.
    Waiting {
        position: i64,
        eta_seconds: Option<i64>,
    },
}

pub fn place(number: i64, progress: &Progress) -> Place {
    if number <= progress.admitted {
        return Place::Admitted;
    }
    // `admitted` is never negative (merged from 0 up), so this cannot overflow.
    let ahead = number - progress.admitted;
    let eta_seconds = (progress.admit_rate > 0.0)
        // A huge quotient saturates at i64::MAX.
        .then(|| (ahead as f64 / progress.admit_rate).ceil() as i64);
    Place::Waiting {
        position: ahead - 1,
        eta_seconds,
    }
}

/// What a watcher does about an advance.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send the ticket with its new position and ETA.
    Send(QueueTicket),
    /// Re-read the ticket from booking-svc (its number was drawn, or admitted).
    Refetch,
    Nothing,
}

/// What the watcher of `ticket` (as last sent) does when its event is at `progress`.
pub fn decide(ticket: &QueueTicket, progress: &Progress) -> Decision {
    match QueueTicketState::try_from(ticket.state) {
        Ok(QueueTicketState::BeforeOpening) if progress.opened => Decision::Refetch,
        Ok(QueueTicketState::Waiting) if ticket.number > 0 => {
            match place(ticket.number, progress) {
                Place::Admitted => Decision::Refetch,
                // Further back than booking-svc said: this replica missed an advance
                // booking-svc had already made; a later one (or the re-read) catches up.
                Place::Waiting { position, .. } if position > ticket.position => Decision::Nothing,
                Place::Waiting {
                    position,
                    eta_seconds,
                } => {
                    let eta_seconds = eta_seconds.unwrap_or(ticket.eta_seconds);
                    if position == ticket.position && eta_seconds == ticket.eta_seconds {
                        Decision::Nothing
                    } else {
                        Decision::Send(QueueTicket {
                            position,
                            eta_seconds,
                            ..ticket.clone()
                        })
                    }
                }
            }
        }
        _ => Decision::Nothing,
    }
}

/// Whether nothing more will happen to the ticket (the stream ends after sending it).
pub fn is_final(ticket: &QueueTicket) -> bool {
    matches!(
        QueueTicketState::try_from(ticket.state),
        Ok(QueueTicketState::Admitted | QueueTicketState::Expired | QueueTicketState::Used)
    )
}

/// Reads the watched ticket from booking-svc; the argument says why (a metric label).
pub(crate) type Reader = Arc<
    dyn Fn(&'static str) -> BoxFuture<'static, Result<QueueTicket, RealtimeError>> + Send + Sync,
>;

pub type TicketUpdates = BoxStream<'static, Result<QueueTicketUpdate, RealtimeError>>;

struct Room {
    tx: watch::Sender<Progress>,
    /// [`Rooms::advances`] when the room was made: it has merged every advance since.
    since: u64,
}

#[derive(Default)]
struct Rooms {
    by_event: HashMap<String, Room>,
    /// Advances received so far, of every event (watched or not).
    advances: u64,
}

pub struct QueueHub {
    rooms: Mutex<Rooms>,
    client: WaitingRoomClient,
    /// The longest a watcher goes without re-reading its ticket.
    refresh: Duration,
}

/// A watcher's place in its event's room; the room goes with its last member.
pub(crate) struct Membership {
    // Declared before `_leave`, so it is dropped first and `Leave` sees the channel
    // without it.
    pub(crate) rx: watch::Receiver<Progress>,
    _leave: Leave,
}

struct Leave {
    hub: Arc<QueueHub>,
    event: String,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut rooms = self.hub.rooms();
        if rooms
            .by_event
            .get(&self.event)
            .is_some_and(|room| room.tx.receiver_count() == 0)
        {
            rooms.by_event.remove(&self.event);
        }
    }
}

/// Counts an open queue watch in `realtime_queue_watchers`.
struct Counted;

impl Counted {
    fn new() -> Self {
        metrics::gauge!("realtime_queue_watchers").increment(1.0);
        Self
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("realtime_queue_watchers").decrement(1.0);
    }
}

impl QueueHub {
    pub fn new(client: WaitingRoomClient, refresh: Duration) -> Arc<Self> {
        Arc::new(Self {
            rooms: Mutex::new(Rooms::default()),
            client,
            refresh,
        })
    }

    fn rooms(&self) -> MutexGuard<'_, Rooms> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Merges a `queue.advanced` notification into its event's room, waking the room's
    /// watchers if it changed anything. An event nobody here watches is skipped.
    pub fn on_advance(&self, advance: &QueueAdvanced) {
        let mut rooms = self.rooms();
        rooms.advances += 1;
        if let Some(room) = rooms.by_event.get(&advance.event_id) {
            room.tx.send_if_modified(|progress| progress.merge(advance));
        }
    }

    /// Joins `event`'s room (making it if it is new); also whether an advance may have
    /// come in between `seen` (the hub's count of advances before the ticket was read)
    /// and the room's start, so the ticket must be read again.
    pub(crate) fn join(self: &Arc<Self>, event: &str, seen: u64) -> (Membership, bool) {
        let mut rooms = self.rooms();
        let now = rooms.advances;
        let room = rooms
            .by_event
            .entry(event.to_owned())
            .or_insert_with(|| Room {
                tx: watch::channel(Progress::default()).0,
                since: now,
            });
        let missed = room.since > seen;
        let mut rx = room.tx.subscribe();
        // The room's state may be newer than the ticket: the watcher looks at it first.
        rx.mark_changed();
        let membership = Membership {
            rx,
            _leave: Leave {
                hub: self.clone(),
                event: event.to_owned(),
            },
        };
        (membership, missed)
    }

    /// The ticket as the caller (whose `authorization` is passed on) may see it, then
    /// each change of its place in line, until it is admitted.
    pub async fn watch(
        self: &Arc<Self>,
        id: TicketId,
        authorization: MetadataValue<Ascii>,
    ) -> Result<TicketUpdates, RealtimeError> {
        let client = self.client.clone();
        let ticket_id = id.clone();
        let reader: Reader = Arc::new(move |cause| {
            let mut client = client.clone();
            let mut request = tonic::Request::new(GetQueueTicketRequest {
                ticket_id: ticket_id.0.clone(),
            });
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
            async move {
                let read = client
                    .get_queue_ticket(request)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(RealtimeError::Upstream);
                let outcome = if read.is_ok() { "ok" } else { "error" };
                metrics::counter!(
                    "realtime_queue_ticket_reads_total",
                    "cause" => cause,
                    "outcome" => outcome
                )
                .increment(1);
                read
            }
            .boxed()
        });
        self.watch_with(&id, reader).await
    }

    /// [`watch`](Self::watch) with the ticket read by `reader`.
    pub(crate) async fn watch_with(
        self: &Arc<Self>,
        id: &TicketId,
        reader: Reader,
    ) -> Result<TicketUpdates, RealtimeError> {
        let counted = Counted::new();
        let seen = self.rooms().advances;
        let ticket = reader("start").await?;
        if is_final(&ticket) {
            tracing::debug!(
                ticket_id = id.as_str(),
                state = ticket.state,
                "queue ticket already final"
            );
            let update = QueueTicketUpdate {
                ticket: Some(ticket),
            };
            return Ok(futures::stream::iter([Ok(update)]).boxed());
        }
        if ticket.event_id.is_empty() {
            return Err(RealtimeError::Upstream(tonic::Status::internal(
                "queue ticket without an event id",
            )));
        }
        let (room, missed) = self.join(&ticket.event_id, seen);
        let ticket = if missed {
            reader("joined").await?
        } else {
            ticket
        };
        tracing::debug!(
            ticket_id = id.as_str(),
            event_id = %ticket.event_id,
            state = ticket.state,
            "queue watch started"
        );
        let watcher = Watcher {
            pending: Some(ticket),
            ticket: QueueTicket::default(),
            refresh: refresh_timer(id, self.refresh),
            room,
            reader,
            asked: None,
            done: false,
            _counted: counted,
        };
        Ok(futures::stream::unfold(watcher, Watcher::next).boxed())
    }
}

/// The watcher's re-read timer: every `period`, the first after [`first_refresh`].
fn refresh_timer(id: &TicketId, period: Duration) -> Interval {
    let period = period.max(Duration::from_millis(2));
    let mut timer = tokio::time::interval_at(Instant::now() + first_refresh(id, period), period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

/// When a watcher first re-reads its ticket: at a point in the second half of `period`
/// that depends on the ticket, so watchers that start together (at an opening) do not
/// all read at once.
fn first_refresh(id: &TicketId, period: Duration) -> Duration {
    let half = period / 2;
    let mut hasher = DefaultHasher::new();
    id.as_str().hash(&mut hasher);
    let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(hasher.finish() % spread)
}

struct Watcher {
    /// The next update, before anything is awaited.
    pending: Option<QueueTicket>,
    /// The ticket as last sent.
    ticket: QueueTicket,
    refresh: Interval,
    room: Membership,
    reader: Reader,
    /// (state, opened, admitted) of the last re-read an advance asked for, so an
    /// answer that still lags behind the advance is not asked again until the timer.
    asked: Option<(i32, bool, i64)>,
    /// A final ticket or error was sent.
    done: bool,
    _counted: Counted,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<QueueTicketUpdate, RealtimeError>, Self)> {
        if let Some(ticket) = self.pending.take() {
            let update = self.sent(ticket);
            return Some((Ok(update), self));
        }
        if self.done {
            return None;
        }
        loop {
            let cause = tokio::select! {
                changed = self.room.rx.changed() => {
                    // The sender lives while the room has a member (this watcher).
                    changed.ok()?;
                    let progress = *self.room.rx.borrow_and_update();
                    match decide(&self.ticket, &progress) {
                        Decision::Nothing => continue,
                        Decision::Send(ticket) => {
                            let update = self.sent(ticket);
                            return Some((Ok(update), self));
                        }
                        Decision::Refetch => {
                            let key = (self.ticket.state, progress.opened, progress.admitted);
                            if self.asked == Some(key) {
                                continue;
                            }
                            self.asked = Some(key);
                            if progress.opened && self.ticket.number == 0 {
                                "opened"
                            } else {
                                "admitted"
                            }
                        }
                    }
                }
                _ = self.refresh.tick() => "refresh",
            };
            if let Some(item) = self.refetch(cause).await {
                return Some((item, self));
            }
        }
    }

    /// Re-reads the ticket: an update if booking-svc's answer differs from what was
    /// sent; an error that will not go away (the ticket is gone, the token expired)
    /// ends the stream; any other is retried at the next tick.
    async fn refetch(
        &mut self,
        cause: &'static str,
    ) -> Option<Result<QueueTicketUpdate, RealtimeError>> {
        self.refresh.reset();
        match (self.reader)(cause).await {
            Ok(fresh) => {
                // Look at the room again with the fresh ticket (it may be admitted
                // already by the advances seen so far).
                self.room.rx.mark_changed();
                (fresh != self.ticket).then(|| Ok(self.sent(fresh)))
            }
            Err(RealtimeError::Upstream(status)) if is_permanent(status.code()) => {
                tracing::debug!(
                    ticket_id = %self.ticket.ticket_id,
                    code = ?status.code(),
                    "queue ticket re-read refused; watch ended"
                );
                self.done = true;
                Some(Err(RealtimeError::Upstream(status)))
            }
            Err(error) => {
                tracing::debug!(
                    ticket_id = %self.ticket.ticket_id,
                    %error,
                    cause,
                    "queue ticket re-read failed; retrying at the next tick"
                );
                None
            }
        }
    }

    fn sent(&mut self, ticket: QueueTicket) -> QueueTicketUpdate {
        if is_final(&ticket) {
            tracing::debug!(ticket_id = %ticket.ticket_id, state = ticket.state, "queue watch ended");
            self.done = true;
        }
        self.ticket = ticket.clone();
        QueueTicketUpdate {
            ticket: Some(ticket),
        }
    }
}

/// booking-svc answers that a re-read will not change.
fn is_permanent(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
    )
}

#[cfg(test)]
mod tests;
