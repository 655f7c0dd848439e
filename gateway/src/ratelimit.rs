//! Rate limits at the door, shared by every gateway replica through Redis.
//!
//! Each annotated route falls in one [`Class`] (sign-up, log-in, writes, reads, SSE
//! streams), and each class has a [`Limit`] per account and one per client address
//! (sign-up, which has no account yet, only the latter). The account is the verified
//! token's `sub`, or for a log-in the lower-cased email of its body; the address is the
//! peer's, or the one trusted proxies put in `X-Forwarded-For`. A request must pass
//! both; one over either gets 429 with `Retry-After` and uses up nothing of the other.
//!
//! The algorithm is GCRA (a token bucket kept as one timestamp per key): one Lua
//! script per key, on Redis's clock, so replicas agree whatever their own clocks say.
//! A request's keys (at most two) are checked at once, each by its own script call, so
//! on a Redis Cluster each key goes to its own slot's master; when one refuses, what the
//! others took is given back. Redis unreachable or slower than the timeout never fails
//! a request: it goes through unlimited, with a warning and `rate_limit_errors_total`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt as _;
use redis::Script;

use marquee_infra::auth::TokenKeys;
use marquee_infra::config::{ConfigError, Settings};
use marquee_infra::redis_conn::{self, RedisConn, RedisTarget, RedisTimeouts};

use crate::error::ApiError;
use crate::routes::{Route, RouteMatch};

/// The RPC behind `POST /v1/accounts`.
const SIGN_UP_RPC: &str = "/marquee.booking.v1.AccountService/SignUp";
/// The RPC behind `POST /v1/sessions`.
const LOG_IN_RPC: &str = "/marquee.booking.v1.AccountService/LogIn";
/// After Redis failed, checks are skipped (requests go through) this long, so an outage
/// costs each request nothing rather than the whole timeout.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Bound of the first connection attempt at start (later ones run in the background).
const CONNECT_BOUND: Duration = Duration::from_secs(3);
/// The longest period a limit may have; longer ones are a configuration mistake.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// Longer emails are cut to this many characters for the key (no valid one is longer).
const MAX_EMAIL_CHARS: usize = 320;

/// GCRA on one key. `KEYS[1]` holds the theoretical arrival time (TAT) of the next
/// request, in microseconds of Redis's clock; ARGV: the emission interval (period /
/// requests) and the burst window (interval × requests), both in microseconds, and
/// `take` (count one request if it is allowed) or `give` (give back one taken). Returns
/// `{1, 0}` when allowed, `{0, wait}` with the microseconds until it would be.
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if ARGV[3] == 'give' then
  tat = tat - interval
  if tat > now then
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
  else
    redis.call('DEL', KEYS[1])
  end
  return {1, 0}
end
local next_tat = tat + interval
local wait = next_tat - window - now
if wait > 0 then
  return {0, wait}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return {1, 0}
";

/// What a route is, for its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `POST /v1/accounts`.
    SignUp,
    /// `POST /v1/sessions`.
    LogIn,
    /// Any other route that is not a GET.
    Write,
    /// GET routes that answer once.
    Read,
    /// Server-streaming routes (SSE): each request opens a stream.
    Sse,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::SignUp,
        Class::LogIn,
        Class::Write,
        Class::Read,
        Class::Sse,
    ];

    /// The class of a route of the table.
    pub fn of(route: &Route) -> Self {
        match route.grpc_path.as_str() {
            SIGN_UP_RPC => Class::SignUp,
            LOG_IN_RPC => Class::LogIn,
            _ if route.server_streaming => Class::Sse,
            _ if route.method == Method::GET => Class::Read,
            _ => Class::Write,
        }
    }

    /// The metrics label and the settings' infix (upper-cased).
    pub fn name(self) -> &'static str {
        match self {
            Class::SignUp => "signup",
            Class::LogIn => "login",
            Class::Write => "write",
            Class::Read => "read",
            Class::Sse => "sse",
        }
    }

    /// What is counted, for the refusal's message.
    fn counted(self) -> &'static str {
        match self {
            Class::SignUp => "sign-ups",
            Class::LogIn => "log-in attempts",
            Class::Write => "writes",
            Class::Read => "reads",
            Class::Sse => "new streams",
        }
    }

    /// The scopes a limit can be set for: a sign-up has no account yet.
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            Class::SignUp => &[Scope::Address],
            _ => &[Scope::Account, Scope::Address],
        }
    }
}

/// Whom a limit counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The account: the verified token's `sub`, or the email a log-in is for.
    Account,
    /// The client address (IPv6 by its /64).
    Address,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Address => "address",
        }
    }
}

/// `requests` per `period`, with bursts of up to `requests` (GCRA: one request more
/// every `period / requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u32,
    pub period: Duration,
}

impl Limit {
    pub const fn new(requests: u32, period: Duration) -> Self {
        Self { requests, period }
    }

    /// Microseconds between two requests at the sustained rate (at least 1).
    fn interval_micros(self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        (period / u64::from(self.requests.max(1))).max(1)
    }

    /// Microseconds a full burst spans: `requests` intervals.
    fn window_micros(self) -> u64 {
        self.interval_micros()
            .saturating_mul(u64::from(self.requests.max(1)))
    }
}

impl FromStr for Limit {
    type Err = String;

    /// `N/period`: `10/60s`, `10/1m`, `10/m`, `200/1s`, `100/500ms`, `20/1h`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected <requests>/<period>, e.g. 10/60s, 50/1s, 20/1h, or off";
        let (requests, period) = text.trim().split_once('/').ok_or(expected)?;
        let requests: u32 = requests
            .trim()
            .parse()
            .map_err(|_| format!("{requests:?} is not a number of requests; {expected}"))?;
        if requests == 0 {
            return Err(format!("0 requests allows nothing; {expected}"));
        }
        let period = period.trim();
        let unit_at = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (amount, unit) = period.split_at(unit_at);
        let amount: u64 = if amount.is_empty() {
            1
        } else {
            amount
                .parse()
                .map_err(|_| format!("{amount:?} is not a number; {expected}"))?
        };
        let millis = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            _ => return Err(format!("{unit:?} is not a unit (ms, s, m, h); {expected}")),
        };
        let period = Duration::from_millis(amount.saturating_mul(millis));
        if period.is_zero() || period > MAX_PERIOD {
            return Err(format!("the period must be from 1ms to 24h; {expected}"));
        }
        if u128::from(requests) > period.as_micros() {
            return Err(format!("more than one request a microsecond; {expected}"));
        }
        Ok(Self { requests, period })
    }
}

impl fmt::Display for Limit {
    /// The shortest spelling [`Limit::from_str`] reads back: `10/1m`, `50/1s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        let (amount, unit) = if ms.is_multiple_of(3_600_000) {
            (ms / 3_600_000, "h")
        } else if ms.is_multiple_of(60_000) {
            (ms / 60_000, "m")
        } else if ms.is_multiple_of(1000) {
            (ms / 1000, "s")
        } else {
            (ms, "ms")
        };
        write!(f, "{}/{amount}{unit}", self.requests)
    }
}

/// A limit setting: `off`, or a [`Limit`].
pub fn parse_setting(text: &str) -> Result<Option<Limit>, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse().map(Some)
}

/// A limit setting as [`parse_setting`] reads it.
pub fn show_setting(limit: Option<Limit>) -> String {
    limit.map_or_else(|| "off".to_owned(), |l| l.to_string())
}

/// One class's limits; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeLimits {
    pub per_account: Option<Limit>,
    pub per_address: Option<Limit>,
}

impl ScopeLimits {
    pub fn get(&self, scope: Scope) -> Option<Limit> {
        match scope {
            Scope::Account => self.per_account,
            Scope::Address => self.per_address,
        }
    }

    fn get_mut(&mut self, scope: Scope) -> &mut Option<Limit> {
        match scope {
            Scope::Account => &mut self.per_account,
            Scope::Address => &mut self.per_address,
        }
    }
}

const fn both(account: Limit, address: Limit) -> ScopeLimits {
    ScopeLimits {
        per_account: Some(account),
        per_address: Some(address),
    }
}

const fn per_second(requests: u32) -> Limit {
    Limit::new(requests, Duration::from_secs(1))
}

const fn per_minute(requests: u32) -> Limit {
    Limit::new(requests, Duration::from_secs(60))
}

/// Every class's limits, each from `RATE_LIMIT_<CLASS>_PER_ACCOUNT` and
/// `RATE_LIMIT_<CLASS>_PER_ADDRESS` (`N/period` or `off`). README, "Rate limits", says
/// why the defaults are what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `RATE_LIMIT_SIGNUP_PER_ADDRESS`, default `20/1h` (sign-up has no account scope).
    pub signup: ScopeLimits,
    /// `RATE_LIMIT_LOGIN_PER_ACCOUNT` (per email), default `10/10m`;
    /// `RATE_LIMIT_LOGIN_PER_ADDRESS`, default `60/1m`.
    pub login: ScopeLimits,
    /// `RATE_LIMIT_WRITE_PER_ACCOUNT`, default `20/1s`; `RATE_LIMIT_WRITE_PER_ADDRESS`,
    /// default `200/1s`.
    pub write: ScopeLimits,
    /// `RATE_LIMIT_READ_PER_ACCOUNT`, default `50/1s`; `RATE_LIMIT_READ_PER_ADDRESS`,
    /// default `500/1s`.
    pub read: ScopeLimits,
    /// New SSE streams: `RATE_LIMIT_SSE_PER_ACCOUNT`, default `20/1m`;
    /// `RATE_LIMIT_SSE_PER_ADDRESS`, default `120/1m`.
    pub sse: ScopeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            signup: ScopeLimits {
                per_account: None,
                per_address: Some(Limit::new(20, Duration::from_secs(3600))),
            },
            login: both(Limit::new(10, Duration::from_secs(600)), per_minute(60)),
            write: both(per_second(20), per_second(200)),
            read: both(per_second(50), per_second(500)),
            sse: both(per_minute(20), per_minute(120)),
        }
    }
}

impl Limits {
    pub fn get(&self, class: Class) -> &ScopeLimits {
        match class {
            Class::SignUp => &self.signup,
            Class::LogIn => &self.login,
            Class::Write => &self.write,
            Class::Read => &self.read,
            Class::Sse => &self.sse,
        }
    }

    fn get_mut(&mut self, class: Class) -> &mut ScopeLimits {
        match class {
            Class::SignUp => &mut self.signup,
            Class::LogIn => &mut self.login,
            Class::Write => &mut self.write,
            Class::Read => &mut self.read,
            Class::Sse => &mut self.sse,
        }
    }

    /// The limits from `RATE_LIMIT_<CLASS>_PER_<SCOPE>`, over the defaults.
    pub fn from_settings(env: &mut Settings) -> Self {
        let mut limits = Self::default();
        for class in Class::ALL {
            for &scope in class.scopes() {
                let name = setting_name(class, scope);
                let slot = limits.get_mut(class).get_mut(scope);
                let raw = env.string(&name, &show_setting(*slot));
                match parse_setting(&raw) {
                    Ok(limit) => *slot = limit,
                    Err(reason) => env.record(ConfigError::Invalid {
                        name,
                        value: raw,
                        reason,
                    }),
                }
            }
        }
        limits
    }
}

/// `RATE_LIMIT_LOGIN_PER_ACCOUNT`.
pub fn setting_name(class: Class, scope: Scope) -> String {
    format!(
        "RATE_LIMIT_{}_PER_{}",
        class.name().to_ascii_uppercase(),
        scope.name().to_ascii_uppercase()
    )
}

/// `RATE_LIMIT_PREFIX`'s default.
pub const DEFAULT_PREFIX: &str = "marquee:rl:";

/// The limiter's settings.
#[derive(Clone)]
pub struct RateLimitConfig {
    /// `RATE_LIMITS`, default `true`: `false` turns every limit off.
    pub enabled: bool,
    /// `REDIS_URL` (default `redis://127.0.0.1:6379`) and `REDIS_CLUSTER` (default
    /// `false`): the Redis every replica shares the counts in.
    pub redis: RedisTarget,
    /// `RATE_LIMIT_PREFIX`, default `marquee:rl:`: the start of every key (no braces).
    pub prefix: String,
    /// `RATE_LIMIT_TIMEOUT_MS`, default 50: how long a request waits for Redis before
    /// it goes through unlimited.
    pub timeout: Duration,
    /// `TRUSTED_PROXY_HOPS`, default 0: how many proxies in front of the gateway append
    /// to `X-Forwarded-For`. 0 ignores the header (the peer is the client); N takes the
    /// N-th address from its end, the one the outermost trusted proxy saw.
    pub trusted_proxy_hops: usize,
    /// `RATE_LIMIT_<CLASS>_PER_<SCOPE>`.
    pub limits: Limits,
}

impl fmt::Debug for RateLimitConfig {
    /// Without the Redis URLs, which may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitConfig")
            .field("enabled", &self.enabled)
            .field("redis_cluster", &self.redis.is_cluster())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("trusted_proxy_hops", &self.trusted_proxy_hops)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RateLimitConfig {
    /// The settings read from `env`; a bad one is recorded there.
    pub fn from_settings(env: &mut Settings) -> Self {
        let enabled = env.or("RATE_LIMITS", true);
        let url = env.string("REDIS_URL", "redis://127.0.0.1:6379");
        let cluster = env.or("REDIS_CLUSTER", false);
        let redis = RedisTarget::parse(&url, cluster).unwrap_or_else(|reason| {
            env.record(ConfigError::Invalid {
                name: "REDIS_URL".to_owned(),
                value: url.clone(),
                reason,
            });
            RedisTarget::Single(url)
        });
        let prefix = env.string("RATE_LIMIT_PREFIX", DEFAULT_PREFIX);
        if prefix.contains(['{', '}']) {
            env.record(ConfigError::Invalid {
                name: "RATE_LIMIT_PREFIX".to_owned(),
                value: prefix.clone(),
                reason: "braces would make a hash tag: every key in one cluster slot".to_owned(),
            });
        }
        Self {
            enabled,
            redis,
            prefix,
            timeout: env.millis("RATE_LIMIT_TIMEOUT_MS", Duration::from_millis(50)),
            trusted_proxy_hops: env.or("TRUSTED_PROXY_HOPS", 0),
            limits: Limits::from_settings(env),
        }
    }

    /// Limits off (tests and benchmarks hammer the gateway from one address), with the
    /// defaults otherwise, for a test to turn on.
    pub fn off() -> Self {
        Self {
            enabled: false,
            redis: RedisTarget::Single("redis://127.0.0.1:6379".to_owned()),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: Duration::from_millis(50),
            trusted_proxy_hops: 0,
            limits: Limits::default(),
        }
    }
}

/// One key to count a request against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subject {
    scope: Scope,
    key: String,
    limit: Limit,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    scope: Scope,
    wait: Duration,
}

/// The limiter the middleware consults; shared by every request of a gateway.
pub struct RateLimiter {
    config: RateLimitConfig,
    keys: TokenKeys,
    body_limit: usize,
    script: Script,
    /// The connection once there is one (it reconnects by itself after that).
    conn: tokio::sync::watch::Sender<Option<RedisConn>>,
    /// A connection attempt is under way.
    connecting: AtomicBool,
    /// Checks are skipped until this many milliseconds after `started`.
    paused_until_ms: AtomicU64,
    started: Instant,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .field("connected", &self.conn.borrow().is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter not yet connected (see [`RateLimiter::connect`]).
    pub fn new(config: &RateLimitConfig, keys: TokenKeys, body_limit: usize) -> Self {
        Self {
            config: config.clone(),
            keys,
            body_limit,
            script: Script::new(GCRA),
            conn: tokio::sync::watch::Sender::new(None),
            connecting: AtomicBool::new(false),
            paused_until_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Publishes the configured limits as gauges (none when limits are off).
    pub fn publish_limits(&self) {
        if !self.config.enabled {
            return;
        }
        for class in Class::ALL {
            for &scope in class.scopes() {
                let Some(limit) = self.config.limits.get(class).get(scope) else {
                    continue;
                };
                let labels = [("class", class.name()), ("scope", scope.name())];
                metrics::gauge!("rate_limit_requests", &labels).set(f64::from(limit.requests));
                metrics::gauge!("rate_limit_period_seconds", &labels)
                    .set(limit.period.as_secs_f64());
            }
        }
    }

    /// Connects to Redis once (bounded); on failure the limiter lets requests through
    /// and tries again in the background. Nothing to do when limits are off.
    pub async fn connect(&self) {
        if !self.config.enabled || self.conn.borrow().is_some() {
            return;
        }
        let timeouts = RedisTimeouts {
            response: self.config.timeout.max(Duration::from_secs(1)),
            connect: Duration::from_secs(1),
        };
        let attempt = redis_conn::connect(&self.config.redis, timeouts);
        match tokio::time::timeout(CONNECT_BOUND, attempt).await {
            Ok(Ok(conn)) => {
                self.conn.send_if_modified(|current| {
                    let first = current.is_none();
                    if first {
                        *current = Some(conn);
                    }
                    first
                });
                tracing::info!(
                    redis_cluster = self.config.redis.is_cluster(),
                    "rate limiter connected"
                );
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "rate limiter cannot reach redis; requests go through unlimited")
            }
            Err(_) => tracing::warn!(
                "rate limiter timed out connecting to redis; requests go through unlimited"
            ),
        }
    }

    /// The connection; while there is none, one attempt in the background (at most one
    /// at a time and one a second), waited for until `deadline`.
    async fn connection(self: &Arc<Self>, deadline: tokio::time::Instant) -> Option<RedisConn> {
        if let Some(conn) = self.conn.borrow().as_ref() {
            return Some(conn.clone());
        }
        let mut connected = self.conn.subscribe();
        if !self.connecting.swap(true, Ordering::AcqRel) {
            let limiter = self.clone();
            tokio::spawn(async move {
                limiter.connect().await;
                if limiter.conn.borrow().is_none() {
                    tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
                }
                limiter.connecting.store(false, Ordering::Release);
            });
        }
        let waited = tokio::time::timeout_at(deadline, connected.wait_for(Option::is_some)).await;
        waited.ok()?.ok()?.clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn paused(&self) -> bool {
        self.now_ms() < self.paused_until_ms.load(Ordering::Relaxed)
    }

    /// Records a failed check: the request goes through; checks pause for a moment.
    fn failed(&self, kind: &'static str, class: Class, error: Option<&redis::RedisError>) {
        metrics::counter!("rate_limit_errors_total", "kind" => kind).increment(1);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(PAUSE_AFTER_FAILURE.as_millis()).unwrap_or(0));
        self.paused_until_ms.store(until, Ordering::Relaxed);
        match error {
            Some(error) => tracing::warn!(
                class = class.name(),
                kind,
                %error,
                "rate limit check failed; request let through"
            ),
            None => tracing::warn!(
                class = class.name(),
                kind,
                "rate limit check failed; request let through"
            ),
        }
    }

    /// Counts a request against every subject; `Some` when one of them is over its
    /// limit (then nothing is counted against the others). Fails open.
    async fn check(self: &Arc<Self>, class: Class, subjects: &[Subject]) -> Option<Refusal> {
        if self.paused() {
            metrics::counter!("rate_limit_errors_total", "kind" => "paused").increment(1);
            return None;
        }
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let Some(conn) = self.connection(deadline).await else {
            self.failed("unconnected", class, None);
            return None;
        };
        let takes = subjects
            .iter()
            .map(|subject| self.run(conn.clone(), subject, "take"));
        let answers =
            match tokio::time::timeout_at(deadline, futures::future::join_all(takes)).await {
                Ok(answers) => answers,
                Err(_) => {
                    self.failed("timeout", class, None);
                    return None;
                }
            };
        let mut refusal: Option<Refusal> = None;
        let mut taken = Vec::new();
        let mut error = None;
        for (subject, answer) in subjects.iter().zip(answers) {
            match answer {
                Ok((1, _)) => taken.push(subject),
                Ok((_, wait)) => {
                    let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
                    if refusal.is_none_or(|r| wait > r.wait) {
                        refusal = Some(Refusal {
                            scope: subject.scope,
                            wait,
                        });
                    }
                }
                Err(e) => error = Some(e),
            }
        }
        if let Some(error) = &error {
            // A key that answered over its limit still refuses; without one the request
            // goes through, and what was taken stays taken (one failing call is enough).
            self.failed("error", class, Some(error));
        }
        let refusal = refusal?;
        // Refused by one: what the others counted is given back.
        let gives = taken
            .into_iter()
            .map(|subject| self.run(conn.clone(), subject, "give"));
        match tokio::time::timeout_at(deadline, futures::future::join_all(gives)).await {
            Ok(answers) => {
                if let Some(error) = answers.into_iter().find_map(Result::err) {
                    tracing::warn!(class = class.name(), %error, "rate limit give-back failed");
                }
            }
            Err(_) => tracing::warn!(class = class.name(), "rate limit give-back timed out"),
        }
        Some(refusal)
    }

    async fn run(
        &self,
        mut conn: RedisConn,
        subject: &Subject,
        mode: &str,
    ) -> redis::RedisResult<(i64, i64)> {
        self.script
            .key(&subject.key)
            .arg(subject.limit.interval_micros())
            .arg(subject.limit.window_micros())
            .arg(mode)
            .invoke_async(&mut conn)
            .await
    }

    /// `<prefix><class>:<scope>:<id>`.
    fn key(&self, class: Class, scope: Scope, id: &str) -> String {
        format!(
            "{}{}:{}:{id}",
            self.config.prefix,
            class.name(),
            scope.name()
        )
    }
}

/// The middleware: counts each request of an annotated route against its class's
/// limits, and answers 429 with `Retry-After` when it is over one.
pub async fn limit(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    if !limiter.enabled() {
        return next.run(request).await;
    }
    let Some(class) = request
        .extensions()
        .get::<RouteMatch>()
        .and_then(RouteMatch::route)
        .map(Class::of)
    else {
        return next.run(request).await;
    };
    let limits = *limiter.config.limits.get(class);
    let address = client_address(
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        request.headers(),
        limiter.config.trusted_proxy_hops,
    );
    let (request, account) = match class {
        Class::SignUp => (request, None),
        Class::LogIn if limits.per_account.is_some() => {
            match login_email(request, limiter.body_limit).await {
                Ok(read) => read,
                Err(response) => return response,
            }
        }
        _ => {
            let account = token_account(&limiter.keys, &request, class);
            (request, account)
        }
    };
    let mut subjects = Vec::with_capacity(2);
    if let (Some(limit), Some(account)) = (limits.per_account, account) {
        subjects.push(Subject {
            scope: Scope::Account,
            key: limiter.key(class, Scope::Account, &account),
            limit,
        });
    }
    if let (Some(limit), Some(address)) = (limits.per_address, address) {
        subjects.push(Subject {
            scope: Scope::Address,
            key: limiter.key(class, Scope::Address, &address_key(address)),
            limit,
        });
    }
    if subjects.is_empty() {
        return next.run(request).await;
    }
    match limiter.check(class, &subjects).await {
        None => next.run(request).await,
        Some(refusal) => refuse(class, refusal),
    }
}

/// 429 in the gateway's error shape, with `Retry-After` in whole seconds (at least 1).
fn refuse(class: Class, refusal: Refusal) -> Response {
    metrics::counter!(
        "rate_limited_total",
        "class" => class.name(),
        "scope" => refusal.scope.name()
    )
    .increment(1);
    let seconds = retry_after_seconds(refusal.wait);
    let message = format!(
        "too many {} from this {}; retry in {seconds} s",
        class.counted(),
        refusal.scope.name()
    );
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A wait in whole seconds, rounded up, at least 1.
fn retry_after_seconds(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

/// The verified token's account: from the `authorization` header, or on an SSE route
/// from `?access_token=` (as the SSE handler takes it: browsers' EventSource sends no
/// headers). `None` without a valid token: the request is then limited by its address
/// alone, and the handler refuses a bad token.
fn token_account(keys: &TokenKeys, request: &Request, class: Class) -> Option<String> {
    let claims = match request.headers().get(AUTHORIZATION) {
        Some(value) => keys.verify_header(Some(value.to_str().ok()?)),
        None if class == Class::Sse => {
            let query = request.uri().query()?;
            let token = url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "access_token")?
                .1;
            keys.verify(&token)
        }
        None => return None,
    };
    claims.ok().map(|claims| claims.sub)
}

/// Reads a log-in's body, up to the body limit (over it: 413, as the handler would
/// answer), hands it back for the handler, and takes the lower-cased email from it, if
/// it has one.
async fn login_email(
    request: Request,
    body_limit: usize,
) -> Result<(Request, Option<String>), Response> {
    let (parts, body) = request.into_parts();
    let bytes = match http_body_util::Limited::new(body, body_limit)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return Err(body_error(error.as_ref(), body_limit).into_response()),
    };
    let email = email_of(&bytes);
    Ok((Request::from_parts(parts, Body::from(bytes)), email))
}

/// The `email` of a log-in body, trimmed, lower-cased and cut to a bounded length.
fn email_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct LogIn {
        email: Option<String>,
    }
    let email = serde_json::from_slice::<LogIn>(body).ok()?.email?;
    let email: String = email
        .trim()
        .to_lowercase()
        .chars()
        .take(MAX_EMAIL_CHARS)
        .collect();
    (!email.is_empty()).then_some(email)
}

/// As the handler answers a body it cannot read: 413 over the limit, else 400.
fn body_error(
    error: &(dyn std::error::Error + Send + Sync + 'static),
    body_limit: usize,
) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::payload_too_large(body_limit);
        }
        source = e.source();
    }
    ApiError::bad_request(format!("could not read the request body: {error}"))
}

/// The client's address: the peer's, or with `hops` trusted proxies in front, the
/// `hops`-th address from the end of `X-Forwarded-For` (what the outermost trusted
/// proxy saw; entries before it are the client's word). Falls back to the peer when
/// the header has fewer entries or that one is not an address.
pub fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    hops: usize,
) -> Option<IpAddr> {
    let peer = peer.map(|p| p.ip());
    if hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    entries
        .len()
        .checked_sub(hops)
        .and_then(|at| entries.get(at))
        .and_then(|entry| parse_forwarded(entry))
        .or(peer)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The key of an address: IPv4 as is (also when mapped into IPv6), IPv6 by its /64,
/// which one subscriber usually has whole.
fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use http_body_util::BodyExt as _;
    use serde_json::Value as Json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::GatewayConfig;
    use crate::routes::RouteTable;

    const SECRET: &str = "test-secret";

    fn per(requests: u32, secs: u64) -> Option<Limit> {
        Some(Limit::new(requests, Duration::from_secs(secs)))
    }

    #[test]
    fn limits_parse_and_print_back() {
        let cases = [
            ("10/60s", 10, 60_000, "10/1m"),
            ("10/1m", 10, 60_000, "10/1m"),
            ("10/m", 10, 60_000, "10/1m"),
            ("10/min", 10, 60_000, "10/1m"),
            (" 200 / 1s ", 200, 1000, "200/1s"),
            ("50/s", 50, 1000, "50/1s"),
            ("100/500ms", 100, 500, "100/500ms"),
            ("20/1h", 20, 3_600_000, "20/1h"),
            ("3/90s", 3, 90_000, "3/90s"),
            ("1/24h", 1, 86_400_000, "1/24h"),
        ];
        for (text, requests, millis, shown) in cases {
            let parsed: Limit = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                parsed,
                Limit::new(requests, Duration::from_millis(millis)),
                "{text}"
            );
            assert_eq!(parsed.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<Limit>(), Ok(parsed), "{shown} reads back");
        }
        assert_eq!(parse_setting("off"), Ok(None));
        assert_eq!(parse_setting(" OFF "), Ok(None));
        assert_eq!(parse_setting("5/10s"), Ok(per(5, 10)));
        assert_eq!(show_setting(None), "off");
        assert_eq!(show_setting(per(5, 10)), "5/10s");
    }

    #[test]
    fn malformed_limits_are_refused() {
        for bad in [
            "", "10", "10/", "/1s", "0/1s", "-1/1s", "x/1s", "10/0s", "10/1y", "10/1.5s", "10/s1",
            "10/25h", "10/-1s", "5000/1ms", "on",
        ] {
            assert!(parse_setting(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn limits_are_intervals_and_bursts_in_microseconds() {
        let login = Limit::new(10, Duration::from_secs(60));
        assert_eq!(login.interval_micros(), 6_000_000);
        assert_eq!(login.window_micros(), 60_000_000);
        // A period that does not divide evenly: the burst stays `requests`, not one more.
        let odd = Limit::new(3, Duration::from_secs(10));
        assert_eq!(odd.interval_micros(), 3_333_333);
        assert!(odd.window_micros() <= 10_000_000);
        assert!(odd.window_micros() < 4 * odd.interval_micros());
    }

    #[test]
    fn settings_have_defaults_and_every_bad_one_is_reported() {
        let mut env = Settings::from_json_only("{}").expect("settings");
        let config = RateLimitConfig::from_settings(&mut env);
        env.finish().expect("the defaults are valid");
        assert!(config.enabled);
        assert_eq!(config.prefix, DEFAULT_PREFIX);
        assert_eq!(config.timeout, Duration::from_millis(50));
        assert_eq!(config.trusted_proxy_hops, 0);
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.limits.login.per_account, per(10, 600));
        assert_eq!(config.limits.signup.per_account, None);

        let mut env = Settings::from_json_only(
            r#"{"RATE_LIMITS": false, "RATE_LIMIT_LOGIN_PER_ACCOUNT": "3/10s",
                "RATE_LIMIT_READ_PER_ADDRESS": "off", "RATE_LIMIT_WRITE_PER_ACCOUNT": "lots",
                "RATE_LIMIT_SSE_PER_ADDRESS": "0/1m", "RATE_LIMIT_PREFIX": "rl:{x}:",
                "TRUSTED_PROXY_HOPS": 1}"#,
        )
        .expect("settings");
        let config = RateLimitConfig::from_settings(&mut env);
        assert!(!config.enabled);
        assert_eq!(config.trusted_proxy_hops, 1);
        assert_eq!(config.limits.login.per_account, per(3, 10));
        assert_eq!(config.limits.read.per_address, None);
        let error = env.finish().expect_err("three bad settings").to_string();
        for name in [
            "RATE_LIMIT_WRITE_PER_ACCOUNT",
            "RATE_LIMIT_SSE_PER_ADDRESS",
            "RATE_LIMIT_PREFIX",
        ] {
            assert!(error.contains(name), "{name} in {error}");
        }
        assert!(error.starts_with("3 settings are invalid"), "{error}");
        assert_eq!(
            setting_name(Class::LogIn, Scope::Account),
            "RATE_LIMIT_LOGIN_PER_ACCOUNT"
        );
    }

    #[test]
    fn every_route_falls_in_its_class() {
        let table = RouteTable::marquee().expect("route table");
        let class_of = |method: Method, path: &str| {
            let matched = table.lookup(&method, path);
            Class::of(
                matched
                    .route()
                    .unwrap_or_else(|| panic!("{method} {path} is a route")),
            )
        };
        assert_eq!(class_of(Method::POST, "/v1/accounts"), Class::SignUp);
        assert_eq!(class_of(Method::POST, "/v1/sessions"), Class::LogIn);
        assert_eq!(
            class_of(Method::GET, "/v1/events/e-1/seats:watch"),
            Class::Sse
        );
        assert_eq!(class_of(Method::GET, "/v1/bookings/b-1:watch"), Class::Sse);
        assert_eq!(class_of(Method::POST, "/v1/bookings"), Class::Write);
        assert_eq!(
            class_of(Method::POST, "/v1/bookings/b-1:cancel"),
            Class::Write
        );
        assert_eq!(class_of(Method::DELETE, "/v1/holds/h-1"), Class::Write);
        assert_eq!(class_of(Method::POST, "/v1/events/e-1/holds"), Class::Write);
        assert_eq!(class_of(Method::GET, "/v1/events"), Class::Read);
        assert_eq!(class_of(Method::GET, "/v1/me"), Class::Read);
        assert_eq!(class_of(Method::GET, "/v1/events/e-1/seats"), Class::Read);
        // Every streaming route is an SSE stream, and only GETs are reads.
        for route in table.routes() {
            let class = Class::of(route);
            if route.server_streaming {
                assert_eq!(class, Class::Sse, "{}", route.name());
            } else if class == Class::Read {
                assert_eq!(route.method, Method::GET, "{}", route.name());
            } else if route.method == Method::GET {
                panic!("{} is a GET but {class:?}", route.name());
            }
        }
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("header"),
            );
        }
        headers
    }

    #[test]
    fn the_client_address_is_the_peer_unless_trusted_proxies_say_otherwise() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 9], 4000)));
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        let spoofed = forwarded(&["6.6.6.6, 203.0.113.7"]);
        // Without trusted proxies the header is the client's word: ignored.
        assert_eq!(client_address(peer, &spoofed, 0), ip("10.0.0.9"));
        // One proxy appended what it saw: the last entry.
        assert_eq!(client_address(peer, &spoofed, 1), ip("203.0.113.7"));
        // Two: the second from the end, over several headers.
        let two = forwarded(&["6.6.6.6", "203.0.113.7, 10.1.1.1"]);
        assert_eq!(client_address(peer, &two, 2), ip("203.0.113.7"));
        // With ports, and IPv6.
        let ports = forwarded(&["203.0.113.7:5555, [2001:db8::1]:443"]);
        assert_eq!(client_address(peer, &ports, 1), ip("2001:db8::1"));
        assert_eq!(client_address(peer, &ports, 2), ip("203.0.113.7"));
        // Too few entries, none, or garbage: the peer.
        assert_eq!(client_address(peer, &spoofed, 3), ip("10.0.0.9"));
        assert_eq!(client_address(peer, &HeaderMap::new(), 1), ip("10.0.0.9"));
        assert_eq!(
            client_address(peer, &forwarded(&["unknown"]), 1),
            ip("10.0.0.9")
        );
        assert_eq!(client_address(None, &HeaderMap::new(), 0), None);
    }

    #[test]
    fn ipv6_addresses_count_by_their_slash_64() {
        let key = |s: &str| address_key(s.parse().expect("ip"));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn a_log_in_counts_for_its_lower_cased_email() {
        assert_eq!(
            email_of(br#"{"email": " Ann@Example.COM ", "password": "x"}"#),
            Some("ann@example.com".to_owned())
        );
        assert_eq!(email_of(br#"{"password": "x"}"#), None);
        assert_eq!(email_of(br#"{"email": ""}"#), None);
        assert_eq!(email_of(br#"{"email": 7}"#), None);
        assert_eq!(email_of(b"not json"), None);
        let long = format!(r#"{{"email": "{}@example.com"}}"#, "a".repeat(5000));
        assert_eq!(
            email_of(long.as_bytes()).map(|e| e.chars().count()),
            Some(MAX_EMAIL_CHARS)
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_micros(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
    }

    /// A gateway whose upstreams are a closed port (an allowed request answers 503,
    /// or 400 when its body does not transcode), limited through `redis`.
    fn limited(redis: &str, limits: Limits) -> Router {
        limited_with(redis, limits, crate::config::DEFAULT_BODY_LIMIT)
    }

    fn limited_with(redis: &str, limits: Limits, body_limit: usize) -> Router {
        let mut config = GatewayConfig::local("http://127.0.0.1:1", "http://127.0.0.1:1", SECRET);
        config.upstream_timeout = Duration::from_secs(2);
        config.body_limit_bytes = body_limit;
        config.rate_limits = RateLimitConfig {
            enabled: true,
            redis: RedisTarget::Single(redis.to_owned()),
            prefix: format!("test:rl:{}:", uuid::Uuid::new_v4().simple()),
            timeout: Duration::from_secs(2),
            ..RateLimitConfig::off()
        };
        config.rate_limits.limits = limits;
        crate::router(&config).expect("router builds")
    }

    fn no_limits() -> Limits {
        let off = ScopeLimits {
            per_account: None,
            per_address: None,
        };
        Limits {
            signup: off,
            login: off,
            write: off,
            read: off,
            sse: off,
        }
    }

    struct Answer {
        status: StatusCode,
        retry_after: Option<u64>,
        body: Json,
    }

    async fn send(
        app: &Router,
        from: [u8; 4],
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Json>,
    ) -> Answer {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).expect("request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((from, 40000))));
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
        Answer {
            status,
            retry_after,
            body,
        }
    }

    fn assert_refused(answer: &Answer, words: &str) {
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            answer.body
        );
        assert_eq!(
            answer.body["code"], 8,
            "RESOURCE_EXHAUSTED: {}",
            answer.body
        );
        let message = answer.body["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(words), "{message:?} names {words:?}");
        let wait = answer.retry_after.expect("a Retry-After header");
        assert!(
            message.ends_with(&format!("retry in {wait} s")),
            "{message:?}"
        );
    }

    fn local_redis() -> String {
        marquee_infra::config::env_string("REDIS_URL", "redis://127.0.0.1:6379")
    }

    #[tokio::test]
    async fn reads_and_writes_are_limited_per_address_and_per_account() {
        let mut limits = no_limits();
        limits.read.per_address = per(2, 10);
        limits.write.per_account = per(1, 10);
        limits.sse.per_account = per(1, 10);
        let app = limited(&local_redis(), limits);
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;

        for _ in 0..2 {
            let answer = send(
                &app,
                [10, 0, 0, 1],
                Method::GET,
                "/v1/events/e-1",
                None,
                None,
            )
            .await;
            assert_eq!(answer.status, unavailable, "{}", answer.body);
        }
        let over = send(
            &app,
            [10, 0, 0, 1],
            Method::GET,
            "/v1/events/e-1",
            None,
            None,
        )
        .await;
        assert_refused(&over, "too many reads from this address");
        assert!((1..=5).contains(&over.retry_after.unwrap_or(0)));
        let other = send(
            &app,
            [10, 0, 0, 2],
            Method::GET,
            "/v1/events/e-1",
            None,
            None,
        )
        .await;
        assert_eq!(other.status, unavailable, "another address is unaffected");
        // The gateway's own routes are never limited.
        for _ in 0..4 {
            let health = send(&app, [10, 0, 0, 1], Method::GET, "/healthz", None, None).await;
            assert_eq!(health.status, StatusCode::OK);
        }

        let keys = TokenKeys::new(SECRET, chrono::Duration::minutes(5));
        let (ann, _) = keys.issue("acc-ann", "BUYER").expect("token");
        let (bob, _) = keys.issue("acc-bob", "BUYER").expect("token");
        let write = |from, token| send(&app, from, Method::POST, "/v1/bookings", Some(token), None);
        assert_eq!(write([10, 0, 0, 3], &ann).await.status, unavailable);
        // The account's limit holds from any address.
        assert_refused(
            &write([10, 0, 0, 4], &ann).await,
            "too many writes from this account",
        );
        assert_eq!(write([10, 0, 0, 3], &bob).await.status, unavailable);
        // SSE streams count for the account of `?access_token=` too (EventSource sends
        // no headers); the upstream is away, so an allowed stream answers 503.
        let watch = |from, query: String| {
            let uri = format!("/v1/bookings/b-1:watch{query}");
            let app = app.clone();
            async move { send(&app, from, Method::GET, &uri, None, None).await }
        };
        assert_eq!(
            watch([10, 0, 0, 5], format!("?access_token={ann}"))
                .await
                .status,
            unavailable
        );
        assert_refused(
            &watch([10, 0, 0, 6], format!("?access_token={ann}")).await,
            "too many new streams from this account",
        );
        assert_eq!(
            watch([10, 0, 0, 6], format!("?access_token={bob}"))
                .await
                .status,
            unavailable
        );
        // A token that does not verify counts for no account (the handler refuses it).
        let forged = TokenKeys::new("another-secret", chrono::Duration::minutes(5))
            .issue("acc-ann", "BUYER")
            .expect("token")
            .0;
        assert_eq!(
            write([10, 0, 0, 3], &forged).await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn log_ins_count_per_email_and_a_refusal_uses_up_nothing_of_the_other_limit() {
        let mut limits = no_limits();
        limits.login.per_account = per(2, 60);
        limits.login.per_address = per(3, 60);
        let app = limited(&local_redis(), limits);
        // An unknown field: transcoding refuses it with 400, so a 400 shows the body
        // reached the handler whole after the limiter read it.
        let log_in = |from, email: &str| {
            send(
                &app,
                from,
                Method::POST,
                "/v1/sessions",
                None,
                Some(serde_json::json!({"email": email, "password": "pw", "bogus": 1})),
            )
        };
        assert_eq!(
            log_in([10, 0, 1, 1], "ann@example.com").await.status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            log_in([10, 0, 1, 1], "Ann@Example.com").await.status,
            StatusCode::BAD_REQUEST
        );
        // The email's limit, from the same address and from another.
        assert_refused(
            &log_in([10, 0, 1, 1], " ANN@example.com").await,
            "too many log-in attempts from this account",
        );
        assert_refused(
            &log_in([10, 0, 1, 2], "ann@example.com").await,
            "too many log-in attempts from this account",
        );
        // The refusals took nothing of the address's 3: one more email gets in.
        assert_eq!(
            log_in([10, 0, 1, 1], "bob@example.com").await.status,
            StatusCode::BAD_REQUEST
        );
        // Now the address is over, whatever the email.
        assert_refused(
            &log_in([10, 0, 1, 1], "cat@example.com").await,
            "too many log-in attempts from this address",
        );
        // And that refusal took nothing of cat's 2.
        assert_eq!(
            log_in([10, 0, 1, 3], "cat@example.com").await.status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            log_in([10, 0, 1, 3], "cat@example.com").await.status,
            StatusCode::BAD_REQUEST
        );
        assert_refused(
            &log_in([10, 0, 1, 3], "cat@example.com").await,
            "too many log-in attempts from this account",
        );
    }

    #[tokio::test]
    async fn a_log_in_body_over_the_limit_is_413_as_without_limits() {
        let mut limits = no_limits();
        limits.login.per_account = per(5, 60);
        let app = limited_with(&local_redis(), limits, 64);
        let big = serde_json::json!({"email": "ann@example.com", "password": "x".repeat(100)});
        let answer = send(
            &app,
            [10, 0, 3, 1],
            Method::POST,
            "/v1/sessions",
            None,
            Some(big),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            answer.body
        );
        assert_eq!(answer.body["code"], 3, "{}", answer.body);
        let small = serde_json::json!({"email": "ann@example.com", "password": "x"});
        let answer = send(
            &app,
            [10, 0, 3, 1],
            Method::POST,
            "/v1/sessions",
            None,
            Some(small),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.body
        );
    }

    #[tokio::test]
    async fn without_redis_requests_go_through_and_the_failure_is_counted() {
        let mut limits = no_limits();
        limits.read.per_address = per(1, 60);
        // Nothing listens on port 1.
        let app = limited("redis://127.0.0.1:1", limits);
        for _ in 0..3 {
            let answer = send(
                &app,
                [10, 0, 2, 1],
                Method::GET,
                "/v1/events/e-1",
                None,
                None,
            )
            .await;
            assert_eq!(
                answer.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                answer.body
            );
            assert_eq!(
                answer.body["code"], 14,
                "the upstream's 503, not the limiter's"
            );
        }
        let text = marquee_infra::metrics::prometheus().render();
        assert!(text.contains("rate_limit_errors_total"), "{text}");
    }

    #[tokio::test]
    async fn the_configured_limits_are_gauges() {
        let mut limits = no_limits();
        limits.sse.per_account = per(7, 60);
        let _app = limited(&local_redis(), limits);
        let text = marquee_infra::metrics::prometheus().render();
        assert!(
            text.lines()
                .any(|l| l.starts_with("rate_limit_period_seconds{")
                    && l.contains(r#"class="sse""#)
                    && l.contains(r#"scope="account""#)
                    && l.ends_with(" 60")),
            "{text}"
        );
        assert!(text.contains("rate_limit_requests{"), "{text}");
    }

    #[test]
    fn the_debug_form_shows_no_redis_url() {
        let mut config = RateLimitConfig::off();
        config.redis = RedisTarget::Single("redis://:hunter2@redis:6379".to_owned());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
