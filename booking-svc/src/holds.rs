//! Seat holds in Redis: the hot path of a flash sale.
//!
//! The store is split into [`PARTITIONS`] partitions, each with its own hash tag `{hN}`:
//! an event's keys are all in the partition of its id ([`Partition::of`]), and a hold's
//! id is made in its event's partition ([`new_hold_id`]), so a hold is found from its id
//! alone. Every script touches the keys of one partition only, so the store runs
//! unchanged on a Redis Cluster, where each partition's keys share one hash slot and the
//! partitions spread over the masters. Keys, under the configured prefix `p` and the
//! partition's tag `t`:
//! - `pt epoch`            → the seat-version base of this partition's Redis generation.
//!   It is written last when booking-svc primes the partition from PostgreSQL; while it
//!   is missing (Redis, or the cluster node owning the partition, lost its data, or it
//!   was never primed) every script that reads or changes seats refuses with `NOEPOCH`,
//!   so nothing is held, sold or shown from a half-restored store
//! - `pt changes`          → a stream of seat changes (event, version, kind, seats),
//!   appended by the very script that makes the change; `seat_relay` publishes it
//! - `pt seat:<seat>`      → the hold id holding the seat, or `sold:<booking>` once sold
//! - `pt hold:<hold>`      → hash: buyer, event, seats (comma-separated), expires (ms), state
//! - `pt deadlines`        → sorted set of hold ids by deadline (ms), driven by the sweeper
//! - `pt buyer:<ev>:<acc>` → set of seat ids the buyer holds or owns for the event
//! - `pt seatver:<ev>`     → the event's seat version (starts at the epoch's base)
//! - `pt holdkey:<ev>:<acc>:<key>` → `hold|expires ms|terms|seats` of the hold an
//!   idempotency key made (a key is scoped to its buyer and event; `terms` is what the
//!   key is bound to: the sorted seat ids, or a best-available request's terms)
//! - `pt void:<hold>`      → a hold whose request was answered "not held": it can no
//!   longer be made, even if its script is still on its way to Redis
//! - `p priming`           → the lock of the replica re-priming after a loss
//!
//! Every change is one Lua script, so a hold takes all requested seats or none, and a
//! release, expiry or sale never races another. A script that changes seats bumps the
//! event's seat version and appends the change to the stream in the same atomic step, so
//! the announcement of a change never depends on its caller receiving the reply: a reply
//! lost to a timeout or a crash loses nothing. A snapshot ([`HoldStore::snapshot`]) is
//! exactly some version.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::try_join_all;
use marquee_infra::redis_conn::{RedisConn, RedisTarget};
use redis::{AsyncCommands, Script};
use tokio::sync::Notify;
use uuid::Uuid;

pub use marquee_infra::redis_conn::RedisTimeouts;

use crate::domain::{
    AccountId, BookingId, EventId, HoldId, IdempotencyKey, SeatChange, SeatId, SeatStatus,
};
use crate::error::BookingError;

/// Most entries each partition's change stream keeps (approximately); the relay
/// publishes them within milliseconds, so this only bounds memory while the bus is down.
pub const STREAM_MAX: u64 = 100_000;

/// How many partitions (hash tags) the store is split into: a power of two, at most 64
/// (the seat relay keeps one bit per partition). Changing it moves every key, which the
/// store treats as a loss: it is re-primed from PostgreSQL and unbooked holds are lost.
pub const PARTITIONS: u8 = 64;
const _: () = assert!(PARTITIONS.is_power_of_two() && PARTITIONS <= 64);

/// One partition of the store: the keys of the events whose ids fall in it, and of
/// their holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition(u8);

impl Partition {
    /// The partition of an event (or of a hold made by [`new_hold_id`]): the low bits
    /// of the id's last byte, which are random in the UUIDs Marquee makes (v4 and v7).
    pub fn of(id: Uuid) -> Self {
        Self(id.as_bytes()[15] & (PARTITIONS - 1))
    }

    pub fn all() -> impl Iterator<Item = Self> {
        (0..PARTITIONS).map(Self)
    }

    fn bit(self) -> u64 {
        1 << self.0
    }
}

/// `p{hN}`: the start of every key of `partition` under `prefix` (`{hN}` being its hash
/// tag), e.g. `p{hN}seat:<seat>`. For tools and tests that look at Redis directly.
pub fn partition_prefix(prefix: &str, partition: Partition) -> String {
    format!("{prefix}{{h{}}}", partition.0)
}

/// A new hold id in `event`'s partition, so the hold's keys can be found from its id.
pub fn new_hold_id(event: EventId) -> HoldId {
    let mut bytes = *Uuid::now_v7().as_bytes();
    bytes[15] = (bytes[15] & !(PARTITIONS - 1)) | Partition::of(event.0).0;
    HoldId(Uuid::from_bytes(bytes))
}

/// Partitions whose change stream may have entries the seat relay has not read: every
/// script that may append marks its partition, and the relay reads just those.
#[derive(Debug, Default)]
pub struct Dirty {
    mask: AtomicU64,
    notify: Notify,
}

impl Dirty {
    pub fn mark(&self, partition: Partition) {
        self.mask.fetch_or(partition.bit(), Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// The partitions marked since the last call, as a bit mask (bit `n` is `{hn}`).
    pub fn take(&self) -> u64 {
        self.mask.swap(0, Ordering::AcqRel)
    }

    /// Resolves once a partition is marked (at once if one was since the last wait).
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// Shared start of every script that reads or changes seats. KEYS[1] is the epoch key,
/// KEYS[2] the change stream. `announce` bumps an event's seat version (starting from the
/// epoch's base) and appends the change to the stream.
const PRELUDE: &str = r"
local base = redis.call('GET', KEYS[1])
if not base then return redis.error_reply('NOEPOCH redis has lost its data; re-priming') end
local function announce(vkey, event, kind, seats)
  redis.call('SET', vkey, base, 'NX')
  local v = redis.call('INCR', vkey)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV_STREAM_MAX, '*',
    'e', event, 'v', v, 'k', kind, 's', table.concat(seats, ','))
  return v
end
";

// KEYS: epoch, stream, deadlines, hold, buyer set, seat version, idempotency key, void,
// seats...; ARGV: hold id, buyer, event, expires (ms), limit, block size n, keyed
// (1/0), key ttl (ms), terms (what the key is bound to), seat ids... (KEYS[i] is seat
// ARGV[i + 1]). The seats are one or more candidate blocks of n seats each, in order of
// preference: the first whose seats are all free is held (named seats are one block).
// Replies {'held', version, block index from 0}, {'replay', hold id, expires, seats
// csv}, {'reused'}, {'void'}, {'taken', positions...} or {'limit', current}. A key
// stored before the seats were kept with it (`hold|expires|terms`) replays no seats.
const HOLD: &str = r"
if ARGV[7] == '1' then
  local done = redis.call('GET', KEYS[7])
  if done then
    local id, expires, rest = string.match(done, '^([^|]*)|([^|]*)|(.*)$')
    local terms, held = string.match(rest, '^([^|]*)|(.*)$')
    if not terms then terms, held = rest, '' end
    if terms ~= ARGV[9] then return {'reused'} end
    return {'replay', id, expires, held}
  end
end
if redis.call('EXISTS', KEYS[8]) == 1 then return {'void'} end
local n = tonumber(ARGV[6])
local pick = nil
local taken = {}
for first = 9, #KEYS, n do
  local free = true
  for i = first, first + n - 1 do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      free = false
      taken[#taken + 1] = tostring(i - 8)
    end
  end
  if free then
    pick = first
    break
  end
end
if not pick then return {'taken', unpack(taken)} end
local current = redis.call('SCARD', KEYS[5])
if current + n > tonumber(ARGV[5]) then return {'limit', tostring(current)} end
local seats = {}
for i = pick, pick + n - 1 do
  redis.call('SET', KEYS[i], ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[i + 1])
  seats[#seats + 1] = ARGV[i + 1]
end
local csv = table.concat(seats, ',')
redis.call('HSET', KEYS[4], 'buyer', ARGV[2], 'event', ARGV[3], 'seats', csv, 'expires', ARGV[4], 'state', 'held')
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if ARGV[7] == '1' then
  redis.call('SET', KEYS[7], ARGV[1] .. '|' .. ARGV[4] .. '|' .. ARGV[9] .. '|' .. csv, 'PX', ARGV[8])
end
return {'held', tostring(announce(KEYS[6], ARGV[3], 'held', seats)), tostring((pick - 9) / n)}
";

// Replies {'claimed', event, seats, expires}, {'gone'} or {'checked_out'}.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return {'gone'} end
local h = redis.call('HMGET', KEYS[2], 'buyer', 'state', 'expires', 'event', 'seats')
if h[1] ~= ARGV[2] then return {'gone'} end
if h[2] ~= 'held' then return {'checked_out'} end
if tonumber(h[3]) <= tonumber(ARGV[3]) then return {'gone'} end
redis.call('HSET', KEYS[2], 'state', 'checked_out')
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return {'claimed', h[4], h[5], h[3]}
";

// Puts a claimed hold back to held, under its own deadline. Replies 1 if it did.
const UNCLAIM: &str = r"
local h = redis.call('HMGET', KEYS[2], 'state', 'expires')
if h[1] ~= 'checked_out' then return 0 end
redis.call('HSET', KEYS[2], 'state', 'held')
redis.call('ZADD', KEYS[1], h[2], ARGV[1])
return 1
";

// KEYS: epoch, stream, deadlines, hold, buyer set, seat version, void, seats...;
// ARGV: hold id, required state ('' = any), due-by ms (0 = any), sold marker ('' =
// none), event, kind, void ttl ms (0 = none), seat ids... (KEYS[i] is seat ARGV[i]).
// A void ttl first makes the hold impossible to create from now on. Replies {0} when
// the hold is not in the required state, else {1, version (0 if no seat was freed)}.
const RELEASE: &str = r"
if tonumber(ARGV[7]) > 0 then redis.call('SET', KEYS[7], '1', 'PX', ARGV[7]) end
if redis.call('EXISTS', KEYS[4]) == 1 then
  local h = redis.call('HMGET', KEYS[4], 'state', 'expires')
  if ARGV[2] ~= '' and h[1] ~= ARGV[2] then return {0} end
  if tonumber(ARGV[3]) > 0 and tonumber(h[2]) > tonumber(ARGV[3]) then return {0} end
elseif ARGV[2] ~= '' then
  return {0}
end
local freed = {}
for i = 8, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v == ARGV[1] or (ARGV[4] ~= '' and v == ARGV[4]) then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', KEYS[5], ARGV[i])
    freed[#freed + 1] = ARGV[i]
  elseif not v then
    redis.call('SREM', KEYS[5], ARGV[i])
  end
end
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[1])
if #freed == 0 then return {1, 0} end
return {1, announce(KEYS[6], ARGV[5], ARGV[6], freed)}
";

// KEYS: epoch, stream, deadlines, hold, seat version, previous owner's buyer set, new
// owner's buyer set, seats...; ARGV: hold id, sold marker, event, previous sold marker
// ('' = none), seat ids... (KEYS[i] is seat ARGV[i - 3]). A seat free or held by the
// hold becomes sold (announced); a seat sold under the previous marker (a transferred
// booking's) is rewritten to the new marker without an announcement (it stays sold) and
// moves from the previous owner's buyer set to the new owner's. The hold need not exist
// (a transfer's booking never had one). Replies the version, or 0 when no seat changed
// status.
const MARK_SOLD: &str = r"
local sold = {}
for i = 8, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if (not v) or v == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[2])
    sold[#sold + 1] = ARGV[i - 3]
  elseif ARGV[4] ~= '' and v == ARGV[4] then
    redis.call('SET', KEYS[i], ARGV[2])
    redis.call('SREM', KEYS[6], ARGV[i - 3])
    redis.call('SADD', KEYS[7], ARGV[i - 3])
  end
end
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[1])
if #sold == 0 then return 0 end
return announce(KEYS[5], ARGV[3], 'sold', sold)
";

// Runs while the epoch is missing (during priming), so it takes the base itself.
// KEYS: stream, seat version, buyer set, seats...; ARGV: seat value, event, kind, base,
// seat ids... (KEYS[i] is seat ARGV[i + 1]). Replies the version, or 0 when every seat
// was already marked.
const PRIME: &str = r"
local marked = {}
for i = 4, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX') then marked[#marked + 1] = ARGV[i + 1] end
  redis.call('SADD', KEYS[3], ARGV[i + 1])
end
if #marked == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[4], 'NX')
local v = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV_STREAM_MAX, '*',
  'e', ARGV[2], 'v', v, 'k', ARGV[3], 's', table.concat(marked, ','))
return v
";

// KEYS: epoch, seat version, seats...: replies {version, status...} with 0 free, 1 held,
// 2 sold.
const SNAPSHOT: &str = r"
local base = redis.call('GET', KEYS[1])
if not base then return redis.error_reply('NOEPOCH redis has lost its data; re-priming') end
local out = {tonumber(redis.call('GET', KEYS[2]) or base)}
for i = 3, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then out[i - 1] = 0 elseif string.sub(v, 1, 5) == 'sold:' then out[i - 1] = 2 else out[i - 1] = 1 end
end
return out
";

// KEYS: epoch, seats...: replies {seat values...} ('' for a free seat).
const SEAT_VALUES: &str = r"
if not redis.call('GET', KEYS[1]) then
  return redis.error_reply('NOEPOCH redis has lost its data; re-priming')
end
local out = {}
for i = 2, #KEYS do out[i - 1] = redis.call('GET', KEYS[i]) or '' end
return out
";

/// The redis error code scripts answer with while the epoch is missing.
const NOEPOCH: &str = "NOEPOCH";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    Held,
    CheckedOut,
}

/// The booking whose seats a transfer's booking takes over, and who owned them.
#[derive(Debug, Clone, Copy)]
pub struct TakenOver {
    pub booking: BookingId,
    pub owner: AccountId,
    pub new_owner: AccountId,
}

/// A hold as stored.
#[derive(Debug, Clone)]
pub struct HoldRecord {
    pub hold_id: HoldId,
    pub buyer: AccountId,
    pub event: EventId,
    pub seats: Vec<SeatId>,
    pub expires_at: DateTime<Utc>,
    pub state: HoldState,
}

impl HoldRecord {
    /// Parses the stored fields of hold `hold_id`; `None` if any is malformed.
    fn parse(
        hold_id: HoldId,
        buyer: &str,
        event: &str,
        seats: &str,
        expires_ms: &str,
        state: &str,
    ) -> Option<Self> {
        Some(Self {
            hold_id,
            buyer: AccountId(buyer.parse().ok()?),
            event: EventId(event.parse().ok()?),
            seats: seats
                .split(',')
                .map(|s| s.parse().map(SeatId))
                .collect::<Result<_, _>>()
                .ok()?,
            expires_at: from_millis(expires_ms)?,
            state: match state {
                "held" => HoldState::Held,
                _ => HoldState::CheckedOut,
            },
        })
    }

    pub fn keys(&self) -> HoldKeys<'_> {
        HoldKeys {
            hold: self.hold_id,
            buyer: self.buyer,
            event: self.event,
            seats: &self.seats,
        }
    }
}

fn from_millis(ms: &str) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms.parse().ok()?).single()
}

/// What locates a hold's keys in Redis: enough to release it.
#[derive(Debug, Clone, Copy)]
pub struct HoldKeys<'a> {
    pub hold: HoldId,
    pub buyer: AccountId,
    pub event: EventId,
    pub seats: &'a [SeatId],
}

/// What a hold request asks for.
#[derive(Debug, Clone, Copy)]
pub struct HoldRequest<'a> {
    pub hold: HoldId,
    pub buyer: AccountId,
    pub event: EventId,
    /// The seats to hold, all or none; or, with [`HoldRequest::block`], candidate blocks
    /// one after another.
    pub seats: &'a [SeatId],
    /// `Some(n)`: `seats` are candidate blocks of `n` seats each, in order of preference,
    /// and the first whose seats are all free is held (best available). `None`: `seats`
    /// are one block.
    pub block: Option<usize>,
    pub expires_at: DateTime<Utc>,
    pub limit: u32,
    /// The client's idempotency key: a retry with it returns the hold it made.
    pub key: Option<&'a IdempotencyKey>,
    /// How long the key is remembered.
    pub key_ttl: Duration,
    /// What the key is bound to, if not the seats: a best-available request's terms
    /// ([`crate::domain::BestAvailable::terms`]), so its retry replays the hold although
    /// it chose other seats. `None`: the seats, sorted.
    pub terms: Option<&'a str>,
}

/// What a hold request did.
#[derive(Debug)]
pub enum HoldOutcome {
    /// The seats are held by the requested hold: those of candidate block `block`
    /// (counted from 0; always 0 for one block).
    Held {
        block: usize,
    },
    /// The idempotency key already made this hold (for the same seats or terms).
    Replayed {
        hold: HoldId,
        expires_at: DateTime<Utc>,
        /// The seats it holds (empty for a key stored before they were kept with it).
        seats: Vec<SeatId>,
    },
    Taken(Vec<SeatId>),
    Limit {
        current: u32,
    },
    /// The idempotency key was used for other seats.
    KeyReused,
    /// This hold was already given up (its first answer was "not held").
    Void,
}

/// The hold an idempotency key made, as the key remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedHold {
    pub hold: HoldId,
    pub expires_at: DateTime<Utc>,
    /// What the key is bound to (see [`HoldRequest::terms`]).
    pub terms: String,
    pub seats: Vec<SeatId>,
}

impl KeyedHold {
    /// Parses `hold|expires ms|terms|seats` (or the older `hold|expires ms|terms`).
    fn parse(value: &str) -> Option<Self> {
        let mut parts = value.splitn(4, '|');
        let hold = HoldId(parts.next()?.parse().ok()?);
        let expires_at = from_millis(parts.next()?)?;
        let terms = parts.next()?.to_owned();
        let seats = seat_list(parts.next().unwrap_or_default())?;
        Some(Self {
            hold,
            expires_at,
            terms,
            seats,
        })
    }
}

/// Seat ids from a comma-separated list; empty for an empty one.
fn seat_list(csv: &str) -> Option<Vec<SeatId>> {
    if csv.is_empty() {
        return Some(Vec::new());
    }
    csv.split(',').map(|s| s.parse().ok().map(SeatId)).collect()
}

/// What claiming a hold for checkout found.
#[derive(Debug)]
pub enum Claim {
    Claimed(HoldRecord),
    /// Missing, expired, or another buyer's.
    Gone,
    AlreadyCheckedOut,
}

/// The Lua scripts, by the name their metrics carry (`script` label: a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScriptName {
    Hold,
    Claim,
    Unclaim,
    Release,
    MarkSold,
    Prime,
    Snapshot,
    SeatValues,
}

impl ScriptName {
    const ALL: [ScriptName; 8] = [
        ScriptName::Hold,
        ScriptName::Claim,
        ScriptName::Unclaim,
        ScriptName::Release,
        ScriptName::MarkSold,
        ScriptName::Prime,
        ScriptName::Snapshot,
        ScriptName::SeatValues,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ScriptName::Hold => "hold",
            ScriptName::Claim => "claim",
            ScriptName::Unclaim => "unclaim",
            ScriptName::Release => "release",
            ScriptName::MarkSold => "mark_sold",
            ScriptName::Prime => "prime",
            ScriptName::Snapshot => "snapshot",
            ScriptName::SeatValues => "seat_values",
        }
    }
}

/// The `kind`s of `redis_script_errors_total`.
const ERROR_KINDS: [&str; 3] = ["timeout", "noepoch", "other"];

/// Creates every `redis_script_errors_total` series at zero, so a rate over them (and
/// the alert on it) is defined before the first failure. Idempotent; called with the
/// periodic booking statistics, since a series made before the recorder is installed
/// would be lost.
pub fn zero_error_counters() {
    for script in ScriptName::ALL {
        for kind in ERROR_KINDS {
            metrics::counter!("redis_script_errors_total", "script" => script.as_str(), "kind" => kind)
                .increment(0);
        }
    }
}

/// How a script call failed, for `redis_script_errors_total{kind}`.
fn error_kind(error: &redis::RedisError) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.code() == Some(NOEPOCH) {
        "noepoch"
    } else {
        "other"
    }
}

/// Runs one script call, timing it and counting its failure by kind.
async fn timed<T>(
    script: ScriptName,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    let started = std::time::Instant::now();
    let result = call.await;
    let script = script.as_str();
    // Latency of each Lua script call (failed ones too), by script.
    metrics::histogram!("redis_script_duration_seconds", "script" => script)
        .record(started.elapsed().as_secs_f64());
    if let Err(error) = &result {
        // Failed script calls by script and kind: timeout, noepoch (Redis lost its data), other.
        metrics::counter!("redis_script_errors_total", "script" => script, "kind" => error_kind(error))
            .increment(1);
    }
    result
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}").replace("ARGV_STREAM_MAX", &format!("'{STREAM_MAX}'")))
}

#[derive(Clone)]
pub struct HoldStore {
    redis: RedisConn,
    prefix: String,
    hold: Script,
    claim: Script,
    unclaim: Script,
    release: Script,
    mark_sold: Script,
    prime: Script,
    snapshot: Script,
    seat_values: Script,
    /// Woken when a script finds the epoch missing, so the sweeper restores Redis.
    lost: Arc<Notify>,
    /// Partitions whose stream may have new entries, for the seat relay.
    dirty: Arc<Dirty>,
}

impl std::fmt::Debug for HoldStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn malformed(hold: HoldId) -> BookingError {
    BookingError::Internal(format!("hold {hold} is malformed in redis"))
}

/// The seat value of a seat sold under `booking` (or reserved by an auction, under its
/// id): what the scripts compare and [`is_sold`] recognizes.
pub(crate) fn sold_marker(booking: BookingId) -> String {
    format!("sold:{booking}")
}

/// Whether a seat value marks the seat sold (rather than held by a hold).
pub(crate) fn is_sold(value: &str) -> bool {
    value.starts_with("sold:")
}

impl HoldStore {
    /// Connects to `target` (one Redis or a Redis Cluster). `prefix` starts every key;
    /// it may not contain braces (they would change the keys' hash tags).
    pub async fn connect(
        target: &RedisTarget,
        prefix: &str,
        timeouts: RedisTimeouts,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !prefix.contains(['{', '}']),
            "REDIS_PREFIX {prefix:?} may not contain braces"
        );
        Ok(Self {
            redis: marquee_infra::redis_conn::connect(target, timeouts).await?,
            prefix: prefix.to_owned(),
            hold: script(HOLD),
            claim: Script::new(CLAIM),
            unclaim: Script::new(UNCLAIM),
            release: script(RELEASE),
            mark_sold: script(MARK_SOLD),
            prime: Script::new(&PRIME.replace("ARGV_STREAM_MAX", &format!("'{STREAM_MAX}'"))),
            snapshot: Script::new(SNAPSHOT),
            seat_values: Script::new(SEAT_VALUES),
            lost: Arc::new(Notify::new()),
            dirty: Arc::default(),
        })
    }

    /// The connection, for the seat relay.
    pub fn connection(&self) -> RedisConn {
        self.redis.clone()
    }

    /// The partitions with unread stream entries, for the seat relay.
    pub fn dirty(&self) -> Arc<Dirty> {
        self.dirty.clone()
    }

    /// Notified whenever a script finds that Redis lost its data.
    pub fn lost(&self) -> &Notify {
        &self.lost
    }

    /// A script's error while the epoch is missing becomes [`BookingError::RedisLost`]
    /// (and wakes whoever restores Redis).
    fn lost_or(&self, error: redis::RedisError) -> BookingError {
        if error.code() == Some(NOEPOCH) {
            self.lost.notify_one();
            BookingError::RedisLost
        } else {
            error.into()
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn tagged(&self, partition: Partition) -> String {
        partition_prefix(&self.prefix, partition)
    }
    fn epoch_key(&self, partition: Partition) -> String {
        format!("{}epoch", self.tagged(partition))
    }
    /// The stream `partition`'s seat changes are appended to.
    pub fn stream_key(&self, partition: Partition) -> String {
        format!("{}changes", self.tagged(partition))
    }
    fn deadlines(&self, partition: Partition) -> String {
        format!("{}deadlines", self.tagged(partition))
    }
    fn hold_key(&self, partition: Partition, hold: HoldId) -> String {
        format!("{}hold:{hold}", self.tagged(partition))
    }
    fn seat_key(&self, partition: Partition, seat: SeatId) -> String {
        format!("{}seat:{seat}", self.tagged(partition))
    }
    fn buyer_key(&self, event: EventId, buyer: AccountId) -> String {
        format!(
            "{}buyer:{event}:{buyer}",
            self.tagged(Partition::of(event.0))
        )
    }
    fn version_key(&self, event: EventId) -> String {
        format!("{}seatver:{event}", self.tagged(Partition::of(event.0)))
    }
    fn hold_key_key(
        &self,
        event: EventId,
        buyer: AccountId,
        key: Option<&IdempotencyKey>,
    ) -> String {
        let tagged = self.tagged(Partition::of(event.0));
        match key {
            Some(key) => format!("{tagged}holdkey:{event}:{buyer}:{}", key.as_str()),
            None => format!("{tagged}holdkey:{event}:{buyer}:"),
        }
    }
    fn void_key(&self, partition: Partition, hold: HoldId) -> String {
        format!("{}void:{hold}", self.tagged(partition))
    }
    fn priming_key(&self) -> String {
        format!("{}priming", self.prefix)
    }

    /// Holds every seat of `request` for its buyer, or none of them.
    pub async fn hold(&self, request: HoldRequest<'_>) -> Result<HoldOutcome, BookingError> {
        let partition = Partition::of(request.event.0);
        if Partition::of(request.hold.0) != partition {
            return Err(BookingError::Internal(format!(
                "hold {} was not made in its event's partition",
                request.hold
            )));
        }
        let block = request.block.unwrap_or(request.seats.len());
        if block == 0 || request.seats.is_empty() || !request.seats.len().is_multiple_of(block) {
            return Err(BookingError::Internal(format!(
                "hold {} asks for {} seats in blocks of {block}",
                request.hold,
                request.seats.len()
            )));
        }
        // What the key is bound to; without a key, nothing is (no work on the hot path).
        let terms = match (request.key, request.terms) {
            (None, _) => String::new(),
            (Some(_), Some(terms)) => terms.to_owned(),
            (Some(_), None) => {
                let mut seats: Vec<String> =
                    request.seats.iter().map(ToString::to_string).collect();
                seats.sort_unstable();
                seats.join(",")
            }
        };
        let mut invocation = self.hold.prepare_invoke();
        invocation
            .key(self.epoch_key(partition))
            .key(self.stream_key(partition))
            .key(self.deadlines(partition))
            .key(self.hold_key(partition, request.hold))
            .key(self.buyer_key(request.event, request.buyer))
            .key(self.version_key(request.event))
            .key(self.hold_key_key(request.event, request.buyer, request.key))
            .key(self.void_key(partition, request.hold));
        for seat in request.seats {
            invocation.key(self.seat_key(partition, *seat));
        }
        invocation
            .arg(request.hold.to_string())
            .arg(request.buyer.to_string())
            .arg(request.event.to_string())
            .arg(request.expires_at.timestamp_millis())
            .arg(request.limit)
            .arg(block)
            .arg(if request.key.is_some() { "1" } else { "0" })
            .arg(u64::try_from(request.key_ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(terms);
        for seat in request.seats {
            invocation.arg(seat.to_string());
        }
        let reply = timed(
            ScriptName::Hold,
            invocation.invoke_async::<Vec<String>>(&mut self.redis.clone()),
        )
        .await;
        self.dirty.mark(partition);
        let reply = reply.map_err(|e| self.lost_or(e))?;
        // Candidate blocks may share seats: each taken seat once, in order.
        let positions = |rest: &[String]| -> Vec<SeatId> {
            let mut seats: Vec<SeatId> = Vec::new();
            for seat in rest
                .iter()
                .filter_map(|p| p.parse::<usize>().ok())
                .filter_map(|p| request.seats.get(p.checked_sub(1)?).copied())
            {
                if !seats.contains(&seat) {
                    seats.push(seat);
                }
            }
            seats
        };
        match reply.split_first() {
            Some((outcome, [_version, block])) if outcome == "held" => Ok(HoldOutcome::Held {
                block: block.parse().map_err(|_| {
                    BookingError::Internal(format!("hold script held block {block:?}"))
                })?,
            }),
            Some((outcome, [hold, expires, held @ ..])) if outcome == "replay" => {
                let seats = seat_list(held.first().map_or("", String::as_str));
                match (hold.parse().ok().map(HoldId), from_millis(expires), seats) {
                    (Some(hold), Some(expires_at), Some(seats)) => Ok(HoldOutcome::Replayed {
                        hold,
                        expires_at,
                        seats,
                    }),
                    _ => Err(BookingError::Internal(format!(
                        "idempotent hold {hold:?} is malformed in redis"
                    ))),
                }
            }
            Some((outcome, _)) if outcome == "reused" => Ok(HoldOutcome::KeyReused),
            Some((outcome, _)) if outcome == "void" => Ok(HoldOutcome::Void),
            Some((outcome, rest)) if outcome == "taken" => Ok(HoldOutcome::Taken(positions(rest))),
            Some((outcome, [current])) if outcome == "limit" => Ok(HoldOutcome::Limit {
                current: current.parse().unwrap_or(0),
            }),
            other => Err(BookingError::Internal(format!(
                "hold script replied {other:?}"
            ))),
        }
    }

    /// The hold `key` made for `buyer` at `event`, if the key is remembered: what a
    /// best-available retry that finds no block left answers with.
    pub async fn keyed_hold(
        &self,
        event: EventId,
        buyer: AccountId,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyedHold>, BookingError> {
        let value: Option<String> = self
            .redis
            .clone()
            .get(self.hold_key_key(event, buyer, Some(key)))
            .await?;
        value
            .map(|value| {
                KeyedHold::parse(&value).ok_or_else(|| {
                    BookingError::Internal(format!(
                        "idempotent hold {value:?} is malformed in redis"
                    ))
                })
            })
            .transpose()
    }

    /// The hold `hold`, if it exists.
    pub async fn get(&self, hold: HoldId) -> Result<Option<HoldRecord>, BookingError> {
        self.get_in(Partition::of(hold.0), hold).await
    }

    /// The hold `hold` as partition `partition` stores it.
    pub async fn get_in(
        &self,
        partition: Partition,
        hold: HoldId,
    ) -> Result<Option<HoldRecord>, BookingError> {
        let fields: std::collections::HashMap<String, String> = self
            .redis
            .clone()
            .hgetall(self.hold_key(partition, hold))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
        HoldRecord::parse(
            hold,
            field("buyer"),
            field("event"),
            field("seats"),
            field("expires"),
            field("state"),
        )
        .map(Some)
        .ok_or_else(|| malformed(hold))
    }

    /// Marks a live hold of `buyer` as being checked out, so expiry leaves it alone
    /// while its booking is written, and returns it: one round trip for checkout. If no
    /// booking appears within `grace`, the sweeper puts the hold back.
    pub async fn claim(
        &self,
        hold: HoldId,
        buyer: AccountId,
        grace: Duration,
    ) -> Result<Claim, BookingError> {
        let now = Utc::now().timestamp_millis();
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2);
        let partition = Partition::of(hold.0);
        let reply: Vec<String> = timed(
            ScriptName::Claim,
            self.claim
                .key(self.deadlines(partition))
                .key(self.hold_key(partition, hold))
                .arg(hold.to_string())
                .arg(buyer.to_string())
                .arg(now)
                .arg(now.saturating_add(grace_ms))
                .invoke_async(&mut self.redis.clone()),
        )
        .await?;
        match reply.as_slice() {
            [outcome, event, seats, expires] if outcome == "claimed" => {
                let buyer = buyer.to_string();
                HoldRecord::parse(hold, &buyer, event, seats, expires, "checked_out")
                    .map(Claim::Claimed)
                    .ok_or_else(|| malformed(hold))
            }
            [outcome] if outcome == "checked_out" => Ok(Claim::AlreadyCheckedOut),
            _ => Ok(Claim::Gone),
        }
    }

    /// Undoes [`claim`](Self::claim): the hold is held again under its own deadline.
    /// Returns whether it was claimed.
    pub async fn unclaim(&self, hold: HoldId) -> Result<bool, BookingError> {
        self.unclaim_in(Partition::of(hold.0), hold).await
    }

    /// [`unclaim`](Self::unclaim) in partition `partition`.
    pub async fn unclaim_in(
        &self,
        partition: Partition,
        hold: HoldId,
    ) -> Result<bool, BookingError> {
        let put_back: i64 = timed(
            ScriptName::Unclaim,
            self.unclaim
                .key(self.deadlines(partition))
                .key(self.hold_key(partition, hold))
                .arg(hold.to_string())
                .invoke_async(&mut self.redis.clone()),
        )
        .await?;
        Ok(put_back == 1)
    }

    async fn run_release(
        &self,
        keys: HoldKeys<'_>,
        required: Option<HoldState>,
        due_by_ms: i64,
        sold: Option<BookingId>,
        change: SeatChange,
        void_ttl: Duration,
    ) -> Result<bool, BookingError> {
        // Every key in the event's partition (a hold made before partitions existed
        // may have an id outside it; its keys are found here all the same).
        let partition = Partition::of(keys.event.0);
        let mut invocation = self.release.prepare_invoke();
        invocation
            .key(self.epoch_key(partition))
            .key(self.stream_key(partition))
            .key(self.deadlines(partition))
            .key(self.hold_key(partition, keys.hold))
            .key(self.buyer_key(keys.event, keys.buyer))
            .key(self.version_key(keys.event))
            .key(self.void_key(partition, keys.hold));
        for seat in keys.seats {
            invocation.key(self.seat_key(partition, *seat));
        }
        invocation
            .arg(keys.hold.to_string())
            .arg(match required {
                None => "",
                Some(HoldState::Held) => "held",
                Some(HoldState::CheckedOut) => "checked_out",
            })
            .arg(due_by_ms)
            .arg(sold.map(sold_marker).unwrap_or_default())
            .arg(keys.event.to_string())
            .arg(change.as_str())
            .arg(u64::try_from(void_ttl.as_millis()).unwrap_or(u64::MAX));
        for seat in keys.seats {
            invocation.arg(seat.to_string());
        }
        let reply = timed(
            ScriptName::Release,
            invocation.invoke_async::<Vec<i64>>(&mut self.redis.clone()),
        )
        .await;
        self.dirty.mark(partition);
        let reply = reply.map_err(|e| self.lost_or(e))?;
        Ok(matches!(reply.first(), Some(1)))
    }

    /// Releases a hold that is still only held (not being checked out).
    pub async fn release_held(&self, record: &HoldRecord) -> Result<bool, BookingError> {
        self.run_release(
            record.keys(),
            Some(HoldState::Held),
            0,
            None,
            SeatChange::Released,
            Duration::ZERO,
        )
        .await
    }

    /// Releases a hold this request claimed but could not turn into a booking.
    pub async fn release_claimed(&self, record: &HoldRecord) -> Result<bool, BookingError> {
        self.run_release(
            record.keys(),
            Some(HoldState::CheckedOut),
            0,
            None,
            SeatChange::Released,
            Duration::ZERO,
        )
        .await
    }

    /// Makes sure a hold whose request was answered "not held" holds nothing, now or
    /// later: frees its seats if its script ran, and stops the script if it has not run
    /// yet. Idempotent.
    pub async fn void(&self, keys: HoldKeys<'_>, ttl: Duration) -> Result<(), BookingError> {
        match self
            .run_release(
                keys,
                Some(HoldState::Held),
                0,
                None,
                SeatChange::Released,
                ttl,
            )
            .await
        {
            // Redis lost its data: the hold is gone with it.
            Ok(_) | Err(BookingError::RedisLost) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Releases a hold whose deadline has passed, if it is still in `state`.
    pub async fn expire(
        &self,
        record: &HoldRecord,
        state: HoldState,
    ) -> Result<bool, BookingError> {
        self.run_release(
            record.keys(),
            Some(state),
            Utc::now().timestamp_millis(),
            None,
            SeatChange::Expired,
            Duration::ZERO,
        )
        .await
    }

    /// Frees the seats of a cancelled booking, whether they were held or sold. Idempotent.
    pub async fn free_booking(
        &self,
        booking: BookingId,
        keys: HoldKeys<'_>,
    ) -> Result<(), BookingError> {
        self.run_release(
            keys,
            None,
            0,
            Some(booking),
            SeatChange::Released,
            Duration::ZERO,
        )
        .await
        .map(|_| ())
    }

    /// Marks the seats of a confirmed booking sold and drops its hold. Idempotent.
    pub async fn mark_sold(
        &self,
        booking: BookingId,
        hold: HoldId,
        event: EventId,
        seats: &[SeatId],
    ) -> Result<(), BookingError> {
        self.mark_sold_from(booking, hold, event, seats, None).await
    }

    /// [`mark_sold`](Self::mark_sold) for a booking that took its seats over from
    /// another (a transfer): seats sold under the previous booking are rewritten as
    /// sold under `booking`, and counted for the new owner instead of the previous one
    /// by the hold script's per-buyer limit. Idempotent.
    pub async fn mark_sold_from(
        &self,
        booking: BookingId,
        hold: HoldId,
        event: EventId,
        seats: &[SeatId],
        previous: Option<TakenOver>,
    ) -> Result<(), BookingError> {
        let partition = Partition::of(event.0);
        let mut invocation = self.mark_sold.prepare_invoke();
        invocation
            .key(self.epoch_key(partition))
            .key(self.stream_key(partition))
            .key(self.deadlines(partition))
            .key(self.hold_key(partition, hold))
            .key(self.version_key(event));
        // Without a previous booking the sets are not touched: any key of the
        // partition will do.
        let (from, to) = match previous {
            Some(p) => (p.owner, p.new_owner),
            None => (AccountId(Uuid::nil()), AccountId(Uuid::nil())),
        };
        invocation
            .key(self.buyer_key(event, from))
            .key(self.buyer_key(event, to));
        for seat in seats {
            invocation.key(self.seat_key(partition, *seat));
        }
        invocation
            .arg(hold.to_string())
            .arg(sold_marker(booking))
            .arg(event.to_string())
            .arg(previous.map(|p| sold_marker(p.booking)).unwrap_or_default());
        for seat in seats {
            invocation.arg(seat.to_string());
        }
        let sold = timed(
            ScriptName::MarkSold,
            invocation.invoke_async::<i64>(&mut self.redis.clone()),
        )
        .await;
        self.dirty.mark(partition);
        sold.map_err(|e| self.lost_or(e))?;
        Ok(())
    }

    /// Forgets a hold's deadline (its booking now owns the seats).
    pub async fn forget_deadline(&self, hold: HoldId) -> Result<(), BookingError> {
        self.forget_deadline_in(Partition::of(hold.0), hold).await
    }

    /// [`forget_deadline`](Self::forget_deadline) in partition `partition`.
    pub async fn forget_deadline_in(
        &self,
        partition: Partition,
        hold: HoldId,
    ) -> Result<(), BookingError> {
        let _: i64 = self
            .redis
            .clone()
            .zrem(self.deadlines(partition), hold.to_string())
            .await?;
        Ok(())
    }

    /// How many holds have a deadline (held, or checked out and awaiting their booking).
    pub async fn pending(&self) -> Result<u64, BookingError> {
        let counts = try_join_all(Partition::all().map(|partition| {
            let mut redis = self.redis.clone();
            let key = self.deadlines(partition);
            async move { redis.zcard::<_, u64>(key).await }
        }))
        .await?;
        Ok(counts.iter().sum())
    }

    /// Holds whose deadline has passed, oldest first within each partition: at most
    /// `limit` per partition.
    pub async fn due(&self, limit: isize) -> Result<Vec<(Partition, HoldId)>, BookingError> {
        let now = Utc::now().timestamp_millis();
        let per_partition = try_join_all(Partition::all().map(|partition| {
            let mut redis = self.redis.clone();
            let key = self.deadlines(partition);
            async move {
                let ids: Vec<String> = redis
                    .zrangebyscore_limit(key, "-inf", now, 0, limit)
                    .await?;
                Ok::<_, redis::RedisError>(
                    ids.iter()
                        .filter_map(|s| s.parse().ok().map(|id| (partition, HoldId(id))))
                        .collect::<Vec<_>>(),
                )
            }
        }))
        .await?;
        Ok(per_partition.into_iter().flatten().collect())
    }

    /// What Redis says of each seat of `event`: `None` free, `Some(value)` held or sold.
    pub async fn seat_values(
        &self,
        event: EventId,
        seats: &[SeatId],
    ) -> Result<Vec<Option<String>>, BookingError> {
        let partition = Partition::of(event.0);
        let mut values = Vec::with_capacity(seats.len());
        for chunk in seats.chunks(1000) {
            let mut invocation = self.seat_values.prepare_invoke();
            invocation.key(self.epoch_key(partition));
            for seat in chunk {
                invocation.key(self.seat_key(partition, *seat));
            }
            let part: Vec<String> = timed(
                ScriptName::SeatValues,
                invocation.invoke_async(&mut self.redis.clone()),
            )
            .await
            .map_err(|e| self.lost_or(e))?;
            values.extend(part.into_iter().map(|v| (!v.is_empty()).then_some(v)));
        }
        Ok(values)
    }

    /// The partitions whose epoch is missing: Redis (or the cluster node owning them)
    /// lost their data, or they were never primed.
    pub async fn lost_partitions(&self) -> Result<Vec<Partition>, BookingError> {
        let epochs = try_join_all(Partition::all().map(|partition| {
            let mut redis = self.redis.clone();
            let key = self.epoch_key(partition);
            async move {
                let epoch: Option<i64> = redis.get(key).await?;
                Ok::<_, redis::RedisError>((partition, epoch))
            }
        }))
        .await?;
        Ok(epochs
            .into_iter()
            .filter_map(|(partition, epoch)| epoch.is_none().then_some(partition))
            .collect())
    }

    /// Takes the priming lock for `ttl`; `false` if another replica holds it.
    pub async fn lock_priming(&self, owner: &str, ttl: Duration) -> Result<bool, BookingError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.priming_key())
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(taken.is_some())
    }

    /// Ends priming: the epoch (with `base`) makes each of `partitions` usable again,
    /// then the lock is dropped. An epoch is only written if missing, so a second primer
    /// changes nothing.
    pub async fn finish_priming(
        &self,
        base: i64,
        partitions: &[Partition],
    ) -> Result<(), BookingError> {
        try_join_all(partitions.iter().map(|partition| {
            let key = self.epoch_key(*partition);
            let mut redis = self.redis.clone();
            async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(base)
                    .arg("NX")
                    .query_async::<Option<String>>(&mut redis)
                    .await
            }
        }))
        .await?;
        let _: i64 = self.redis.clone().del(self.priming_key()).await?;
        Ok(())
    }

    /// Restores the marks of a booking Postgres knows about (after Redis lost its
    /// data); a new seat version starts at `base`.
    #[allow(clippy::too_many_arguments)]
    pub async fn prime(
        &self,
        booking: BookingId,
        hold: HoldId,
        buyer: AccountId,
        event: EventId,
        seats: &[SeatId],
        sold: bool,
        base: i64,
    ) -> Result<(), BookingError> {
        let value = if sold {
            sold_marker(booking)
        } else {
            hold.to_string()
        };
        let partition = Partition::of(event.0);
        let mut invocation = self.prime.prepare_invoke();
        invocation
            .key(self.stream_key(partition))
            .key(self.version_key(event))
            .key(self.buyer_key(event, buyer));
        for seat in seats {
            invocation.key(self.seat_key(partition, *seat));
        }
        invocation
            .arg(value)
            .arg(event.to_string())
            .arg(
                if sold {
                    SeatChange::Sold
                } else {
                    SeatChange::Held
                }
                .as_str(),
            )
            .arg(base);
        for seat in seats {
            invocation.arg(seat.to_string());
        }
        let primed = timed(
            ScriptName::Prime,
            invocation.invoke_async::<i64>(&mut self.redis.clone()),
        )
        .await;
        self.dirty.mark(partition);
        primed?;
        Ok(())
    }

    /// Every seat's status in `seats` order, and the seat version they are as of: one
    /// atomic read.
    pub async fn snapshot(
        &self,
        event: EventId,
        seats: &[SeatId],
    ) -> Result<(i64, Vec<SeatStatus>), BookingError> {
        let partition = Partition::of(event.0);
        let mut invocation = self.snapshot.prepare_invoke();
        invocation
            .key(self.epoch_key(partition))
            .key(self.version_key(event));
        for seat in seats {
            invocation.key(self.seat_key(partition, *seat));
        }
        let reply: Vec<i64> = timed(
            ScriptName::Snapshot,
            invocation.invoke_async(&mut self.redis.clone()),
        )
        .await
        .map_err(|e| self.lost_or(e))?;
        let Some((version, statuses)) = reply.split_first() else {
            return Err(BookingError::Internal("empty seat snapshot".into()));
        };
        let statuses = statuses
            .iter()
            .map(|s| match s {
                0 => SeatStatus::Available,
                1 => SeatStatus::Held,
                _ => SeatStatus::Sold,
            })
            .collect();
        Ok((*version, statuses))
    }
}

impl HoldStore {
    /// The seat version of each event in `events`, in order (the epoch's base for an
    /// event that has had no seat change since): one MGET per partition, so realtime-svc
    /// can tell whether it missed one.
    pub async fn seat_versions(&self, events: &[EventId]) -> Result<Vec<i64>, BookingError> {
        let mut by_partition: std::collections::BTreeMap<Partition, Vec<usize>> =
            std::collections::BTreeMap::new();
        for (i, event) in events.iter().enumerate() {
            by_partition
                .entry(Partition::of(event.0))
                .or_default()
                .push(i);
        }
        let groups = try_join_all(by_partition.into_iter().map(|(partition, positions)| {
            // The epoch first: an event never changed is at its base, as in a snapshot,
            // and a partition that lost its data answers nothing.
            let mut keys = vec![self.epoch_key(partition)];
            keys.extend(positions.iter().map(|&i| self.version_key(events[i])));
            let mut redis = self.redis.clone();
            async move {
                let versions: Vec<Option<i64>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut redis)
                    .await?;
                Ok::<_, redis::RedisError>((positions, versions))
            }
        }))
        .await?;
        let mut out = vec![0; events.len()];
        for (positions, versions) in groups {
            let Some((Some(base), versions)) = versions.split_first() else {
                self.lost.notify_one();
                return Err(BookingError::RedisLost);
            };
            for (&i, version) in positions.iter().zip(versions) {
                out[i] = version.unwrap_or(*base);
            }
        }
        Ok(out)
    }
}
