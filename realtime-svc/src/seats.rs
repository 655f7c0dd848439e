//! Seat feeds: per watched event, the seat statuses as of a version, the latest
//! changes (for `Last-Event-ID` resumes) and a broadcast channel to its watchers.
//!
//! A feed starts from booking-svc's snapshot (`GetSeatSnapshot`, an atomic read at one
//! seat version) and then applies the `seats.changed` notifications in version order.
//! A change that arrives early waits for the ones before it; if a version is still
//! missing after the gap timeout (a lost notification, or a bus reconnect), the feed
//! re-reads the snapshot and sends it to every watcher. Watchers never block the feed:
//! a watcher that falls behind the broadcast buffer gets a fresh snapshot instead, and
//! a watcher sends all the changes that are ready as one update, so the slower its
//! client reads, the fewer (larger) updates it sends.
//!
//! A lost notification is noticed even when no later version arrives to reveal it: a
//! version check asks booking-svc for the seat version of every loaded event
//! (`GetSeatVersions`, one request per tick for up to 1000 events) and a feed behind it
//! starts the same gap timer; a feed ahead of it (booking-svc's Redis lost its data and
//! its versions started again) re-reads the snapshot at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures::Stream;
use marquee_infra::grpc::PropagateTrace;
use marquee_proto::booking::catalog_service_client::CatalogServiceClient;
use marquee_proto::booking::{
    self as booking, GetSeatSnapshotRequest, GetSeatVersionsRequest, SeatSnapshot, SeatState,
    SeatsChanged,
};
use marquee_proto::realtime::{SeatChange, SeatChanges, SeatUpdate, seat_update};
use tokio::sync::broadcast;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::error::RealtimeError;

pub type CatalogClient = CatalogServiceClient<InterceptedService<Channel, PropagateTrace>>;

/// How many updates a watcher may be behind before it is resynced with a snapshot.
const WATCHER_BUFFER: usize = 1024;
/// Early changes a feed keeps while waiting for a missing version.
const PENDING_LIMIT: usize = 65_536;
/// Most changes a watcher puts in one update.
const MAX_BATCH: usize = 512;
/// How often the janitor looks for gaps to repair and feeds to evict.
const JANITOR_TICK: Duration = Duration::from_millis(100);
/// Most events one `GetSeatVersions` request asks about (booking-svc's limit).
const VERSION_CHECK_CHUNK: usize = 1000;
/// How long one `GetSeatVersions` request may take before the check gives up until
/// its next tick.
const VERSION_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// An event id, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(pub Uuid);

impl EventId {
    pub fn parse(value: &str) -> Result<Self, RealtimeError> {
        value
            .parse()
            .map(EventId)
            .map_err(|_| RealtimeError::invalid("eventId", "must be a UUID"))
    }
}

/// Where a watcher wants to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With a snapshot.
    Snapshot,
    /// After this version (the SSE `Last-Event-ID`), if the feed still has what follows.
    After(i64),
}

impl Start {
    pub fn parse(last_event_id: &str) -> Result<Self, RealtimeError> {
        let trimmed = last_event_id.trim();
        if trimmed.is_empty() {
            return Ok(Start::Snapshot);
        }
        trimmed
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(Start::After)
            .ok_or_else(|| {
                RealtimeError::invalid("lastEventId", "must be a seat version (a number ≥ 0)")
            })
    }
}

struct FeedState {
    loaded: bool,
    version: i64,
    seats: Vec<SeatState>,
    index: HashMap<String, usize>,
    /// The latest changes, in version order, ending at `version`.
    recent: VecDeque<Arc<SeatUpdate>>,
    /// Changes after a missing version, by version.
    pending: BTreeMap<i64, SeatsChanged>,
    /// Since when a version has been missing.
    gap_since: Option<Instant>,
    /// Since when the feed has known of a missing version (a change waiting for an
    /// earlier one, or booking-svc's version ahead of it): unlike `gap_since`, never
    /// backdated to force a re-read, so it times the wait for a metric.
    waiting_since: Option<Instant>,
    /// A snapshot re-read is due or running.
    resync: bool,
    /// The snapshot of `version`, built once for every watcher that needs it.
    snapshot: Option<Arc<SeatUpdate>>,
    idle_since: Option<Instant>,
    /// How many snapshots were installed: tells a version check whether the feed was
    /// re-read while the check was under way.
    installs: u64,
}

struct Feed {
    event: EventId,
    state: Mutex<FeedState>,
    tx: broadcast::Sender<Arc<SeatUpdate>>,
    /// One snapshot read at a time.
    load: tokio::sync::Mutex<()>,
    watchers: AtomicUsize,
    resume_buffer: usize,
}

impl Feed {
    fn new(event: EventId, resume_buffer: usize) -> Self {
        Self {
            event,
            state: Mutex::new(FeedState {
                loaded: false,
                version: 0,
                seats: Vec::new(),
                index: HashMap::new(),
                recent: VecDeque::new(),
                pending: BTreeMap::new(),
                gap_since: None,
                waiting_since: None,
                resync: false,
                snapshot: None,
                idle_since: None,
                installs: 0,
            }),
            tx: broadcast::channel(WATCHER_BUFFER).0,
            load: tokio::sync::Mutex::new(()),
            watchers: AtomicUsize::new(0),
            resume_buffer,
        }
    }

    fn state(&self) -> MutexGuard<'_, FeedState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot_of(&self, state: &mut FeedState) -> Arc<SeatUpdate> {
        if let Some(snapshot) = &state.snapshot {
            return snapshot.clone();
        }
        let event_id = self.event.0.to_string();
        let snapshot = Arc::new(SeatUpdate {
            event_id: event_id.clone(),
            version: state.version,
            kind: Some(seat_update::Kind::Snapshot(SeatSnapshot {
                event_id,
                version: state.version,
                seats: state.seats.clone(),
            })),
        });
        state.snapshot = Some(snapshot.clone());
        snapshot
    }

    /// Applies the next changes that are due, broadcasting each.
    fn drain(&self, state: &mut FeedState) {
        let now = SystemTime::now();
        let mut applied = 0u64;
        while let Some(entry) = state.pending.first_entry() {
            let version = *entry.key();
            if version <= state.version {
                entry.remove();
                continue;
            }
            if version != state.version + 1 {
                break;
            }
            let change = entry.remove();
            if let Some(lag) = change.changed_at.as_ref().and_then(|at| lag_since(now, at)) {
                // Seconds from a seat change's commit in booking-svc's Redis (its
                // `changed_at`) to its application to the feed.
                metrics::histogram!("realtime_seat_apply_lag_seconds").record(lag);
            }
            applied += 1;
            for seat in &change.seat_ids {
                if let Some(i) = state.index.get(seat) {
                    state.seats[*i].status = change.status;
                }
            }
            state.version = version;
            state.snapshot = None;
            let update = Arc::new(SeatUpdate {
                event_id: change.event_id,
                version,
                kind: Some(seat_update::Kind::Changes(SeatChanges {
                    items: vec![SeatChange {
                        version,
                        reason: change.reason,
                        status: change.status,
                        seat_ids: change.seat_ids,
                        changed_at: change.changed_at,
                    }],
                })),
            });
            state.recent.push_back(update.clone());
            while state.recent.len() > self.resume_buffer {
                state.recent.pop_front();
            }
            let _ = self.tx.send(update);
        }
        if applied > 0 {
            // Seat changes (`seats.changed` versions) applied to the feeds, in version order.
            metrics::counter!("realtime_seat_changes_applied_total").increment(applied);
        }
        if state.pending.is_empty() {
            state.gap_since = None;
            if let Some(since) = state.waiting_since.take() {
                record_gap_wait(since, "arrived");
            }
        } else {
            if state.gap_since.is_none() {
                state.gap_since = Some(Instant::now());
            }
            if state.waiting_since.is_none() {
                state.waiting_since = Some(Instant::now());
            }
        }
    }

    fn offer(&self, change: SeatsChanged) {
        let mut state = self.state();
        if state.loaded && change.version <= state.version {
            return;
        }
        if state.pending.len() >= PENDING_LIMIT {
            // Hopelessly behind: forget and re-read.
            state.pending.clear();
            state.gap_since = Some(Instant::now() - Duration::from_secs(3600));
        }
        state.pending.insert(change.version, change);
        if state.loaded {
            self.drain(&mut state);
        }
    }

    /// Installs a snapshot read from booking-svc and tells every watcher. It replaces
    /// whatever the feed had, even at an older version (booking-svc's seat versions
    /// start again from its store after Redis lost its data).
    fn install(&self, snapshot: SeatSnapshot) {
        let mut state = self.state();
        let had = state.version;
        if let Some(since) = state.waiting_since.take() {
            record_gap_wait(since, "resynced");
        }
        state.resync = false;
        state.loaded = true;
        state.installs += 1;
        state.version = snapshot.version;
        state.index = snapshot
            .seats
            .iter()
            .enumerate()
            .map(|(i, s)| (s.seat_id.clone(), i))
            .collect();
        state.seats = snapshot.seats;
        state.recent.clear();
        state.snapshot = None;
        let update = self.snapshot_of(&mut state);
        let _ = self.tx.send(update);
        self.drain(&mut state);
        // What is still waiting lies beyond another gap, or was never made (a version
        // that arrived before the snapshot was read). Either way it is dropped, and if
        // the feed had changes newer than this snapshot, or such leftovers, the snapshot
        // is read once more after the gap timeout: a delayed change is never lost, and a
        // version that was never made costs one more read, not a loop.
        let leftovers = !state.pending.is_empty();
        let stale = leftovers || state.version < had;
        state.pending.clear();
        state.gap_since = stale.then(Instant::now);
        state.waiting_since = leftovers.then(Instant::now);
    }

    fn is_loaded(&self) -> bool {
        self.state().loaded
    }

    /// Where a version check starts from: the applied version and how many snapshots
    /// made it, if the feed is loaded.
    fn sample(&self) -> Option<Sample> {
        let state = self.state();
        state.loaded.then_some(Sample {
            version: state.version,
            installs: state.installs,
        })
    }

    /// Takes booking-svc's seat version `booking`, read after `asked` was sampled.
    fn check_version(&self, booking: i64, asked: Sample) -> VersionCheck {
        let mut state = self.state();
        if !state.loaded || state.resync {
            return VersionCheck::InStep;
        }
        // Versions only grow, and booking-svc had made `asked.version` before it was
        // asked: a lower answer means its Redis lost its data (unless a snapshot was
        // installed meanwhile, which already told the watchers). Re-read now.
        if booking < asked.version && state.installs == asked.installs {
            state.gap_since = Some(Instant::now() - Duration::from_secs(3600));
            return VersionCheck::WentBack;
        }
        // A version the feed has not had: its notification is on its way or was lost.
        // Pending changes already run the gap timer; otherwise start it, and the change
        // arriving stops it (`drain`), else the snapshot is re-read when it runs out.
        if booking > state.version && state.pending.is_empty() {
            if state.gap_since.is_none() {
                state.gap_since = Some(Instant::now());
            }
            if state.waiting_since.is_none() {
                state.waiting_since = Some(Instant::now());
            }
            return VersionCheck::Behind;
        }
        VersionCheck::InStep
    }

    /// A receiver of what follows, and what to send before it.
    fn subscribe(
        &self,
        start: Start,
    ) -> (broadcast::Receiver<Arc<SeatUpdate>>, Vec<Arc<SeatUpdate>>) {
        // Only loaded feeds are subscribed to (`watch` loads first).
        let mut state = self.state();
        let rx = self.tx.subscribe();
        let first = match start {
            Start::After(v) if v == state.version => Vec::new(),
            Start::After(v)
                if v < state.version
                    && state.recent.front().is_some_and(|f| f.version <= v + 1) =>
            {
                state
                    .recent
                    .iter()
                    .filter(|u| u.version > v)
                    .cloned()
                    .collect()
            }
            _ => vec![self.snapshot_of(&mut state)],
        };
        (rx, first)
    }

    fn current_snapshot(&self) -> Option<Arc<SeatUpdate>> {
        let mut state = self.state();
        state.loaded.then(|| self.snapshot_of(&mut state))
    }
}

/// Seconds from `at` (a change's commit time) to `now`, 0 if `at` is ahead (the clocks
/// of booking-svc's Redis and of this pod differ); `None` for an invalid timestamp.
fn lag_since(now: SystemTime, at: &prost_types::Timestamp) -> Option<f64> {
    let at = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
        u64::try_from(at.seconds).ok()?,
        u32::try_from(at.nanos).ok()?,
    ))?;
    Some(now.duration_since(at).unwrap_or_default().as_secs_f64())
}

/// Registers the feeds' counter and histograms, so that they are exported (at zero)
/// before the first change or missing version.
fn register_feed_metrics() {
    metrics::counter!("realtime_seat_changes_applied_total").increment(0);
    let _ = metrics::histogram!("realtime_seat_apply_lag_seconds");
    for outcome in GAP_WAIT_OUTCOMES {
        let _ = metrics::histogram!("realtime_seat_gap_wait_seconds", "outcome" => outcome);
    }
}

/// How a wait for a missing version ends: the change came, or a snapshot replaced the
/// feed's state.
const GAP_WAIT_OUTCOMES: [&str; 2] = ["arrived", "resynced"];

/// Records how long a feed knew of a missing version before it `ended` ("arrived": the
/// change came; "resynced": a snapshot replaced the feed's state).
fn record_gap_wait(since: Instant, ended: &'static str) {
    // Seconds a feed waited for a missing seat version, by how the wait ended.
    metrics::histogram!("realtime_seat_gap_wait_seconds", "outcome" => ended)
        .record(since.elapsed().as_secs_f64());
}

/// A feed's position when a version check asked booking-svc about it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    version: i64,
    installs: u64,
}

/// What a version check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionCheck {
    InStep,
    /// booking-svc has a version the feed has not applied: the gap timer runs.
    Behind,
    /// booking-svc's version went back below the feed's: a re-read is due now.
    WentBack,
}

/// Decrements a feed's watchers when a stream ends.
struct Watching(Arc<Feed>);

impl Drop for Watching {
    fn drop(&mut self) {
        if self.0.watchers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.state().idle_since = Some(Instant::now());
        }
        metrics::gauge!("realtime_seat_watchers").decrement(1.0);
    }
}

/// Every seat feed of this replica.
pub struct SeatHub {
    feeds: Mutex<HashMap<EventId, Arc<Feed>>>,
    catalog: CatalogClient,
    resume_buffer: usize,
    gap_timeout: Duration,
    idle_evict: Duration,
}

impl SeatHub {
    pub fn new(
        catalog: CatalogClient,
        resume_buffer: usize,
        gap_timeout: Duration,
        idle_evict: Duration,
    ) -> Arc<Self> {
        register_feed_metrics();
        Arc::new(Self {
            feeds: Mutex::new(HashMap::new()),
            catalog,
            resume_buffer: resume_buffer.max(1),
            gap_timeout,
            idle_evict,
        })
    }

    fn feeds(&self) -> MutexGuard<'_, HashMap<EventId, Arc<Feed>>> {
        self.feeds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies a `seats.changed` notification to the feeds it concerns.
    pub fn on_changes(&self, changes: booking::SeatChanges) {
        let watched: Vec<(Arc<Feed>, SeatsChanged)> = {
            let feeds = self.feeds();
            changes
                .changes
                .into_iter()
                .filter_map(|change| {
                    let event = change.event_id.parse().map(EventId).ok()?;
                    Some((feeds.get(&event)?.clone(), change))
                })
                .collect()
        };
        for (feed, change) in watched {
            feed.offer(change);
        }
    }

    /// After the bus subscription was (re)made: whatever was published while it did not
    /// exist is lost, so every feed re-reads its snapshot.
    pub fn on_resubscribed(&self) {
        for feed in self.feeds().values() {
            let mut state = feed.state();
            if state.loaded {
                state.gap_since = Some(Instant::now() - Duration::from_secs(3600));
            }
        }
    }

    async fn load(&self, feed: &Feed) -> Result<(), RealtimeError> {
        let _one = feed.load.lock().await;
        {
            let state = feed.state();
            if state.loaded && !state.resync {
                return Ok(());
            }
        }
        let snapshot = self
            .catalog
            .clone()
            .get_seat_snapshot(GetSeatSnapshotRequest {
                event_id: feed.event.0.to_string(),
            })
            .await
            .map_err(RealtimeError::Upstream);
        match snapshot {
            Ok(snapshot) => {
                feed.install(snapshot.into_inner());
                Ok(())
            }
            Err(error) => {
                feed.state().resync = false;
                Err(error)
            }
        }
    }

    /// The seat updates of `event` from `start` on: a stream that ends only when the
    /// watcher goes away.
    pub async fn watch(
        self: &Arc<Self>,
        event: EventId,
        start: Start,
    ) -> Result<impl Stream<Item = SeatUpdate> + Send + 'static, RealtimeError> {
        let feed = {
            let mut feeds = self.feeds();
            let feed = feeds
                .entry(event)
                .or_insert_with(|| Arc::new(Feed::new(event, self.resume_buffer)))
                .clone();
            feed.watchers.fetch_add(1, Ordering::AcqRel);
            feed
        };
        metrics::gauge!("realtime_seat_watchers").increment(1.0);
        let watching = Watching(feed.clone());
        if !feed.is_loaded() {
            self.load(&feed).await?;
        }
        let (rx, first) = feed.subscribe(start);
        // A replay continues from the client's version; a snapshot sets its own.
        let at = match start {
            Start::After(v) => v,
            Start::Snapshot => -1,
        };
        let state = Watcher {
            first: first.into(),
            rx,
            at,
            feed,
            lagged: false,
            _watching: watching,
        };
        Ok(futures::stream::unfold(state, Watcher::next))
    }

    /// Repairs gaps and evicts feeds nobody watches, every tick, while the hub lives.
    pub fn spawn_janitor(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let hub: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(JANITOR_TICK) => {}
                }
                let Some(hub) = hub.upgrade() else { return };
                hub.tidy();
            }
        });
    }

    /// Every `every` (unless zero), asks booking-svc for the seat version of every
    /// loaded feed, while the hub lives: a change whose notification was lost is noticed
    /// even if the event stays quiet afterwards.
    pub fn spawn_version_check(
        self: &Arc<Self>,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if every.is_zero() {
            return;
        }
        let hub: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let Some(hub) = hub.upgrade() else { return };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = hub.check_versions() => {}
                }
            }
        });
    }

    /// One version check of every loaded feed: a request per (up to) 1000 feeds.
    /// Failures are logged; the next tick tries again.
    async fn check_versions(&self) {
        let sampled: Vec<(Arc<Feed>, Sample)> = self
            .feeds()
            .values()
            .filter_map(|feed| Some((feed.clone(), feed.sample()?)))
            .collect();
        for chunk in sampled.chunks(VERSION_CHECK_CHUNK) {
            let request = GetSeatVersionsRequest {
                event_ids: chunk.iter().map(|(f, _)| f.event.0.to_string()).collect(),
            };
            let reply = tokio::time::timeout(
                VERSION_CHECK_TIMEOUT,
                self.catalog.clone().get_seat_versions(request),
            )
            .await;
            let versions = match reply {
                Ok(Ok(reply)) => reply.into_inner().versions,
                Ok(Err(status)) => {
                    tracing::warn!(feeds = chunk.len(), error = %status, "seat version check failed");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(feeds = chunk.len(), "seat version check timed out");
                    continue;
                }
            };
            let by_event: HashMap<String, &(Arc<Feed>, Sample)> = chunk
                .iter()
                .map(|entry| (entry.0.event.0.to_string(), entry))
                .collect();
            for reported in &versions {
                let Some((feed, asked)) = by_event.get(reported.event_id.as_str()) else {
                    continue;
                };
                match feed.check_version(reported.version, *asked) {
                    VersionCheck::InStep => {}
                    VersionCheck::Behind => tracing::debug!(
                        event_id = %feed.event.0,
                        applied = asked.version,
                        booking_version = reported.version,
                        "feed behind booking-svc's seat version; gap timer started"
                    ),
                    VersionCheck::WentBack => {
                        metrics::counter!("realtime_resyncs_total", "cause" => "version_went_back")
                            .increment(1);
                        tracing::info!(
                            event_id = %feed.event.0,
                            applied = asked.version,
                            booking_version = reported.version,
                            "booking-svc's seat version went back; re-reading the snapshot"
                        );
                    }
                }
            }
        }
    }

    fn tidy(self: &Arc<Self>) {
        let now = Instant::now();
        let mut due = Vec::new();
        self.feeds().retain(|_, feed| {
            let mut state = feed.state();
            let idle = feed.watchers.load(Ordering::Acquire) == 0
                && (!state.loaded
                    || state
                        .idle_since
                        .is_some_and(|since| now.duration_since(since) >= self.idle_evict));
            if idle {
                return false;
            }
            if state.loaded
                && !state.resync
                && state
                    .gap_since
                    .is_some_and(|since| now.duration_since(since) >= self.gap_timeout)
            {
                state.resync = true;
                due.push(feed.clone());
            }
            true
        });
        metrics::gauge!("realtime_feeds").set(self.feeds().len() as f64);
        for feed in due {
            let hub = self.clone();
            tokio::spawn(async move {
                tracing::info!(event_id = %feed.event.0, "seat versions missing; re-reading the snapshot");
                metrics::counter!("realtime_resyncs_total", "cause" => "gap").increment(1);
                if let Err(error) = hub.load(&feed).await {
                    tracing::warn!(event_id = %feed.event.0, %error, "snapshot re-read failed");
                }
            });
        }
    }
}

/// One watcher's position in its feed.
struct Watcher {
    /// Updates to send before the broadcast's (a replay, or one taken back).
    first: VecDeque<Arc<SeatUpdate>>,
    rx: broadcast::Receiver<Arc<SeatUpdate>>,
    /// The version the watcher is at (-1: none yet).
    at: i64,
    feed: Arc<Feed>,
    /// The watcher missed updates (the broadcast moved on without it): resync.
    lagged: bool,
    _watching: Watching,
}

/// What a watcher does with the next update it reads.
enum Next {
    Send(Arc<SeatUpdate>),
    Skip,
    Ended,
}

impl Watcher {
    /// The next update without waiting, if one is ready.
    fn ready(&mut self) -> Option<Result<Arc<SeatUpdate>, broadcast::error::TryRecvError>> {
        if let Some(update) = self.first.pop_front() {
            return Some(Ok(update));
        }
        match self.rx.try_recv() {
            Err(broadcast::error::TryRecvError::Empty) => None,
            other => Some(other),
        }
    }

    async fn wait(&mut self) -> Next {
        let received = if std::mem::take(&mut self.lagged) {
            Err(broadcast::error::RecvError::Lagged(0))
        } else {
            match self.ready() {
                Some(Ok(update)) => Ok(update),
                Some(Err(broadcast::error::TryRecvError::Lagged(n))) => {
                    Err(broadcast::error::RecvError::Lagged(n))
                }
                Some(Err(_)) => Err(broadcast::error::RecvError::Closed),
                None => self.rx.recv().await,
            }
        };
        match received {
            Ok(update) => Next::Send(update),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                metrics::counter!("realtime_resyncs_total", "cause" => "slow_watcher").increment(1);
                tracing::debug!(event_id = %self.feed.event.0, missed, "watcher fell behind; resyncing");
                self.feed.current_snapshot().map_or(Next::Skip, Next::Send)
            }
            Err(broadcast::error::RecvError::Closed) => Next::Ended,
        }
    }

    /// The next update to send. The feed's change updates each carry one change, at
    /// their version; a watcher sends every consecutive one that is ready as one update.
    async fn next(mut self) -> Option<(SeatUpdate, Self)> {
        loop {
            let update = match self.wait().await {
                Next::Send(update) => update,
                Next::Skip => continue,
                Next::Ended => return None,
            };
            let Some(seat_update::Kind::Changes(changes)) = &update.kind else {
                // A snapshot: always sent, it replaces the client's map.
                self.at = update.version;
                return Some((Arc::unwrap_or_clone(update), self));
            };
            // Before its first snapshot a watcher has nothing to apply a change to.
            if self.at < 0 || update.version <= self.at {
                continue;
            }
            if update.version != self.at + 1 {
                // Never send a hole: the client gets the whole map again instead.
                self.lagged = true;
                continue;
            }
            let mut items = changes.items.clone();
            let mut version = update.version;
            while items.len() < MAX_BATCH {
                let more = match self.ready() {
                    None | Some(Err(broadcast::error::TryRecvError::Closed)) => break,
                    Some(Err(_)) => {
                        self.lagged = true;
                        break;
                    }
                    Some(Ok(more)) => more,
                };
                match &more.kind {
                    Some(seat_update::Kind::Changes(next)) if more.version == version + 1 => {
                        items.extend_from_slice(&next.items);
                        version = more.version;
                    }
                    Some(seat_update::Kind::Changes(_)) if more.version <= version => {}
                    _ => {
                        self.first.push_front(more);
                        break;
                    }
                }
            }
            self.at = version;
            let batch = SeatUpdate {
                event_id: update.event_id.clone(),
                version,
                kind: Some(seat_update::Kind::Changes(SeatChanges { items })),
            };
            return Some((batch, self));
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EventId {
        EventId(Uuid::from_u128(7))
    }

    fn feed_at(version: i64) -> Feed {
        let feed = Feed::new(event(), 3);
        feed.install(SeatSnapshot {
            event_id: event().0.to_string(),
            version,
            seats: ["a", "b", "c"]
                .iter()
                .map(|id| SeatState {
                    seat_id: (*id).to_owned(),
                    status: 1,
                })
                .collect(),
        });
        feed
    }

    fn held(version: i64, seat: &str) -> SeatsChanged {
        SeatsChanged {
            event_id: event().0.to_string(),
            version,
            reason: 1,
            status: 2,
            seat_ids: vec![seat.to_owned()],
            changed_at: None,
        }
    }

    fn versions(rx: &mut broadcast::Receiver<Arc<SeatUpdate>>) -> Vec<i64> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|u| u.version)
            .collect()
    }

    #[test]
    fn changes_are_applied_in_version_order_whatever_order_they_arrive_in() {
        let feed = feed_at(1);
        let (mut rx, first) = feed.subscribe(Start::After(1));
        assert!(first.is_empty());
        feed.offer(held(3, "b"));
        assert!(versions(&mut rx).is_empty(), "3 must wait for 2");
        assert!(feed.state().gap_since.is_some());
        feed.offer(held(2, "a"));
        assert_eq!(versions(&mut rx), vec![2, 3]);
        assert!(feed.state().gap_since.is_none());
        // A duplicate or a stale change is dropped.
        feed.offer(held(2, "a"));
        feed.offer(held(1, "c"));
        assert!(versions(&mut rx).is_empty());
        let state = feed.state();
        assert_eq!(state.version, 3);
        let statuses: Vec<i32> = state.seats.iter().map(|s| s.status).collect();
        assert_eq!(statuses, vec![2, 2, 1]);
    }

    #[test]
    fn a_resume_replays_what_the_buffer_still_has_else_a_snapshot() {
        let feed = feed_at(10);
        for v in 11..=15 {
            feed.offer(held(v, "a"));
        }
        // The buffer keeps the last three changes: 13, 14, 15.
        let (_, replay) = feed.subscribe(Start::After(12));
        assert_eq!(
            replay.iter().map(|u| u.version).collect::<Vec<_>>(),
            vec![13, 14, 15]
        );
        let (_, too_old) = feed.subscribe(Start::After(11));
        assert!(matches!(
            too_old[0].kind,
            Some(seat_update::Kind::Snapshot(_))
        ));
        assert_eq!(too_old[0].version, 15);
        let (_, current) = feed.subscribe(Start::After(15));
        assert!(current.is_empty());
        let (_, ahead) = feed.subscribe(Start::After(99));
        assert!(matches!(
            ahead[0].kind,
            Some(seat_update::Kind::Snapshot(_))
        ));
    }

    #[test]
    fn a_snapshot_replaces_the_state_even_at_an_older_version() {
        let feed = feed_at(40);
        let (mut rx, _) = feed.subscribe(Start::After(40));
        // booking-svc's Redis lost its data: versions start again.
        feed.install(SeatSnapshot {
            event_id: event().0.to_string(),
            version: 2,
            seats: Vec::new(),
        });
        assert_eq!(versions(&mut rx), vec![2]);
        feed.offer(held(3, "a"));
        assert_eq!(versions(&mut rx), vec![3]);
    }

    #[test]
    fn a_feed_hopelessly_behind_is_due_for_a_reread() {
        let feed = feed_at(1);
        for v in 3..(3 + PENDING_LIMIT as i64 + 1) {
            feed.offer(held(v, "a"));
        }
        let state = feed.state();
        // The janitor re-reads a loaded feed with an old gap that is not already resyncing.
        assert!(!state.resync);
        assert!(
            state
                .gap_since
                .is_some_and(|since| since.elapsed() > Duration::from_secs(60))
        );
    }

    #[test]
    fn leftovers_after_a_snapshot_lead_to_one_more_read() {
        let feed = feed_at(1);
        feed.offer(held(3, "a"));
        feed.install(SeatSnapshot {
            event_id: event().0.to_string(),
            version: 1,
            seats: Vec::new(),
        });
        let state = feed.state();
        assert!(state.pending.is_empty());
        assert!(
            state.gap_since.is_some(),
            "version 2 may still be on its way"
        );
        drop(state);
        feed.install(SeatSnapshot {
            event_id: event().0.to_string(),
            version: 3,
            seats: Vec::new(),
        });
        assert!(feed.state().gap_since.is_none());
    }

    #[test]
    fn a_version_the_feed_never_got_starts_the_gap_timer_until_it_arrives() {
        let feed = feed_at(1);
        let asked = feed.sample().expect("loaded");
        assert_eq!(feed.check_version(1, asked), VersionCheck::InStep);
        assert!(feed.state().gap_since.is_none());
        assert_eq!(feed.check_version(2, asked), VersionCheck::Behind);
        assert!(feed.state().gap_since.is_some());
        // The notification was only late: it stops the timer.
        feed.offer(held(2, "a"));
        let state = feed.state();
        assert_eq!(state.version, 2);
        assert!(state.gap_since.is_none());
    }

    #[test]
    fn a_check_behind_a_waiting_change_leaves_its_timer_alone() {
        let feed = feed_at(1);
        feed.offer(held(3, "a"));
        let since = feed.state().gap_since;
        assert!(since.is_some());
        let asked = feed.sample().expect("loaded");
        assert_eq!(feed.check_version(3, asked), VersionCheck::InStep);
        assert_eq!(feed.state().gap_since, since);
    }

    #[test]
    fn a_check_answered_before_a_change_arrived_is_no_reason_to_resync() {
        let feed = feed_at(1);
        let asked = feed.sample().expect("loaded");
        // Version 2 is applied while booking-svc's answer (1, read earlier) travels.
        feed.offer(held(2, "a"));
        assert_eq!(feed.check_version(1, asked), VersionCheck::InStep);
        assert!(feed.state().gap_since.is_none());
    }

    #[test]
    fn a_version_gone_back_is_due_for_a_reread_at_once_unless_already_reread() {
        let feed = feed_at(5);
        let asked = feed.sample().expect("loaded");
        assert_eq!(feed.check_version(0, asked), VersionCheck::WentBack);
        assert!(
            feed.state()
                .gap_since
                .is_some_and(|since| since.elapsed() > Duration::from_secs(60))
        );

        let feed = feed_at(5);
        let asked = feed.sample().expect("loaded");
        feed.install(SeatSnapshot {
            event_id: event().0.to_string(),
            version: 0,
            seats: Vec::new(),
        });
        let before = feed.state().gap_since;
        assert_eq!(feed.check_version(0, asked), VersionCheck::InStep);
        assert_eq!(feed.state().gap_since, before);
    }

    #[test]
    fn a_missing_version_is_timed_until_it_arrives_or_a_snapshot_replaces_it() {
        let feed = feed_at(1);
        feed.offer(held(3, "a"));
        assert!(feed.state().waiting_since.is_some(), "2 is missing");
        feed.offer(held(2, "b"));
        assert!(feed.state().waiting_since.is_none(), "2 arrived");

        feed.offer(held(5, "a"));
        assert!(feed.state().waiting_since.is_some(), "4 is missing");
        feed.install(SeatSnapshot {
            event_id: event().0.to_string(),
            version: 5,
            seats: Vec::new(),
        });
        assert!(feed.state().waiting_since.is_none(), "resynced");

        // booking-svc's version ahead of the feed starts a wait too.
        let asked = feed.sample().expect("loaded");
        assert_eq!(feed.check_version(6, asked), VersionCheck::Behind);
        assert!(feed.state().waiting_since.is_some());
        feed.offer(held(6, "a"));
        assert!(feed.state().waiting_since.is_none());

        // A re-read forced at once (versions went back) is no wait for a version.
        let asked = feed.sample().expect("loaded");
        assert_eq!(feed.check_version(0, asked), VersionCheck::WentBack);
        assert!(feed.state().waiting_since.is_none());
    }

    #[test]
    fn the_apply_lag_runs_from_the_commit_time_and_is_never_negative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(lag_since(now, &at(1_700_000_000, 0)), Some(0.5));
        assert_eq!(
            lag_since(now, &at(1_700_000_001, 0)),
            Some(0.0),
            "clock skew"
        );
        assert_eq!(lag_since(now, &at(-1, 0)), None);
        assert_eq!(lag_since(now, &at(1, -1)), None);
    }

    #[test]
    fn applied_changes_their_lag_and_gap_waits_are_exported() {
        let handle = marquee_infra::metrics::prometheus();
        let feed = feed_at(1);
        let mut change = held(3, "a");
        change.changed_at = Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        });
        feed.offer(change);
        feed.offer(held(2, "b"));
        let text = handle.render();
        for series in [
            "realtime_seat_changes_applied_total ",
            "realtime_seat_apply_lag_seconds_count ",
            "realtime_seat_gap_wait_seconds_count{outcome=\"arrived\"} ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(series)),
                "{series}missing from {text}"
            );
        }
    }

    #[test]
    fn last_event_id_must_be_a_version() {
        assert_eq!(Start::parse("").ok(), Some(Start::Snapshot));
        assert_eq!(Start::parse(" 42 ").ok(), Some(Start::After(42)));
        assert!(Start::parse("-1").is_err());
        assert!(Start::parse("abc").is_err());
    }
}
