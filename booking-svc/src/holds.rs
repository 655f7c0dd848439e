//! Seat holds in Redis: the hot path of a flash sale.
//!
//! Keys, under the configured prefix `p`:
//! - `p seat:<seat>`      → the hold id holding the seat, or `sold:<booking>` once sold
//! - `p hold:<hold>`      → hash: buyer, event, seats (comma-separated), expires (ms), state
//! - `p deadlines`        → sorted set of hold ids by deadline (ms), driven by the sweeper
//! - `p buyer:<ev>:<acc>` → set of seat ids the buyer holds or owns for the event
//! - `p seatver:<ev>`     → the event's seat version: how many seat changes it has had
//!
//! Every change is one Lua script, so a hold takes all requested seats or none, and a
//! release, expiry or sale never races another. A script that changes seats bumps the
//! event's seat version in the same step and replies which seats it changed; the store
//! then puts that change on the [`ChangeFeed`], so every seat change is announced with
//! its version, and a snapshot ([`HoldStore::snapshot`]) is exactly some version.

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use crate::changes::{ChangeFeed, SeatChange};
use crate::domain::{AccountId, BookingId, EventId, HoldId, SeatId, SeatStatus};
use crate::error::BookingError;

// KEYS: deadlines, hold, buyer set, seat version, seats...; ARGV: hold id, buyer,
// event, expires (ms), limit, seats csv, seat ids... Replies {1, version},
// {0, taken positions...} or {-1, seats the buyer has}.
const HOLD: &str = r"
local taken = {}
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then taken[#taken + 1] = i - 4 end
end
if #taken > 0 then return {0, unpack(taken)} end
local current = redis.call('SCARD', KEYS[3])
if current + (#KEYS - 4) > tonumber(ARGV[5]) then return {-1, current} end
for i = 5, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[i + 2])
end
redis.call('HSET', KEYS[2], 'buyer', ARGV[2], 'event', ARGV[3], 'seats', ARGV[6], 'expires', ARGV[4], 'state', 'held')
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return {1, redis.call('INCR', KEYS[4])}
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

const UNCLAIM: &str = r"
local h = redis.call('HMGET', KEYS[2], 'state', 'expires')
if h[1] ~= 'checked_out' then return 0 end
redis.call('HSET', KEYS[2], 'state', 'held')
redis.call('ZADD', KEYS[1], h[2], ARGV[1])
return 1
";

// KEYS: deadlines, hold, buyer set, seat version, seats...; ARGV: hold id, required
// state ('' = any), due-by ms (0 = any), sold marker ('' = none), seat ids...
// Replies {0} when the hold is not in the required state, else {1, version (0 if no
// seat was freed), freed positions...}.
const RELEASE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  local h = redis.call('HMGET', KEYS[2], 'state', 'expires')
  if ARGV[2] ~= '' and h[1] ~= ARGV[2] then return {0} end
  if tonumber(ARGV[3]) > 0 and tonumber(h[2]) > tonumber(ARGV[3]) then return {0} end
elseif ARGV[2] ~= '' then
  return {0}
end
local freed = {}
for i = 5, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v == ARGV[1] or (ARGV[4] ~= '' and v == ARGV[4]) then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', KEYS[3], ARGV[i])
    freed[#freed + 1] = i - 4
  elseif not v then
    redis.call('SREM', KEYS[3], ARGV[i])
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
if #freed == 0 then return {1, 0} end
return {1, redis.call('INCR', KEYS[4]), unpack(freed)}
";

// KEYS: deadlines, hold, seat version, seats...; ARGV: hold id, sold marker.
// Replies {version, sold positions...}, or {0} when no seat changed.
const MARK_SOLD: &str = r"
local sold = {}
for i = 4, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if (not v) or v == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[2])
    sold[#sold + 1] = i - 3
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
if #sold == 0 then return {0} end
return {redis.call('INCR', KEYS[3]), unpack(sold)}
";

// KEYS: seat version, buyer set, seats...; ARGV: seat value, seat ids...
// Replies {version, marked positions...}, or {0} when every seat was already marked.
const PRIME: &str = r"
local marked = {}
for i = 3, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX') then marked[#marked + 1] = i - 2 end
  redis.call('SADD', KEYS[2], ARGV[i - 1])
end
if #marked == 0 then return {0} end
return {redis.call('INCR', KEYS[1]), unpack(marked)}
";

// KEYS: seat version, seats...: replies {version, status...} with 0 free, 1 held, 2 sold.
const SNAPSHOT: &str = r"
local out = {tonumber(redis.call('GET', KEYS[1]) or '0')}
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then out[i] = 0 elseif string.sub(v, 1, 5) == 'sold:' then out[i] = 2 else out[i] = 1 end
end
return out
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    Held,
    CheckedOut,
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
            expires_at: Utc
                .timestamp_millis_opt(expires_ms.parse().ok()?)
                .single()?,
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

/// What locates a hold's keys in Redis: enough to release it.
#[derive(Debug, Clone, Copy)]
pub struct HoldKeys<'a> {
    pub hold: HoldId,
    pub buyer: AccountId,
    pub event: EventId,
    pub seats: &'a [SeatId],
}

/// Why a hold was refused.
#[derive(Debug)]
pub enum Refusal {
    Taken(Vec<SeatId>),
    Limit { current: u32 },
}

/// What claiming a hold for checkout found.
#[derive(Debug)]
pub enum Claim {
    Claimed(HoldRecord),
    /// Missing, expired, or another buyer's.
    Gone,
    AlreadyCheckedOut,
}

/// How long a checked-out hold may go without its booking before the sweeper frees it.
const CHECKOUT_GRACE_MS: i64 = 30_000;

#[derive(Clone)]
pub struct HoldStore {
    redis: ConnectionManager,
    prefix: String,
    hold: Script,
    claim: Script,
    unclaim: Script,
    release: Script,
    mark_sold: Script,
    prime: Script,
    snapshot: Script,
    changes: ChangeFeed,
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

fn sold_marker(booking: BookingId) -> String {
    format!("sold:{booking}")
}

impl HoldStore {
    pub async fn connect(url: &str, prefix: &str, changes: ChangeFeed) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let redis = client.get_connection_manager().await?;
        Ok(Self {
            redis,
            prefix: prefix.to_owned(),
            hold: Script::new(HOLD),
            claim: Script::new(CLAIM),
            unclaim: Script::new(UNCLAIM),
            release: Script::new(RELEASE),
            mark_sold: Script::new(MARK_SOLD),
            prime: Script::new(PRIME),
            snapshot: Script::new(SNAPSHOT),
            changes,
        })
    }

    fn deadlines(&self) -> String {
        format!("{}deadlines", self.prefix)
    }
    fn hold_key(&self, hold: HoldId) -> String {
        format!("{}hold:{hold}", self.prefix)
    }
    fn seat_key(&self, seat: SeatId) -> String {
        format!("{}seat:{seat}", self.prefix)
    }
    fn buyer_key(&self, event: EventId, buyer: AccountId) -> String {
        format!("{}buyer:{event}:{buyer}", self.prefix)
    }
    fn version_key(&self, event: EventId) -> String {
        format!("{}seatver:{event}", self.prefix)
    }

    /// Announces the seats at `positions` (1-based, into `seats`) of a script's reply.
    fn announce(
        &self,
        event: EventId,
        version: i64,
        change: SeatChange,
        seats: &[SeatId],
        positions: &[i64],
    ) {
        if version <= 0 {
            return;
        }
        let changed: Vec<SeatId> = positions
            .iter()
            .filter_map(|p| usize::try_from(*p - 1).ok())
            .filter_map(|i| seats.get(i).copied())
            .collect();
        self.changes.seats(event, version, change, &changed);
    }

    /// Holds every seat in `seats` for `buyer` until `expires_at`, or none of them.
    pub async fn hold(
        &self,
        hold_id: HoldId,
        buyer: AccountId,
        event: EventId,
        seats: &[SeatId],
        expires_at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Result<(), Refusal>, BookingError> {
        let csv = seats
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut invocation = self.hold.prepare_invoke();
        invocation
            .key(self.deadlines())
            .key(self.hold_key(hold_id))
            .key(self.buyer_key(event, buyer))
            .key(self.version_key(event));
        for seat in seats {
            invocation.key(self.seat_key(*seat));
        }
        invocation
            .arg(hold_id.to_string())
            .arg(buyer.to_string())
            .arg(event.to_string())
            .arg(expires_at.timestamp_millis())
            .arg(limit)
            .arg(csv);
        for seat in seats {
            invocation.arg(seat.to_string());
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
        match reply.first().copied() {
            Some(1) => {
                let version = reply.get(1).copied().unwrap_or(0);
                self.changes.seats(event, version, SeatChange::Held, seats);
                Ok(Ok(()))
            }
            Some(0) => {
                let taken = reply[1..]
                    .iter()
                    .filter_map(|i| usize::try_from(*i - 1).ok())
                    .filter_map(|i| seats.get(i).copied())
                    .collect();
                Ok(Err(Refusal::Taken(taken)))
            }
            Some(-1) => Ok(Err(Refusal::Limit {
                current: reply.get(1).copied().unwrap_or(0).try_into().unwrap_or(0),
            })),
            other => Err(BookingError::Internal(format!(
                "hold script replied {other:?}"
            ))),
        }
    }

    pub async fn get(&self, hold: HoldId) -> Result<Option<HoldRecord>, BookingError> {
        let fields: std::collections::HashMap<String, String> =
            self.redis.clone().hgetall(self.hold_key(hold)).await?;
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
    /// while its booking is written, and returns it: one round trip for checkout.
    pub async fn claim(&self, hold: HoldId, buyer: AccountId) -> Result<Claim, BookingError> {
        let now = Utc::now().timestamp_millis();
        let reply: Vec<String> = self
            .claim
            .key(self.deadlines())
            .key(self.hold_key(hold))
            .arg(hold.to_string())
            .arg(buyer.to_string())
            .arg(now)
            .arg(now + CHECKOUT_GRACE_MS)
            .invoke_async(&mut self.redis.clone())
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

    /// Undoes [`claim`](Self::claim) when the booking could not be written.
    pub async fn unclaim(&self, hold: HoldId) -> Result<(), BookingError> {
        let _: i64 = self
            .unclaim
            .key(self.deadlines())
            .key(self.hold_key(hold))
            .arg(hold.to_string())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    async fn run_release(
        &self,
        keys: HoldKeys<'_>,
        required: Option<HoldState>,
        due_by_ms: i64,
        sold: Option<BookingId>,
        change: SeatChange,
    ) -> Result<bool, BookingError> {
        let mut invocation = self.release.prepare_invoke();
        invocation
            .key(self.deadlines())
            .key(self.hold_key(keys.hold))
            .key(self.buyer_key(keys.event, keys.buyer))
            .key(self.version_key(keys.event));
        for seat in keys.seats {
            invocation.key(self.seat_key(*seat));
        }
        invocation
            .arg(keys.hold.to_string())
            .arg(match required {
                None => "",
                Some(HoldState::Held) => "held",
                Some(HoldState::CheckedOut) => "checked_out",
            })
            .arg(due_by_ms)
            .arg(sold.map(sold_marker).unwrap_or_default());
        for seat in keys.seats {
            invocation.arg(seat.to_string());
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
        match reply.as_slice() {
            [1, version, freed @ ..] => {
                self.announce(keys.event, *version, change, keys.seats, freed);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Releases a hold that is still only held (not being checked out).
    pub async fn release_held(&self, record: &HoldRecord) -> Result<bool, BookingError> {
        self.run_release(
            record.keys(),
            Some(HoldState::Held),
            0,
            None,
            SeatChange::Released,
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
        )
        .await
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
        )
        .await
    }

    /// Frees the seats of a cancelled booking, whether they were held or sold. Idempotent.
    pub async fn free_booking(
        &self,
        booking: BookingId,
        keys: HoldKeys<'_>,
    ) -> Result<(), BookingError> {
        self.run_release(keys, None, 0, Some(booking), SeatChange::Released)
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
        let mut invocation = self.mark_sold.prepare_invoke();
        invocation
            .key(self.deadlines())
            .key(self.hold_key(hold))
            .key(self.version_key(event));
        for seat in seats {
            invocation.key(self.seat_key(*seat));
        }
        invocation.arg(hold.to_string()).arg(sold_marker(booking));
        let reply: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
        if let [version, sold @ ..] = reply.as_slice() {
            self.announce(event, *version, SeatChange::Sold, seats, sold);
        }
        Ok(())
    }

    /// Forgets a hold's deadline (its booking now owns the seats).
    pub async fn forget_deadline(&self, hold: HoldId) -> Result<(), BookingError> {
        let _: i64 = self
            .redis
            .clone()
            .zrem(self.deadlines(), hold.to_string())
            .await?;
        Ok(())
    }

    /// How many holds have a deadline (held, or checked out and awaiting their booking).
    pub async fn pending(&self) -> Result<u64, BookingError> {
        Ok(self.redis.clone().zcard(self.deadlines()).await?)
    }

    /// Ids of holds whose deadline has passed, oldest first.
    pub async fn due(&self, limit: isize) -> Result<Vec<HoldId>, BookingError> {
        let now = Utc::now().timestamp_millis();
        let ids: Vec<String> = self
            .redis
            .clone()
            .zrangebyscore_limit(self.deadlines(), "-inf", now, 0, limit)
            .await?;
        Ok(ids
            .iter()
            .filter_map(|s| s.parse().ok().map(HoldId))
            .collect())
    }

    /// What Redis says of each seat: `None` free, `Some(value)` held or sold.
    pub async fn seat_values(&self, seats: &[SeatId]) -> Result<Vec<Option<String>>, BookingError> {
        if seats.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = seats.iter().map(|s| self.seat_key(*s)).collect();
        let mut values = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let part: Vec<Option<String>> = self.redis.clone().mget(chunk).await?;
            values.extend(part);
        }
        Ok(values)
    }

    /// Restores the marks of a booking Postgres knows about (after Redis lost its data).
    pub async fn prime(
        &self,
        booking: BookingId,
        hold: HoldId,
        buyer: AccountId,
        event: EventId,
        seats: &[SeatId],
        sold: bool,
    ) -> Result<(), BookingError> {
        let value = if sold {
            sold_marker(booking)
        } else {
            hold.to_string()
        };
        let mut invocation = self.prime.prepare_invoke();
        invocation
            .key(self.version_key(event))
            .key(self.buyer_key(event, buyer));
        for seat in seats {
            invocation.key(self.seat_key(*seat));
        }
        invocation.arg(value);
        for seat in seats {
            invocation.arg(seat.to_string());
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
        if let [version, marked @ ..] = reply.as_slice() {
            let change = if sold {
                SeatChange::Sold
            } else {
                SeatChange::Held
            };
            self.announce(event, *version, change, seats, marked);
        }
        Ok(())
    }

    /// Every seat's status in `seats` order, and the seat version they are as of: one
    /// atomic read.
    pub async fn snapshot(
        &self,
        event: EventId,
        seats: &[SeatId],
    ) -> Result<(i64, Vec<SeatStatus>), BookingError> {
        let mut invocation = self.snapshot.prepare_invoke();
        invocation.key(self.version_key(event));
        for seat in seats {
            invocation.key(self.seat_key(*seat));
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
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
    /// The seat version of each event in `events`, in order (0 for an event that has
    /// had no seat change): one MGET, so realtime-svc can tell whether it missed one.
    pub async fn seat_versions(&self, events: &[EventId]) -> Result<Vec<i64>, BookingError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = events.iter().map(|e| self.version_key(*e)).collect();
        let versions: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(versions.into_iter().map(|v| v.unwrap_or(0)).collect())
    }
}
