//! The whole system in one process for the end-to-end tests and the benchmarks:
//! pay-svc, booking-svc, realtime-svc and the gateway on ephemeral ports, each system
//! with its own databases, Redis key prefix and RabbitMQ exchange/queue names, against
//! the real local services.

use std::time::Duration;

use marquee_infra::auth::JwtConfig;
use marquee_infra::bus::{Bus, BusConfig};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-for-marquee";
/// The password of every account the tests sign up.
pub const PASSWORD: &str = "correct horse battery";

/// A seller made by [`System::seller`]: its session has the second factor.
#[derive(Debug, Clone)]
pub struct Seller {
    pub account_id: String,
    pub email: String,
    /// A session created with a TOTP code.
    pub token: String,
    /// Its authenticator app (for more codes).
    pub authenticator: marquee_testkit::totp::Authenticator,
    /// The ten recovery codes the confirmation answered.
    pub recovery_codes: Vec<String>,
}

use crate::split;
use marquee_infra::redis_conn::RedisTarget;
use marquee_testkit::psp::Sandbox;
use marquee_testkit::{Reply, amqp_url, delete_redis_keys_in, pg_base, redis_url, serve};

#[derive(Debug, Clone)]
pub struct Options {
    pub hold_ttl: Duration,
    pub booking_connections: u32,
    pub pay_connections: u32,
    pub argon2_memory_kib: u32,
    /// realtime-svc replicas; the gateway streams from the first.
    pub realtime_replicas: usize,
    /// Events an SSE client may be behind before the gateway disconnects it.
    pub sse_client_buffer: usize,
    /// realtime-svc's wait for a missing seat version before it re-reads the snapshot.
    pub realtime_gap_timeout: Duration,
    /// Seat changes realtime-svc keeps per event for `Last-Event-ID` resumes.
    pub realtime_resume_buffer: usize,
    /// Where the services find Redis: the local one by default, a real Redis Cluster
    /// in the cluster tests (`marquee_testkit::redis_cluster`).
    pub redis: Option<RedisTarget>,
    /// Where booking-svc alone finds Redis (a delaying proxy in fault tests); `redis`
    /// by default.
    pub booking_redis_url: Option<String>,
    /// booking-svc's Redis command timeout.
    pub redis_response_timeout: Duration,
    /// How long a claimed hold may go without its booking.
    pub checkout_grace: Duration,
    /// Every service's token settings; [`JWT_SECRET`] under the default key id.
    pub jwt: JwtConfig,
    /// Whether booking-svc and pay-svc migrate on start (true). When false the system
    /// starts as a Kubernetes deploy does: each database is first migrated by its
    /// service's `migrate` mode (`booking_svc::migrate`, `pay_svc::migrate`), then the
    /// services start with `MIGRATE_ON_START=false`.
    pub migrate_on_start: bool,
    /// booking-svc's `PAYMENT_DEADLINE_MS`: a booking unpaid this long is cancelled.
    pub payment_deadline: Duration,
    /// When the sandbox PSP answers `tok_slow` (its `PSP_SLOW_MS`).
    pub psp_slow: Duration,
    /// How long pay-svc waits for the PSP before the outcome is unknown (`PSP_TIMEOUT_MS`).
    pub psp_timeout: Duration,
    /// The gateway's rate limits (`e2e/tests/rate_limits.rs`), counted in the system's
    /// Redis under its prefix; `None` (the default) turns them off, as tests and
    /// benchmarks send everything from 127.0.0.1.
    pub gateway_rate_limits: Option<marquee_gateway::ratelimit::Limits>,
    /// booking-svc's `TWO_FACTOR_LOCKOUT_SECS`: how long five wrong codes lock an account.
    pub two_factor_lockout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            hold_ttl: Duration::from_secs(300),
            booking_connections: 10,
            pay_connections: 6,
            argon2_memory_kib: 1024,
            realtime_replicas: 1,
            sse_client_buffer: 256,
            realtime_gap_timeout: Duration::from_millis(500),
            realtime_resume_buffer: 4096,
            redis: None,
            booking_redis_url: None,
            redis_response_timeout: Duration::from_secs(2),
            checkout_grace: Duration::from_secs(15),
            jwt: JwtConfig::new(JWT_SECRET),
            migrate_on_start: true,
            payment_deadline: Duration::from_secs(300),
            psp_slow: Duration::from_millis(1500),
            psp_timeout: Duration::from_millis(500),
            gateway_rate_limits: None,
            two_factor_lockout: Duration::from_secs(900),
        }
    }
}

pub struct System {
    pub base: String,
    pub http: reqwest::Client,
    pub booking_pool: PgPool,
    pub pay_pool: PgPool,
    /// A bus handle with the system's prefix, to inject messages as the services would.
    pub bus: Bus,
    booking_db: String,
    pay_db: String,
    pub redis_prefix: String,
    /// The Redis the services use.
    pub redis: RedisTarget,
    /// Prefix of every bus name and connection name of this system.
    pub bus_prefix: String,
    /// gRPC ports of the realtime-svc replicas.
    pub realtime_ports: Vec<u16>,
    pub booking_port: u16,
    pub pay_port: u16,
    /// The sandbox payment provider pay-svc charges cards through.
    pub psp: Sandbox,
    /// How booking-svc was configured (a restart binds the same port); `None` when the
    /// system runs in another process ([`crate::split`]).
    booking_config: Option<booking_svc::BookingConfig>,
    /// Stops booking-svc alone (its SIGTERM); a child of `shutdown`.
    booking_stop: CancellationToken,
    booking_task: Option<tokio::task::JoinHandle<()>>,
    gateway_stop: CancellationToken,
    gateway_task: Option<tokio::task::JoinHandle<()>>,
    /// How the gateway was configured, for more replicas ([`System::gateway_replica`]);
    /// `None` when the system runs in another process.
    gateway_config: Option<marquee_gateway::GatewayConfig>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The process the system runs in, under a split benchmark ([`crate::split`]), and
    /// its Prometheus endpoint.
    child: Option<(tokio::process::Child, String)>,
}

impl System {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts the system in this process; or, in a benchmark run with `BENCH_SPLIT`, in
    /// a child process pinned to its own cores, this one then attaching to it
    /// ([`crate::split`]).
    pub async fn start_with(options: Options) -> Self {
        let child_id = split::child_system_id();
        if child_id.is_none()
            && let Some(cores) = split::Cores::requested()
        {
            return Self::start_split(options, &cores).await;
        }
        let id = child_id.unwrap_or_else(|| Uuid::new_v4().simple().to_string());
        let Names {
            booking_db,
            pay_db,
            prefix,
            redis_prefix,
        } = Names::of(&id);
        let redis = options
            .redis
            .clone()
            .unwrap_or_else(|| RedisTarget::Single(redis_url()));
        let in_child = split::child_system_id().is_some();
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let psp = Sandbox::start(options.psp_slow).await;
        let pay_config = pay_svc::PayConfig {
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: None,
            database_url: pay_db.clone(),
            db_max_connections: options.pay_connections,
            migrate_on_start: options.migrate_on_start,
            bus: BusConfig::new(amqp_url(), prefix.clone()).named(format!("{prefix}pay-svc")),
            consumer_concurrency: 16,
            jwt: options.jwt.clone(),
            welcome_credit_minor: crate::WELCOME_CREDIT_MINOR,
            psp: pay_svc::PspConfig {
                url: psp.url(),
                secret_key: marquee_testkit::psp::SECRET_KEY.into(),
                timeout: options.psp_timeout,
                max_confirms: 3,
                resolve_interval: Duration::from_millis(100),
            },
        };
        if !options.migrate_on_start {
            pay_svc::migrate(&pay_svc::MigrateConfig {
                database_url: pay_db.clone(),
            })
            .await
            .expect("pay-svc migrate");
        }
        let pay = pay_svc::Application::build(pay_config)
            .await
            .expect("pay-svc starts");
        let pay_port = pay.port();
        // The tests assert on stored rows through sqlx, on the same pool sea-orm uses.
        let pay_pool = pay.pool().get_postgres_connection_pool().clone();
        serve(
            &mut tasks,
            "pay-svc",
            pay.run_with_shutdown(stop.clone().cancelled_owned()),
        );

        let booking_config = booking_svc::BookingConfig {
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: None,
            database_url: booking_db.clone(),
            db_max_connections: options.booking_connections,
            migrate_on_start: options.migrate_on_start,
            redis: match &options.booking_redis_url {
                Some(url) => RedisTarget::Single(url.clone()),
                None => redis.clone(),
            },
            redis_prefix: redis_prefix.clone(),
            redis_timeouts: booking_svc::holds::RedisTimeouts {
                response: options.redis_response_timeout,
                connect: Duration::from_secs(1),
            },
            bus: BusConfig::new(amqp_url(), prefix.clone()).named(format!("{prefix}booking-svc")),
            pay_url: format!("http://127.0.0.1:{pay_port}"),
            jwt: options.jwt.clone(),
            token_ttl_minutes: 60,
            hold_ttl: options.hold_ttl,
            checkout_grace: options.checkout_grace,
            payment_deadline: options.payment_deadline,
            sweep_interval: Duration::from_millis(100),
            default_max_seats: 4,
            argon2_memory_kib: options.argon2_memory_kib,
            queue_tick: Duration::from_millis(50),
            two_factor_lockout: options.two_factor_lockout,
        };
        if !options.migrate_on_start {
            booking_svc::migrate(&booking_svc::MigrateConfig {
                database_url: booking_db.clone(),
            })
            .await
            .expect("booking-svc migrate");
        }
        let booking = booking_svc::Application::build(booking_config.clone())
            .await
            .expect("booking-svc starts");
        let booking_port = booking.port();
        let booking_pool = booking.pool().get_postgres_connection_pool().clone();
        let booking_stop = stop.child_token();
        let mut booking_tasks = Vec::new();
        serve(
            &mut booking_tasks,
            "booking-svc",
            booking.run_with_shutdown(booking_stop.clone().cancelled_owned()),
        );

        let mut realtime_ports = Vec::new();
        for replica in 0..options.realtime_replicas.max(1) {
            let mut config = realtime_svc::RealtimeConfig::local(
                format!("http://127.0.0.1:{booking_port}"),
                BusConfig::new(amqp_url(), prefix.clone())
                    .named(format!("{prefix}realtime-svc-{replica}")),
                options.jwt.clone(),
            );
            config.gap_timeout = options.realtime_gap_timeout;
            config.resume_buffer = options.realtime_resume_buffer;
            let realtime = realtime_svc::Application::build(config)
                .await
                .expect("realtime-svc starts");
            realtime_ports.push(realtime.port());
            serve(
                &mut tasks,
                "realtime-svc",
                realtime.run_with_shutdown(stop.clone().cancelled_owned()),
            );
        }

        let mut gateway_config = marquee_gateway::GatewayConfig::local(
            format!("http://127.0.0.1:{booking_port}"),
            format!("http://127.0.0.1:{pay_port}"),
            options.jwt.clone(),
        );
        gateway_config.realtime_url = format!("http://127.0.0.1:{}", realtime_ports[0]);
        gateway_config.sse_client_buffer = options.sse_client_buffer;
        if in_child {
            // The generator reads the server-side figures here.
            gateway_config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        if let Some(limits) = options.gateway_rate_limits {
            gateway_config.rate_limits = marquee_gateway::ratelimit::RateLimitConfig {
                enabled: true,
                redis: redis.clone(),
                prefix: format!("{redis_prefix}rl:"),
                // Generous: a check that outwaits it lets the request through, which
                // would make a test of the limits flaky on a busy machine.
                timeout: Duration::from_secs(2),
                trusted_proxy_hops: 0,
                limits,
            };
        }
        let gateway = marquee_gateway::Application::build(gateway_config.clone())
            .await
            .expect("gateway starts");
        let base = format!("http://127.0.0.1:{}", gateway.port());
        let metrics_url = gateway
            .metrics_port()
            .map(|port| format!("http://127.0.0.1:{port}/metrics"));
        let gateway_stop = stop.child_token();
        let mut gateway_tasks = Vec::new();
        serve(
            &mut gateway_tasks,
            "gateway",
            gateway.run_with_shutdown(gateway_stop.clone().cancelled_owned()),
        );

        let bus_prefix = prefix.clone();
        let bus = Bus::connect(
            BusConfig::new(amqp_url(), prefix.clone()).named(format!("{prefix}test")),
            Duration::from_secs(10),
        )
        .await
        .expect("test bus");
        let http = http_client();
        let sys = Self {
            base,
            http,
            booking_pool,
            pay_pool,
            bus,
            bus_prefix,
            realtime_ports,
            booking_port,
            pay_port,
            psp,
            booking_config: Some(booking_config),
            booking_stop,
            booking_task: booking_tasks.pop(),
            gateway_stop,
            gateway_task: gateway_tasks.pop(),
            gateway_config: Some(gateway_config),
            booking_db,
            pay_db,
            redis_prefix,
            redis,
            shutdown: stop,
            tasks,
            child: None,
        };
        if in_child {
            let ready = split::Ready {
                base: sys.base.clone(),
                booking_port: sys.booking_port,
                pay_port: sys.pay_port,
                realtime_ports: sys.realtime_ports.clone(),
                psp_url: sys.psp.url(),
                metrics_url: metrics_url.expect("the gateway's metrics listener"),
            };
            split::serve_as_child(sys, ready).await
        }
        sys
    }

    /// The generator's side of a split benchmark: the system starts in a child process
    /// under the same options; this one attaches to it by its names and ports.
    async fn start_split(options: Options, cores: &split::Cores) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let (child, ready) = split::spawn_system(&id, cores).await;
        let Names {
            booking_db,
            pay_db,
            prefix,
            redis_prefix,
        } = Names::of(&id);
        let pool = |url: String| async move {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect(&url)
                .await
                .unwrap_or_else(|e| panic!("connecting to the system's database: {e}"))
        };
        let booking_pool = pool(booking_db.clone()).await;
        let pay_pool = pool(pay_db.clone()).await;
        let bus = Bus::connect(
            BusConfig::new(amqp_url(), prefix.clone()).named(format!("{prefix}generator")),
            Duration::from_secs(10),
        )
        .await
        .expect("generator bus");
        let psp_addr = ready
            .psp_url
            .trim_start_matches("http://")
            .parse()
            .expect("the sandbox's address");
        Self {
            base: ready.base,
            http: http_client(),
            booking_pool,
            pay_pool,
            bus,
            bus_prefix: prefix,
            realtime_ports: ready.realtime_ports,
            booking_port: ready.booking_port,
            pay_port: ready.pay_port,
            psp: Sandbox::attach(psp_addr, options.psp_slow),
            booking_config: None,
            booking_stop: CancellationToken::new(),
            booking_task: None,
            gateway_stop: CancellationToken::new(),
            gateway_task: None,
            gateway_config: None,
            booking_db,
            pay_db,
            redis_prefix,
            redis: options
                .redis
                .unwrap_or_else(|| RedisTarget::Single(redis_url())),
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
            child: Some((child, ready.metrics_url)),
        }
    }

    /// The process the services run in: this one, or the child of a split benchmark.
    pub fn server_pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|(child, _)| child.id())
            .unwrap_or_else(std::process::id)
    }

    /// Whether the services run in another process ([`crate::split`]).
    pub fn is_split(&self) -> bool {
        self.child.is_some()
    }

    /// The services' Prometheus metrics as text, from whichever process runs them.
    pub async fn server_metrics(&self) -> String {
        match &self.child {
            Some((_, url)) => match self.http.get(url).send().await {
                Ok(reply) => reply.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            },
            None => marquee_infra::metrics::prometheus().render(),
        }
    }

    /// Stops every service and removes the test's databases, queues and exchanges.
    pub async fn stop(mut self) {
        if let Some((child, _)) = self.child.take() {
            // The child stops its services and removes what they made.
            self.bus.shutdown();
            self.booking_pool.close().await;
            self.pay_pool.close().await;
            split::stop_child(child).await;
            return;
        }
        self.shutdown.cancel();
        for task in self
            .tasks
            .drain(..)
            .chain(self.booking_task.take())
            .chain(self.gateway_task.take())
        {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let _ = self
            .bus
            .delete_topology(&["booking.payment-results", "pay.payment-requests"])
            .await;
        self.bus.shutdown();
        self.booking_pool.close().await;
        self.pay_pool.close().await;
        let _ = delete_redis_keys_in(&self.redis, &self.redis_prefix).await;
        let _ = marquee_infra::db::drop_database(&self.booking_db).await;
        let _ = marquee_infra::db::drop_database(&self.pay_db).await;
        self.psp.stop_for_good().await;
    }

    /// Stops the system like [`System::stop`], and says whether every service (gateway
    /// included) finished its drain within `bound`, e.g. with streams still open.
    pub async fn stopped_within(mut self, bound: Duration) -> bool {
        self.shutdown.cancel();
        let tasks: Vec<_> = self
            .tasks
            .drain(..)
            .chain(self.booking_task.take())
            .chain(self.gateway_task.take())
            .collect();
        let deadline = tokio::time::Instant::now() + bound;
        let mut finished = true;
        for task in tasks {
            finished &= tokio::time::timeout_at(deadline, task).await.is_ok();
        }
        self.stop().await;
        finished
    }

    /// Sends the gateway alone its shutdown signal (what SIGTERM does) and says whether
    /// it finished draining within `bound`; the services behind it keep running.
    pub async fn gateway_stopped_within(&mut self, bound: Duration) -> bool {
        self.gateway_stop.cancel();
        match self.gateway_task.take() {
            Some(task) => tokio::time::timeout(bound, task).await.is_ok(),
            None => true,
        }
    }

    /// Starts another gateway replica in front of the same services, with the same
    /// settings (so the same rate limits, counted in the same Redis keys), and its
    /// internal `/metrics` listener; it stops with the system.
    pub async fn gateway_replica(&mut self) -> GatewayReplica {
        let mut config = self
            .gateway_config
            .clone()
            .expect("more gateway replicas of an in-process system");
        config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let gateway = marquee_gateway::Application::build(config)
            .await
            .expect("gateway replica starts");
        let replica = GatewayReplica {
            base: format!("http://127.0.0.1:{}", gateway.port()),
            metrics_url: gateway
                .metrics_port()
                .map(|port| format!("http://127.0.0.1:{port}/metrics")),
        };
        serve(
            &mut self.tasks,
            "gateway replica",
            gateway.run_with_shutdown(self.shutdown.clone().cancelled_owned()),
        );
        replica
    }

    /// Sends booking-svc its shutdown signal (what SIGTERM does) and returns at once;
    /// [`System::booking_stopped`] waits for it to finish draining.
    pub fn signal_booking(&self) {
        self.booking_stop.cancel();
    }

    /// Waits (up to 30 s) until booking-svc has drained and stopped.
    pub async fn booking_stopped(&mut self) {
        if let Some(task) = self.booking_task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("booking-svc stops within 30 s")
                .expect("booking-svc stopped without failing");
        }
    }

    /// Starts booking-svc again, as after a deploy: same database, Redis prefix, bus
    /// names and port (the gateway and realtime-svc reconnect by themselves).
    pub async fn restart_booking(&mut self) {
        self.booking_stopped().await;
        let mut config = self
            .booking_config
            .clone()
            .expect("restarting booking-svc of an in-process system");
        config.grpc_addr = format!("127.0.0.1:{}", self.booking_port)
            .parse()
            .expect("addr");
        let booking = booking_svc::Application::build(config)
            .await
            .expect("booking-svc restarts");
        self.booking_stop = self.shutdown.child_token();
        let mut tasks = Vec::new();
        serve(
            &mut tasks,
            "booking-svc",
            booking.run_with_shutdown(self.booking_stop.clone().cancelled_owned()),
        );
        self.booking_task = tasks.pop();
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-JSON body for {path}: {text}"))
        };
        Reply { status, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(reqwest::Method::GET, path, token, None, &[])
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(reqwest::Method::POST, path, token, Some(body), &[])
            .await
    }

    /// Signs up, logs in and waits (up to 10 s) until the account's wallet is open;
    /// returns (account id, token). A SELLER is made by [`System::seller`], so its
    /// token has the second factor and can sell.
    pub async fn account(&self, role: &str) -> (String, String) {
        if role == "SELLER" {
            let seller = self.seller().await;
            return (seller.account_id, seller.token);
        }
        let (account_id, email) = self.sign_up(role).await;
        let session = self
            .post(
                "/v1/sessions",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(session.status, 201, "log-in: {:?}", session.body);
        let token = session.str("/accessToken");
        self.await_wallet(&token).await;
        (account_id, token)
    }

    /// Signs up an account with `role` and [`PASSWORD`]: (account id, email).
    pub async fn sign_up(&self, role: &str) -> (String, String) {
        let email = format!(
            "{}-{}@example.com",
            role.to_lowercase(),
            Uuid::new_v4().simple()
        );
        let signed = self
            .post(
                "/v1/accounts",
                None,
                json!({"email": email, "password": PASSWORD, "displayName": "Test", "role": role}),
            )
            .await;
        assert_eq!(signed.status, 201, "sign-up: {:?}", signed.body);
        (signed.str("/accountId"), email)
    }

    /// Waits until pay-svc opened the wallet of the account of `token` (it does when it
    /// consumes the sign-up's account.opened).
    pub async fn await_wallet(&self, token: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let wallet = self.get("/v1/wallet", Some(token)).await;
            if wallet.status == 200 {
                break;
            }
            assert!(
                wallet.status == 404 && tokio::time::Instant::now() < deadline,
                "wallet of a new account: {} {:?}",
                wallet.status,
                wallet.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A SELLER that can sell: signed up, logged in with the password, enrolled a TOTP
    /// authenticator and confirmed it, then logged in again with a code (a session with
    /// the second factor, which selling routes need).
    pub async fn seller(&self) -> Seller {
        let (account_id, email) = self.sign_up("SELLER").await;
        let first = self
            .post(
                "/v1/sessions",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(first.status, 201, "log-in: {:?}", first.body);
        let password_only = first.str("/accessToken");
        let (mut authenticator, recovery_codes) = self.enroll_two_factor(&password_only).await;
        let code = authenticator.next_code().await;
        let session = self.log_in(&email, json!({"code": code})).await;
        assert_eq!(
            session.status, 201,
            "log-in with a code: {:?}",
            session.body
        );
        assert_eq!(session.body["twoFactor"], json!(true), "{:?}", session.body);
        let token = session.str("/accessToken");
        self.await_wallet(&token).await;
        Seller {
            account_id,
            email,
            token,
            authenticator,
            recovery_codes,
        }
    }

    /// Enrolls and confirms a TOTP authenticator for the account of `token`: the
    /// authenticator (which gave the confirmation's code) and the recovery codes.
    pub async fn enroll_two_factor(
        &self,
        token: &str,
    ) -> (marquee_testkit::totp::Authenticator, Vec<String>) {
        let enrolled = self.post("/v1/me/two-factor", Some(token), json!({})).await;
        assert_eq!(enrolled.status, 201, "enrol: {:?}", enrolled.body);
        let mut authenticator = marquee_testkit::totp::Authenticator::new(enrolled.str("/secret"));
        let code = authenticator.next_code().await;
        let confirmed = self
            .post(
                "/v1/me/two-factor:confirm",
                Some(token),
                json!({"code": code}),
            )
            .await;
        assert_eq!(confirmed.status, 200, "confirm: {:?}", confirmed.body);
        let codes = confirmed.body["recoveryCodes"]
            .as_array()
            .expect("recovery codes")
            .iter()
            .map(|c| c.as_str().expect("code").to_owned())
            .collect();
        (authenticator, codes)
    }

    /// `POST /v1/sessions` with [`PASSWORD`] and `extra` fields (`code`, `recoveryCode`).
    pub async fn log_in(&self, email: &str, extra: Value) -> Reply {
        let mut body = json!({"email": email, "password": PASSWORD});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        self.post("/v1/sessions", None, body).await
    }

    /// Creates an event on sale now with `sections` of (name, price, rows, seats per row).
    pub async fn event(
        &self,
        seller_token: &str,
        sections: &[(&str, i64, usize, usize)],
        max_per_buyer: i32,
    ) -> Value {
        let starts = chrono::Utc::now() + chrono::Duration::days(30);
        let sections: Vec<Value> = sections
            .iter()
            .enumerate()
            .map(|(si, (name, price, rows, per_row))| {
                json!({
                    "name": name,
                    "price": {"amountMinor": price.to_string(), "currency": "KRW"},
                    "rows": (0..*rows).map(|r| json!({
                        "label": format!("{}", (b'A' + r as u8) as char),
                        "seats": (0..*per_row).map(|n| json!({
                            "number": (n + 1).to_string(),
                            "x": (n as f64) * 10.0,
                            "y": (si * 100 + r * 10) as f64,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let created = self
            .post(
                "/v1/events",
                Some(seller_token),
                json!({
                    "title": "Flash Sale Live",
                    "category": "CONCERT",
                    "description": "test event",
                    "venue": "Olympic Hall",
                    "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "sections": sections,
                    "maxSeatsPerBuyer": max_per_buyer,
                }),
            )
            .await;
        assert_eq!(created.status, 201, "create event: {:?}", created.body);
        created.body
    }

    /// The ids of an event's seats, in layout order.
    pub async fn seat_ids(&self, event_id: &str) -> Vec<String> {
        self.seats(event_id)
            .await
            .into_iter()
            .map(|s| s.0)
            .collect()
    }

    /// Every seat of an event as (seat id, status, price).
    pub async fn seats(&self, event_id: &str) -> Vec<(String, String, i64)> {
        let seats = self
            .get(&format!("/v1/events/{event_id}/seats"), None)
            .await;
        assert_eq!(seats.status, 200, "{:?}", seats.body);
        seats.body["seats"]
            .as_array()
            .expect("seats array")
            .iter()
            .map(|s| {
                (
                    s["seatId"].as_str().unwrap_or_default().to_owned(),
                    s["status"].as_str().unwrap_or_default().to_owned(),
                    s["price"]["amountMinor"]
                        .as_str()
                        .unwrap_or("0")
                        .parse()
                        .unwrap_or(0),
                )
            })
            .collect()
    }

    /// Polls a booking until it reaches `status` (panics after 15 s).
    pub async fn await_booking(&self, token: &str, booking_id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let booking = self
                .get(&format!("/v1/bookings/{booking_id}"), Some(token))
                .await;
            assert_eq!(booking.status, 200, "{:?}", booking.body);
            if booking.str("/status") == status {
                return booking.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "booking {booking_id} stuck in {} waiting for {status}",
                booking.str("/status")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A seller with an event on sale now (see [`System::event`]): (seller token, event id).
    pub async fn seller_event(
        &self,
        sections: &[(&str, i64, usize, usize)],
        max_per_buyer: i32,
    ) -> (String, String) {
        let (_, seller) = self.account("SELLER").await;
        let event = self.event(&seller, sections, max_per_buyer).await;
        let event_id = event["eventId"].as_str().expect("event id").to_owned();
        (seller, event_id)
    }

    /// `n` buyers inserted straight into the booking database (no password works for
    /// them) with tokens minted for them: a benchmark's crowd, set up in seconds.
    /// Returns their tokens; `label` starts their emails.
    pub async fn bulk_buyers(&self, n: usize, label: &str) -> Vec<String> {
        let keys = marquee_infra::auth::TokenKeys::new(JWT_SECRET, chrono::Duration::hours(1));
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
        for chunk in ids.chunks(5000) {
            let emails: Vec<String> = chunk
                .iter()
                .map(|id| format!("{label}-{}@example.com", id.simple()))
                .collect();
            sqlx::query(
                "INSERT INTO accounts (id, email, password_hash, display_name, role)
                 SELECT u.id, u.email, 'not-a-password-hash', 'Bench Buyer', 'BUYER'
                 FROM UNNEST($1::uuid[], $2::text[]) AS u(id, email)",
            )
            .bind(chunk)
            .bind(&emails)
            .execute(&self.booking_pool)
            .await
            .expect("bulk insert buyers");
        }
        ids.iter()
            .map(|id| keys.issue(&id.to_string(), "BUYER").expect("token").0)
            .collect()
    }

    /// `POST /v1/events/{event}/holds` for `seats`.
    pub async fn hold(&self, token: &str, event_id: &str, seats: &[String]) -> Reply {
        self.post(
            &format!("/v1/events/{event_id}/holds"),
            Some(token),
            json!({ "seatIds": seats }),
        )
        .await
    }

    /// `POST /v1/bookings` for a hold, paying with the wallet, under `key`.
    pub async fn checkout(&self, token: &str, hold_id: &str, key: &str) -> Reply {
        self.call(
            reqwest::Method::POST,
            "/v1/bookings",
            Some(token),
            Some(json!({"holdId": hold_id, "paymentMethod": "WALLET"})),
            &[("Idempotency-Key", key)],
        )
        .await
    }

    pub async fn balance(&self, token: &str) -> i64 {
        let wallet = self.get("/v1/wallet", Some(token)).await;
        assert_eq!(wallet.status, 200, "{:?}", wallet.body);
        wallet.str("/balance/amountMinor").parse().expect("balance")
    }

    /// An ADMIN: signs up (as a buyer: sign-up never makes admins), is granted the
    /// role by the operator command's library function (`booking-svc grant-admin`) on
    /// this system's booking database, and logs in again for a token carrying it.
    /// Returns (account id, token).
    pub async fn admin(&self) -> (String, String) {
        let email = format!("admin-{}@example.com", Uuid::new_v4().simple());
        let password = "correct horse battery";
        let signed = self
            .post(
                "/v1/accounts",
                None,
                json!({"email": email, "password": password, "displayName": "Admin", "role": "BUYER"}),
            )
            .await;
        assert_eq!(signed.status, 201, "sign-up: {:?}", signed.body);
        booking_svc::grant_admin(
            &booking_svc::MigrateConfig {
                database_url: self.booking_db.clone(),
            },
            &email,
        )
        .await
        .expect("grant-admin");
        let session = self
            .post(
                "/v1/sessions",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(session.status, 201, "log-in: {:?}", session.body);
        assert_eq!(session.str("/account/role"), "ADMIN", "{:?}", session.body);
        (signed.str("/accountId"), session.str("/accessToken"))
    }
}

/// A second gateway replica of a [`System`] ([`System::gateway_replica`]).
#[derive(Debug, Clone)]
/// The names a system with id `id` uses: its databases, bus prefix and Redis prefix.
struct Names {
    booking_db: String,
    pay_db: String,
    prefix: String,
    redis_prefix: String,
}

impl Names {
    fn of(id: &str) -> Self {
        Self {
            booking_db: format!("{}/test_booking_{id}", pg_base()),
            pay_db: format!("{}/test_pay_{id}", pg_base()),
            prefix: format!("test.{id}."),
            redis_prefix: format!("test:{id}:"),
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(512)
        .build()
        .expect("http client")
}

pub struct GatewayReplica {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its internal Prometheus endpoint.
    pub metrics_url: Option<String>,
}

/// One Server-Sent Event as a client sees it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    /// `message` when the event named none.
    pub event: String,
    pub data: Value,
}

impl SseEvent {
    pub fn version(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("event without a numeric id: {self:?}"))
    }
}

/// An open `text/event-stream` response, read event by event.
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    /// Keep-alive comments seen so far.
    pub comments: usize,
    pub ended: bool,
}

impl SseStream {
    /// The next event, or `None` when none arrives within `within` or the stream ended.
    pub async fn next_within(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                let mut fields = 0;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    fields += 1;
                    match name {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = value.to_owned(),
                        "data" => data.push_str(value),
                        _ => {}
                    }
                }
                if fields == 0 {
                    continue;
                }
                event.data = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                return Some(event);
            }
            if self.ended {
                return None;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// Fails the test if an event arrives within `within`, or if the stream ends: the
    /// stream is open and has nothing to say.
    pub async fn assert_quiet(&mut self, within: Duration) {
        let event = self.next_within(within).await;
        assert!(event.is_none(), "unexpected event {event:?}");
        assert!(!self.ended, "the stream ended");
    }

    /// The next event, failing the test if none comes within 5 s.
    pub async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("an sse event within 5 s")
    }
}

impl System {
    /// An SSE request that must be refused: its JSON error reply.
    pub async fn sse_refused(&self, path: &str, token: Option<&str>, last: Option<&str>) -> Reply {
        match self.sse(path, token, last).await {
            Ok(_) => panic!("{path} opened a stream; it must be refused"),
            Err(reply) => reply,
        }
    }

    /// Opens an SSE stream; `Err` carries a non-200 reply.
    pub async fn sse(
        &self,
        path: &str,
        token: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<SseStream, Reply> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", "text/event-stream")
            .timeout(Duration::from_secs(3600));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.expect("sse request sent");
        let status = response.status().as_u16();
        if status != 200 {
            let text = response.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-JSON error body for {path}: {text}"));
            return Err(Reply { status, body });
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content-type {content_type}"
        );
        Ok(SseStream {
            response,
            buffer: String::new(),
            comments: 0,
            ended: false,
        })
    }
}

/// The creation request of a benchmark event of `seats` seats: up to four price tiers
/// of rows of `per_row` seats.
pub fn event_body(title: &str, seats: usize, per_row: usize) -> Value {
    const SECTIONS: [(&str, i64); 4] =
        [("VIP", 40_000), ("R", 30_000), ("S", 20_000), ("A", 10_000)];
    let rows = seats.div_ceil(per_row);
    let sections = SECTIONS.len().min(rows);
    let starts = chrono::Utc::now() + chrono::Duration::days(30);
    let mut remaining = seats;
    let mut row_no = 0usize;
    let sections: Vec<Value> = (0..sections)
        .map(|si| {
            // Rows split as evenly as possible between sections.
            let section_rows = rows / sections + usize::from(si < rows % sections);
            let (name, price) = SECTIONS[si];
            let rows: Vec<Value> = (0..section_rows)
                .map(|_| {
                    row_no += 1;
                    let n = remaining.min(per_row);
                    remaining -= n;
                    json!({
                        "label": row_no.to_string(),
                        "seats": (1..=n).map(|k| json!({
                            "number": k.to_string(),
                            "x": k * 10,
                            "y": row_no * 10,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "name": name,
                "price": {"amountMinor": price.to_string(), "currency": "KRW"},
                "rows": rows,
            })
        })
        .collect();
    assert_eq!(remaining, 0);
    json!({
        "title": title,
        "category": "CONCERT",
        "description": "benchmark event",
        "venue": "Olympic Hall",
        "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "sections": sections,
        "maxSeatsPerBuyer": 4,
    })
}
