//! The waiting room (issue 11): on a flash sale, buyers queue for an admission before
//! they may hold seats.
//!
//! - **Settings** live in PostgreSQL (`waiting_rooms`); every replica reloads them each
//!   second ([`Rooms`]), so a change reaches every replica within a second.
//! - **The queue** lives in Redis under the event's own hash tag: one ticket per account
//!   (`acct`), who owns each ticket and when it joined (`owner`), the tickets taken
//!   before the opening with a random score each (`pre`), the tickets taken after it
//!   with their arrival sequence (`line`), the counters (`meta`), when each ticket was
//!   admitted (`adm`), the admissions running now with their expiry (`active`) and the
//!   ones a checkout ended (`used`). Every step is one Lua script, and scripts read the
//!   clock from Redis (`TIME`), so every replica agrees on the opening and the pace.
//! - **Order.** A ticket's number is its place in line: the pre-opening tickets first,
//!   in the order of their random scores (drawn by the server when they joined, so
//!   arriving early or often gains nothing), then the others in arrival order. Tickets
//!   numbered 1..=admitted are admitted.
//! - **Admission.** Every replica runs [`WaitingRooms::spawn_ticker`]; each tick, for
//!   each open room, the advance script admits the next tickets the pace (a token bucket
//!   of `admit_per_second`, at most one second of burst) and the cap (`max_shoppers`
//!   running admissions) allow. Replicas share the work: the script is atomic and
//!   counts from Redis's clock. A replica whose advance moved the queue announces it
//!   (`queue.advanced`), which realtime-svc turns into live positions.
//! - **Tokens.** An admitted ticket's owner gets a signed admission token (see
//!   `marquee_infra::auth::AdmissionClaims`) bound to the account, the event and the
//!   ticket, expiring with the admission. Holds on the event need one, not ended by a
//!   checkout; checkout needs one and ends it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use marquee_infra::auth::{TokenError, TokenKeys};
use marquee_infra::bus::Bus;
use marquee_infra::redis_conn::{RedisConn, hash_tag};
use marquee_proto::kinds::QUEUE_ADVANCED;
use redis::{FromRedisValue as _, Script};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{AccountId, EventId, HoldId};
use crate::entity::waiting_rooms;
use crate::error::BookingError;
use crate::holds::{HoldState, HoldStore};
use crate::wire;

/// How a room admits buyers; valid by construction (see [`RoomSettings::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSettings {
    pub opens_at: DateTime<Utc>,
    /// Buyers admitted per second; 0: no pace.
    pub admit_per_second: u32,
    /// Admissions running at once; 0: no cap.
    pub max_shoppers: u32,
    /// How long an admission lasts.
    pub admission: Duration,
}

/// Most buyers per second a room may admit, and most running admissions.
pub const MAX_PACE: u32 = 100_000;
/// An admission lasts this long unless the seller says otherwise.
pub const DEFAULT_ADMISSION: Duration = Duration::from_secs(600);

impl RoomSettings {
    /// Settings from a request's values (`admission_seconds` 0 means the default).
    pub fn new(
        opens_at: DateTime<Utc>,
        admit_per_second: i32,
        max_shoppers: i32,
        admission_seconds: i32,
    ) -> Result<Self, BookingError> {
        let pace = |field: &'static str, value: i32| -> Result<u32, BookingError> {
            u32::try_from(value)
                .ok()
                .filter(|v| *v <= MAX_PACE)
                .ok_or_else(|| BookingError::invalid(field, format!("must be 0..={MAX_PACE}")))
        };
        let admit_per_second = pace("waitingRoom.admitPerSecond", admit_per_second)?;
        let max_shoppers = pace("waitingRoom.maxShoppers", max_shoppers)?;
        if admit_per_second == 0 && max_shoppers == 0 {
            return Err(BookingError::invalid(
                "waitingRoom.admitPerSecond",
                "set admitPerSecond, maxShoppers or both",
            ));
        }
        let admission = match admission_seconds {
            0 => DEFAULT_ADMISSION,
            s @ 30..=86_400 => Duration::from_secs(s.unsigned_abs().into()),
            _ => {
                return Err(BookingError::invalid(
                    "waitingRoom.admissionSeconds",
                    "must be 30..=86400 (or 0 for 600)",
                ));
            }
        };
        Ok(Self {
            opens_at,
            admit_per_second,
            max_shoppers,
            admission,
        })
    }

    /// Buyers admitted per second at this pace, for ETAs: the pace, or with only a cap,
    /// a full room turning over once per admission (whichever is slower with both).
    pub fn admit_rate(&self) -> f64 {
        let turnover = if self.max_shoppers > 0 {
            f64::from(self.max_shoppers) / self.admission.as_secs_f64().max(1.0)
        } else {
            f64::INFINITY
        };
        let pace = if self.admit_per_second > 0 {
            f64::from(self.admit_per_second)
        } else {
            f64::INFINITY
        };
        pace.min(turnover)
    }

    fn from_row(row: &waiting_rooms::Model) -> Option<Self> {
        Some(Self {
            opens_at: row.opens_at,
            admit_per_second: u32::try_from(row.admit_per_second).ok()?,
            max_shoppers: u32::try_from(row.max_shoppers).ok()?,
            admission: Duration::from_secs(u64::try_from(row.admission_seconds).ok()?),
        })
    }
}

/// A ticket: its event and a random nonce, written as 48 hex digits (the event's 32,
/// then the nonce's 16), so a ticket id alone says where its queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketId {
    pub event: EventId,
    nonce: u64,
}

impl TicketId {
    fn new(event: EventId) -> Self {
        Self {
            event,
            nonce: rand::random(),
        }
    }

    /// Parses a request field named `field`.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, BookingError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(BookingError::invalid(field, "a ticket id is required"));
        }
        let bad = || BookingError::invalid(field, "not a valid ticket id");
        if value.len() != 48 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let event = Uuid::parse_str(&value[..32]).map_err(|_| bad())?;
        let nonce = u64::from_str_radix(&value[32..], 16).map_err(|_| bad())?;
        Ok(Self {
            event: EventId(event),
            nonce,
        })
    }

    fn nonce(&self) -> String {
        format!("{:016x}", self.nonce)
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:016x}", self.event.0.simple(), self.nonce)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    BeforeOpening,
    Waiting,
    Admitted,
    Expired,
    Used,
}

/// A ticket as its owner sees it.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: TicketId,
    pub state: TicketState,
    /// Place in line from the opening (1 is first); 0 before it.
    pub number: u64,
    /// Buyers ahead still waiting.
    pub position: u64,
    pub eta_seconds: u64,
    pub opens_at: DateTime<Utc>,
    pub joined_at: DateTime<Utc>,
    /// In `Admitted`: the token and when it expires.
    pub admission: Option<(String, DateTime<Utc>)>,
}

/// A queue as its seller sees it.
#[derive(Debug, Clone)]
pub struct QueueStatus {
    pub event: EventId,
    pub settings: RoomSettings,
    pub opened: bool,
    pub joined: u64,
    pub waiting: u64,
    pub admitted: u64,
    pub shopping: u64,
    pub admit_rate: f64,
    pub eta_seconds: u64,
}

// KEYS: acct, owner, pre, line, meta, adm, used; ARGV: account, nonce, random score,
// opens (ms), admission (ms). An account's ticket whose admission ended (used by a
// checkout, or expired) is replaced by a new one at the back of the line.
// Replies {'existing' or 'joined', nonce, the ticket as DESCRIBE says}.
const JOIN: &str = r"
local function reply(kind, nonce)
  local out = {kind, nonce}
  for _, v in ipairs(describe(2, nonce)) do out[#out + 1] = v end
  return out
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  local at = redis.call('HGET', KEYS[6], existing)
  local ended = redis.call('SISMEMBER', KEYS[7], existing) == 1
    or (at and tonumber(at) + tonumber(ARGV[5]) <= now)
  if not ended then return reply('existing', existing) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1] .. '|' .. now)
if now < tonumber(ARGV[4]) and redis.call('HGET', KEYS[5], 'opened') ~= '1' then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
  return reply('joined', ARGV[2])
end
if redis.call('HGET', KEYS[5], 'opened') ~= '1' then
  redis.call('HSET', KEYS[5], 'opened', '1', 'pre', redis.call('ZCARD', KEYS[3]), 'admitted', 0, 'allowance', 0, 'last', now)
end
local seq = redis.call('HINCRBY', KEYS[5], 'seq', 1)
redis.call('ZADD', KEYS[4], seq, ARGV[2])
return reply('joined', ARGV[2])
";

// KEYS: meta, pre, line, adm, active; ARGV: opens (ms), pace, cap, admission (ms).
// Opens the queue when its time has come and admits what the pace and the cap allow.
// Replies {opened 0/1, admitted, joined, shopping, moved 0/1}.
const ADVANCE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('HMGET', KEYS[1], 'opened', 'pre', 'admitted', 'allowance', 'last', 'seq')
if m[1] ~= '1' then
  if now < tonumber(ARGV[1]) then
    return {0, 0, redis.call('ZCARD', KEYS[2]), 0, 0}
  end
  m = {'1', redis.call('ZCARD', KEYS[2]), 0, 0, now, m[6]}
  redis.call('HSET', KEYS[1], 'opened', '1', 'pre', m[2], 'admitted', 0, 'allowance', 0, 'last', now)
end
local pre = tonumber(m[2])
local admitted = tonumber(m[3])
local allowance = tonumber(m[4])
local last = tonumber(m[5])
local joined = pre + tonumber(m[6] or '0')
local pace = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local n = joined - admitted
if pace > 0 then
  allowance = math.min(allowance + (now - last) * pace / 1000, math.max(pace, 1))
  n = math.min(n, math.floor(allowance))
end
if cap > 0 then n = math.min(n, cap - redis.call('ZCARD', KEYS[5])) end
if n < 0 then n = 0 end
if n > 0 then
  local from = admitted
  local to = admitted + n - 1
  local ids = {}
  if from < pre then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], from, math.min(to, pre - 1))) do ids[#ids + 1] = id end
  end
  if to >= pre then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[3], math.max(from, pre) - pre, to - pre)) do ids[#ids + 1] = id end
  end
  local expires = now + tonumber(ARGV[4])
  for _, id in ipairs(ids) do
    redis.call('HSET', KEYS[4], id, now)
    redis.call('ZADD', KEYS[5], expires, id)
  end
  admitted = admitted + #ids
  if pace > 0 then allowance = allowance - #ids end
end
redis.call('HSET', KEYS[1], 'admitted', admitted, 'allowance', tostring(allowance), 'last', now)
local moved = 0
if n > 0 or m[1] ~= '1' then moved = 1 end
return {1, admitted, joined, redis.call('ZCARD', KEYS[5]), moved}
";

/// A Lua function: ticket `nonce` as {owner|joined, opened, number, admitted, admitted
/// at ('' if not), used}, or {} for an unknown ticket, with KEYS[k..k+5] being owner,
/// pre, line, meta, adm, used.
const DESCRIBE: &str = r"
local function describe(k, nonce)
  local owner = redis.call('HGET', KEYS[k], nonce)
  if not owner then return {} end
  local m = redis.call('HMGET', KEYS[k + 3], 'opened', 'pre', 'admitted')
  local number = 0
  if m[1] == '1' then
    local rank = redis.call('ZRANK', KEYS[k + 1], nonce)
    if rank then
      number = rank + 1
    else
      local seq = redis.call('ZSCORE', KEYS[k + 2], nonce)
      if seq then number = tonumber(m[2]) + tonumber(seq) end
    end
  end
  return {owner, m[1] or '0', number, tonumber(m[3] or '0'), redis.call('HGET', KEYS[k + 4], nonce) or '',
    redis.call('SISMEMBER', KEYS[k + 5], nonce)}
end
";

// KEYS: owner, pre, line, meta, adm, used; ARGV: nonce. Replies what DESCRIBE does.
const TICKET: &str = "return describe(1, ARGV[1])";

// KEYS: meta, pre, active. Replies {opened, joined, admitted, shopping}.
const STATUS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('HMGET', KEYS[1], 'opened', 'pre', 'admitted', 'seq')
local shopping = redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')
if m[1] ~= '1' then return {0, redis.call('ZCARD', KEYS[2]), 0, shopping} end
return {1, tonumber(m[2]) + tonumber(m[4] or '0'), tonumber(m[3]), shopping}
";

// KEYS: active, used; ARGV: nonce. Ends an admission.
const END: &str = r"
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
";

/// The queue's Redis keys for one event.
struct Keys {
    base: String,
}

impl Keys {
    fn new(prefix: &str, event: EventId) -> Self {
        Self {
            base: format!("{prefix}{}:", hash_tag(&format!("wr:{event}"))),
        }
    }
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }
}

/// Every waiting room's settings, as last loaded from PostgreSQL.
#[derive(Debug, Default)]
pub struct Rooms {
    map: RwLock<HashMap<EventId, RoomSettings>>,
    /// Bumped by every change made here, so a reload that read the table before the
    /// change does not undo it.
    changes: AtomicU64,
}

impl Rooms {
    pub fn get(&self, event: EventId) -> Option<RoomSettings> {
        self.map.read().ok()?.get(&event).copied()
    }

    fn all(&self) -> Vec<(EventId, RoomSettings)> {
        self.map
            .read()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    fn set(&self, event: EventId, settings: Option<RoomSettings>) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut map) = self.map.write() {
            match settings {
                Some(s) => map.insert(event, s),
                None => map.remove(&event),
            };
        }
    }

    fn is_empty(&self) -> bool {
        self.map.read().map(|m| m.is_empty()).unwrap_or(false)
    }

    /// Replaces every room with what a reload read, unless a change was made here
    /// since it started (`changes_before`): the next reload brings both.
    fn replace(&self, rooms: HashMap<EventId, RoomSettings>, changes_before: u64) {
        if let Ok(mut map) = self.map.write()
            && self.changes.load(Ordering::SeqCst) == changes_before
        {
            *map = rooms;
        }
    }
}

/// The waiting rooms: settings, queues and admissions.
pub struct WaitingRooms {
    pool: DatabaseConnection,
    /// The holds, for the event of a hold being checked out.
    holds: HoldStore,
    redis: RedisConn,
    prefix: String,
    keys: TokenKeys,
    rooms: Rooms,
    join: Script,
    advance: Script,
    ticket: Script,
    status: Script,
    end: Script,
}

impl fmt::Debug for WaitingRooms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitingRooms")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What an admission check needs from a request.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionCheck<'a> {
    pub buyer: AccountId,
    pub event: EventId,
    /// The `x-admission-token` the request carried.
    pub token: Option<&'a str>,
}

impl WaitingRooms {
    /// The rooms, on the holds' Redis and key prefix, loading the settings once now.
    pub async fn new(
        pool: DatabaseConnection,
        holds: HoldStore,
        keys: TokenKeys,
    ) -> Result<Self, BookingError> {
        let rooms = Self {
            pool,
            redis: holds.connection(),
            prefix: holds.prefix().to_owned(),
            holds,
            keys,
            rooms: Rooms::default(),
            join: Script::new(&format!("{DESCRIBE}{JOIN}")),
            advance: Script::new(ADVANCE),
            ticket: Script::new(&format!("{DESCRIBE}{TICKET}")),
            status: Script::new(STATUS),
            end: Script::new(END),
        };
        rooms.reload().await?;
        Ok(rooms)
    }

    /// The event's room settings, as this replica knows them (at most a second old).
    pub fn settings(&self, event: EventId) -> Option<RoomSettings> {
        self.rooms.get(event)
    }

    async fn reload(&self) -> Result<(), BookingError> {
        let changes_before = self.rooms.changes.load(Ordering::SeqCst);
        let rows = waiting_rooms::Entity::find().all(&self.pool).await?;
        let rooms = rows
            .iter()
            .filter_map(|row| Some((EventId(row.event_id), RoomSettings::from_row(row)?)))
            .collect();
        self.rooms.replace(rooms, changes_before);
        Ok(())
    }

    /// Turns the event's room on or changes it (`Some`), or turns it off (`None`).
    pub async fn configure(
        &self,
        event: EventId,
        settings: Option<RoomSettings>,
    ) -> Result<(), BookingError> {
        match settings {
            Some(s) => {
                let seconds = |d: Duration| i32::try_from(d.as_secs()).unwrap_or(i32::MAX);
                let pace = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
                waiting_rooms::Entity::insert(waiting_rooms::ActiveModel {
                    event_id: Set(event.0),
                    opens_at: Set(s.opens_at),
                    admit_per_second: Set(pace(s.admit_per_second)),
                    max_shoppers: Set(pace(s.max_shoppers)),
                    admission_seconds: Set(seconds(s.admission)),
                    updated_at: Set(Utc::now()),
                })
                .on_conflict(
                    OnConflict::column(waiting_rooms::Column::EventId)
                        .update_columns([
                            waiting_rooms::Column::OpensAt,
                            waiting_rooms::Column::AdmitPerSecond,
                            waiting_rooms::Column::MaxShoppers,
                            waiting_rooms::Column::AdmissionSeconds,
                            waiting_rooms::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&self.pool)
                .await?;
            }
            None => {
                waiting_rooms::Entity::delete_many()
                    .filter(waiting_rooms::Column::EventId.eq(event.0))
                    .exec(&self.pool)
                    .await?;
            }
        }
        self.rooms.set(event, settings);
        tracing::info!(event_id = %event, on = settings.is_some(), "waiting room configured");
        Ok(())
    }

    /// `buyer`'s ticket for the event's queue: the one it has, or a new one at the back
    /// of the line if it has none or its admission ended.
    pub async fn join(&self, buyer: AccountId, event: EventId) -> Result<Ticket, BookingError> {
        let settings = self.room(event)?;
        let keys = Keys::new(&self.prefix, event);
        let ticket = TicketId::new(event);
        // 53 random bits: a double holds them exactly, so no two scores tie by rounding.
        let score = rand::random::<u64>() >> 11;
        let reply: Vec<redis::Value> = self
            .join
            .key(keys.key("acct"))
            .key(keys.key("owner"))
            .key(keys.key("pre"))
            .key(keys.key("line"))
            .key(keys.key("meta"))
            .key(keys.key("adm"))
            .key(keys.key("used"))
            .arg(buyer.to_string())
            .arg(ticket.nonce())
            .arg(score)
            .arg(settings.opens_at.timestamp_millis())
            .arg(u64::try_from(settings.admission.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut self.redis.clone())
            .await?;
        let malformed = || BookingError::Internal(format!("join script replied {reply:?}"));
        let [outcome, nonce, rest @ ..] = reply.as_slice() else {
            return Err(malformed());
        };
        let text = |v: &redis::Value| String::from_redis_value(v.clone()).ok();
        let (Some(outcome), Some(nonce)) = (text(outcome), text(nonce)) else {
            return Err(malformed());
        };
        let id = TicketId {
            event,
            nonce: u64::from_str_radix(&nonce, 16).map_err(|_| malformed())?,
        };
        let Some(Some(stored)) = StoredTicket::parse(rest) else {
            return Err(malformed());
        };
        metrics::counter!("queue_joins_total", "outcome" => if outcome == "joined" { "joined" } else { "existing" })
            .increment(1);
        self.render(id, buyer, &settings, &stored)
    }

    /// The event's room, or NOT_FOUND when it has none.
    fn room(&self, event: EventId) -> Result<RoomSettings, BookingError> {
        self.rooms
            .get(event)
            .ok_or(BookingError::NotFound("waiting room"))
    }

    /// `buyer`'s ticket `id` (another account's is NOT_FOUND), with its admission token
    /// once admitted.
    pub async fn ticket(&self, buyer: AccountId, id: TicketId) -> Result<Ticket, BookingError> {
        let settings = self.room(id.event)?;
        let keys = Keys::new(&self.prefix, id.event);
        let reply: Vec<redis::Value> = self
            .ticket
            .key(keys.key("owner"))
            .key(keys.key("pre"))
            .key(keys.key("line"))
            .key(keys.key("meta"))
            .key(keys.key("adm"))
            .key(keys.key("used"))
            .arg(id.nonce())
            .invoke_async(&mut self.redis.clone())
            .await?;
        let stored = StoredTicket::parse(&reply)
            .ok_or_else(|| BookingError::Internal(format!("ticket script replied {reply:?}")));
        let stored = match stored {
            Ok(Some(stored)) if stored.owner == buyer => stored,
            Ok(_) => return Err(BookingError::NotFound("ticket")),
            Err(error) => return Err(error),
        };
        self.render(id, buyer, &settings, &stored)
    }

    /// A stored ticket as its owner sees it, with a fresh admission token if admitted.
    fn render(
        &self,
        id: TicketId,
        buyer: AccountId,
        settings: &RoomSettings,
        stored: &StoredTicket,
    ) -> Result<Ticket, BookingError> {
        let now = Utc::now();
        let mut ticket = Ticket {
            id,
            state: TicketState::Waiting,
            number: stored.number,
            position: 0,
            eta_seconds: 0,
            opens_at: settings.opens_at,
            joined_at: stored.joined_at,
            admission: None,
        };
        if let Some(admitted_at) = stored.admitted_at {
            let expires = admitted_at
                + chrono::Duration::from_std(settings.admission)
                    .unwrap_or(chrono::Duration::minutes(10));
            ticket.state = if stored.used {
                TicketState::Used
            } else if expires <= now {
                TicketState::Expired
            } else {
                TicketState::Admitted
            };
            if ticket.state == TicketState::Admitted {
                let token = self
                    .keys
                    .issue_admission(
                        &buyer.to_string(),
                        &id.event.to_string(),
                        &id.to_string(),
                        expires,
                    )
                    .map_err(|e| BookingError::Internal(format!("admission token: {e}")))?;
                ticket.admission = Some((token, expires));
            }
        } else if !stored.opened || stored.number == 0 {
            ticket.state = TicketState::BeforeOpening;
            ticket.eta_seconds =
                u64::try_from((settings.opens_at - now).num_seconds()).unwrap_or(0);
        } else {
            let ahead = stored.number.saturating_sub(stored.admitted + 1);
            ticket.position = ahead;
            ticket.eta_seconds = eta(stored.number - stored.admitted, settings.admit_rate());
        }
        Ok(ticket)
    }

    /// The event's queue as its seller sees it (`seller` must own the event: checked by
    /// the caller, who has the event).
    pub async fn status(&self, event: EventId) -> Result<QueueStatus, BookingError> {
        let settings = self.room(event)?;
        let keys = Keys::new(&self.prefix, event);
        let reply: Vec<i64> = self
            .status
            .key(keys.key("meta"))
            .key(keys.key("pre"))
            .key(keys.key("active"))
            .invoke_async(&mut self.redis.clone())
            .await?;
        let [opened, joined, admitted, shopping] = reply.as_slice() else {
            return Err(BookingError::Internal(format!(
                "status script replied {reply:?}"
            )));
        };
        let count = |v: &i64| u64::try_from(*v).unwrap_or(0);
        let waiting = count(joined).saturating_sub(count(admitted));
        let rate = settings.admit_rate();
        Ok(QueueStatus {
            event,
            settings,
            opened: *opened == 1,
            joined: count(joined),
            waiting,
            admitted: count(admitted),
            shopping: count(shopping),
            admit_rate: if rate.is_finite() { rate } else { 0.0 },
            eta_seconds: eta(waiting, rate),
        })
    }

    /// Checks the admission a hold or checkout on `check.event` needs: none when the
    /// event has no waiting room; else a valid token for this buyer and event. With
    /// `for_hold`, an admission a checkout ended no longer counts.
    pub async fn check(
        &self,
        check: AdmissionCheck<'_>,
        for_hold: bool,
    ) -> Result<Option<TicketId>, BookingError> {
        if self.rooms.get(check.event).is_none() {
            return Ok(None);
        }
        let token = check
            .token
            .filter(|t| !t.trim().is_empty())
            .ok_or(BookingError::PermissionDenied(
                "this event has a waiting room: join its queue and send the admission token (X-Admission-Token)",
            ))?;
        let claims = self
            .keys
            .verify_admission(token.trim())
            .map_err(|e| match e {
                TokenError::Expired => BookingError::PermissionDenied(
                    "the admission token has expired; join the queue again",
                ),
                _ => BookingError::PermissionDenied("the admission token is not valid"),
            })?;
        if claims.sub != check.buyer.to_string() {
            return Err(BookingError::PermissionDenied(
                "the admission token belongs to another account",
            ));
        }
        if claims.event != check.event.to_string() {
            return Err(BookingError::PermissionDenied(
                "the admission token is for another event",
            ));
        }
        let ticket = TicketId::parse("admissionToken", &claims.ticket)
            .map_err(|_| BookingError::PermissionDenied("the admission token is not valid"))?;
        if for_hold {
            let keys = Keys::new(&self.prefix, check.event);
            let used: bool = redis::cmd("SISMEMBER")
                .arg(keys.key("used"))
                .arg(ticket.nonce())
                .query_async(&mut self.redis.clone())
                .await?;
            if used {
                return Err(BookingError::PermissionDenied(
                    "this admission ended with a checkout; join the queue again",
                ));
            }
        }
        Ok(Some(ticket))
    }

    /// Checks the admission a checkout of `hold` needs: that of the hold's event. A hold
    /// no longer held (already checked out: a retry, which replays; or gone) needs none
    /// here, so a retry after the admission ended still gets its booking.
    pub async fn check_checkout(
        &self,
        buyer: AccountId,
        hold: HoldId,
        token: Option<&str>,
    ) -> Result<Option<TicketId>, BookingError> {
        if self.rooms.is_empty() {
            return Ok(None);
        }
        let Some(record) = self.holds.get(hold).await? else {
            return Ok(None);
        };
        if record.state != HoldState::Held || record.buyer != buyer {
            return Ok(None);
        }
        let check = AdmissionCheck {
            buyer,
            event: record.event,
            token,
        };
        self.check(check, false).await
    }

    /// Ends `ticket`'s admission after its checkout. The booking exists by then, so a
    /// failure is logged, not answered: the admission then ends when it expires.
    pub async fn end_after_checkout(&self, ticket: TicketId) {
        if let Err(error) = self.end(ticket).await {
            tracing::warn!(ticket_id = %ticket, %error, "ending an admission failed; it ends when it expires");
        }
    }

    /// Ends `ticket`'s admission (after its checkout), making room for the next buyer.
    pub async fn end(&self, ticket: TicketId) -> Result<(), BookingError> {
        let keys = Keys::new(&self.prefix, ticket.event);
        let _: i64 = self
            .end
            .key(keys.key("active"))
            .key(keys.key("used"))
            .arg(ticket.nonce())
            .invoke_async(&mut self.redis.clone())
            .await?;
        metrics::counter!("queue_admissions_ended_total").increment(1);
        Ok(())
    }

    /// One step of every open room: admit what may be admitted; announce what moved.
    async fn advance_all(&self, bus: &Bus, announced: &mut HashMap<EventId, Announced>) {
        let now = Utc::now();
        for (event, settings) in self.rooms.all() {
            if settings.opens_at > now + chrono::Duration::seconds(1) {
                continue;
            }
            let keys = Keys::new(&self.prefix, event);
            let reply: Result<Vec<i64>, _> = self
                .advance
                .key(keys.key("meta"))
                .key(keys.key("pre"))
                .key(keys.key("line"))
                .key(keys.key("adm"))
                .key(keys.key("active"))
                .arg(settings.opens_at.timestamp_millis())
                .arg(settings.admit_per_second)
                .arg(settings.max_shoppers)
                .arg(u64::try_from(settings.admission.as_millis()).unwrap_or(u64::MAX))
                .invoke_async(&mut self.redis.clone())
                .await;
            let reply = match reply {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::warn!(event_id = %event, %error, "waiting room advance failed");
                    continue;
                }
            };
            let [opened, admitted, joined, _shopping, _moved] = reply.as_slice() else {
                tracing::warn!(event_id = %event, ?reply, "waiting room advance replied oddly");
                continue;
            };
            let state = Announced {
                opened: *opened == 1,
                admitted: *admitted,
                joined: *joined,
                at: std::time::Instant::now(),
            };
            let due = announced
                .get(&event)
                .is_none_or(|last| last.differs(&state));
            if due {
                let rate = settings.admit_rate();
                let payload = wire::bus::queue_advanced(
                    event,
                    state.opened,
                    state.admitted,
                    state.joined,
                    if rate.is_finite() { rate } else { 0.0 },
                );
                let envelope = wire::bus::notification(QUEUE_ADVANCED, payload);
                if let Err(error) = bus.broadcast(&envelope).await {
                    tracing::warn!(event_id = %event, %error, "queue.advanced publish failed");
                } else {
                    announced.insert(event, state);
                }
            }
        }
        announced.retain(|event, _| self.rooms.get(*event).is_some());
    }

    /// Runs every replica's share of the rooms: each `tick`, the advance of every open
    /// room; each second, the settings reloaded from PostgreSQL. Stops on `shutdown`.
    pub fn spawn_ticker(self: Arc<Self>, bus: Bus, tick: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut announced = HashMap::new();
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reloads = tokio::time::interval(Duration::from_secs(1));
            reloads.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = reloads.tick() => {
                        if let Err(error) = self.reload().await {
                            tracing::warn!(%error, "waiting rooms reload failed");
                        }
                    }
                    _ = ticks.tick() => self.advance_all(&bus, &mut announced).await,
                }
            }
        });
    }
}

/// What a replica last announced of a room.
#[derive(Debug, Clone, Copy)]
struct Announced {
    opened: bool,
    admitted: i64,
    joined: i64,
    at: std::time::Instant,
}

impl Announced {
    /// Worth announcing: the queue moved, or two seconds passed (a heartbeat, so a
    /// watcher whose notification was lost catches up).
    fn differs(&self, now: &Announced) -> bool {
        self.opened != now.opened
            || self.admitted != now.admitted
            || self.joined != now.joined
            || now.at.duration_since(self.at) >= Duration::from_secs(2)
    }
}

/// Seconds until `ahead` more admissions at `rate` per second (0 when none is needed).
fn eta(ahead: u64, rate: f64) -> u64 {
    if ahead == 0 || !rate.is_finite() || rate <= 0.0 {
        return 0;
    }
    // A count of buyers over a rate, rounded up: precision past 2^53 buyers is moot.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let seconds = (ahead as f64 / rate).ceil() as u64;
    seconds
}

/// The ticket script's reply, parsed.
#[derive(Debug)]
struct StoredTicket {
    owner: AccountId,
    joined_at: DateTime<Utc>,
    opened: bool,
    number: u64,
    admitted: u64,
    admitted_at: Option<DateTime<Utc>>,
    used: bool,
}

impl StoredTicket {
    /// `None` when malformed; `Some(None)` for an unknown ticket.
    fn parse(reply: &[redis::Value]) -> Option<Option<Self>> {
        if reply.is_empty() {
            return Some(None);
        }
        let [owner, opened, number, admitted, admitted_at, used] = reply else {
            return None;
        };
        let owner = String::from_redis_value(owner.clone()).ok()?;
        let (account, joined) = owner.split_once('|')?;
        let admitted_at = String::from_redis_value(admitted_at.clone()).ok()?;
        Some(Some(Self {
            owner: AccountId(account.parse().ok()?),
            joined_at: DateTime::from_timestamp_millis(joined.parse().ok()?)?,
            opened: String::from_redis_value(opened.clone()).ok()? == "1",
            number: u64::from_redis_value(number.clone()).ok()?,
            admitted: u64::from_redis_value(admitted.clone()).ok()?,
            admitted_at: if admitted_at.is_empty() {
                None
            } else {
                Some(DateTime::from_timestamp_millis(admitted_at.parse().ok()?)?)
            },
            used: i64::from_redis_value(used.clone()).ok()? == 1,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_ids_round_trip_and_refuse_garbage() {
        let event = EventId::new();
        let id = TicketId::new(event);
        let text = id.to_string();
        assert_eq!(text.len(), 48);
        assert_eq!(TicketId::parse("ticketId", &text).unwrap(), id);
        for bad in ["", "xyz", &text[..47], &format!("{}g", &text[..47])] {
            assert!(TicketId::parse("ticketId", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_need_a_pace_or_a_cap_within_bounds() {
        let now = Utc::now();
        assert!(RoomSettings::new(now, 0, 0, 0).is_err());
        assert!(RoomSettings::new(now, -1, 10, 0).is_err());
        assert!(RoomSettings::new(now, 100_001, 0, 0).is_err());
        assert!(RoomSettings::new(now, 10, 0, 29).is_err());
        let s = RoomSettings::new(now, 10, 0, 0).unwrap();
        assert_eq!(s.admission, DEFAULT_ADMISSION);
        assert!((s.admit_rate() - 10.0).abs() < f64::EPSILON);
        let capped = RoomSettings::new(now, 0, 60, 60).unwrap();
        assert!((capped.admit_rate() - 1.0).abs() < f64::EPSILON);
        let both = RoomSettings::new(now, 100, 60, 60).unwrap();
        assert!((both.admit_rate() - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_reload_that_read_before_a_change_does_not_undo_it() {
        let rooms = Rooms::default();
        let event = EventId::new();
        let settings = RoomSettings::new(Utc::now(), 10, 0, 0).unwrap();
        let before = rooms.changes.load(Ordering::SeqCst);
        rooms.set(event, Some(settings));
        rooms.replace(HashMap::new(), before);
        assert_eq!(rooms.get(event), Some(settings));
        let after = rooms.changes.load(Ordering::SeqCst);
        rooms.replace(HashMap::new(), after);
        assert_eq!(rooms.get(event), None);
    }

    #[test]
    fn eta_rounds_up_and_is_zero_without_a_pace() {
        assert_eq!(eta(0, 10.0), 0);
        assert_eq!(eta(1, 10.0), 1);
        assert_eq!(eta(25, 10.0), 3);
        assert_eq!(eta(25, f64::INFINITY), 0);
    }
}
