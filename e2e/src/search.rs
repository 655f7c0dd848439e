//! Discovery end to end: booking-svc, search-svc and the gateway in process, each
//! system with its own database, Redis key prefix and bus names, against the real local
//! PostgreSQL, Redis and RabbitMQ. Events are created through the gateway and reach
//! search-svc through booking-svc's change feed, as in production.

use std::time::Duration;

use marquee_infra::auth::TokenKeys;
use marquee_infra::bus::{Bus, BusConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-for-marquee-search";

pub use marquee_testkit::encode_query as encode;
use marquee_testkit::{Reply, amqp_url, delete_redis_keys, pg_base, redis_url, serve};

pub struct System {
    /// The gateway.
    pub base: String,
    pub search_url: String,
    pub http: reqwest::Client,
    pub index: std::sync::Arc<search_svc::index::SearchIndex>,
    pub rankings: search_svc::rankings::Rankings,
    pub redis_prefix: String,
    bus: Bus,
    booking_db: String,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub fn token(sub: &str, role: &str) -> String {
    TokenKeys::new(JWT_SECRET, chrono::Duration::hours(1))
        .issue(sub, role)
        .expect("token")
        .0
}

impl System {
    pub async fn start() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let prefix = format!("test.{id}.");
        let redis_prefix = format!("test:{id}:");
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let booking_db = format!("{}/test_booking_{id}", pg_base());
        let booking = booking_svc::Application::build(booking_svc::BookingConfig {
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: None,
            database_url: booking_db.clone(),
            db_max_connections: 5,
            migrate_on_start: true,
            redis: marquee_infra::redis_conn::RedisTarget::Single(redis_url()),
            redis_prefix: redis_prefix.clone(),
            redis_timeouts: Default::default(),
            bus: BusConfig::new(amqp_url(), prefix.clone()).named(format!("{prefix}booking-svc")),
            pay_url: "http://127.0.0.1:9".into(),
            jwt: JWT_SECRET.into(),
            token_ttl_minutes: 60,
            hold_ttl: Duration::from_secs(300),
            checkout_grace: Duration::from_secs(15),
            payment_deadline: Duration::from_secs(300),
            sweep_interval: Duration::from_millis(500),
            default_max_seats: 4,
            argon2_memory_kib: 1024,
            queue_tick: std::time::Duration::from_millis(50),
            two_factor_lockout: Duration::from_secs(900),
        })
        .await
        .expect("booking-svc starts");
        let booking_url = format!("http://127.0.0.1:{}", booking.port());
        serve(
            &mut tasks,
            "booking-svc",
            booking.run_with_shutdown(stop.clone().cancelled_owned()),
        );

        let search = search_svc::Application::build(search_config(
            &booking_url,
            marquee_infra::redis_conn::RedisTarget::Single(redis_url()),
            &redis_prefix,
            &prefix,
        ))
        .await
        .expect("search-svc starts");
        let search_url = format!("http://127.0.0.1:{}", search.port());
        let index = search.index();
        let rankings = search.rankings();
        serve(
            &mut tasks,
            "search-svc",
            search.run_with_shutdown(stop.clone().cancelled_owned()),
        );

        let mut config =
            marquee_gateway::GatewayConfig::local(booking_url, "http://127.0.0.1:9", JWT_SECRET);
        config.search_url = search_url.clone();
        let gateway = marquee_gateway::Application::build(config)
            .await
            .expect("gateway starts");
        let base = format!("http://127.0.0.1:{}", gateway.port());
        serve(
            &mut tasks,
            "gateway",
            gateway.run_with_shutdown(stop.clone().cancelled_owned()),
        );
        let bus = Bus::connect(
            BusConfig::new(amqp_url(), prefix.clone()).named(format!("{prefix}test")),
            Duration::from_secs(10),
        )
        .await
        .expect("test bus");
        Self {
            base,
            search_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            index,
            rankings,
            redis_prefix,
            bus,
            booking_db,
            shutdown: stop,
            tasks,
        }
    }

    /// A gRPC client of the in-process search-svc.
    pub async fn grpc(
        &self,
    ) -> marquee_proto::search::search_service_client::SearchServiceClient<tonic::transport::Channel>
    {
        marquee_proto::search::search_service_client::SearchServiceClient::connect(
            self.search_url.clone(),
        )
        .await
        .expect("grpc connects")
    }

    /// Stops everything and removes the test's database, queues, exchanges and keys.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let _ = self.bus.delete_topology(&[]).await;
        self.bus.shutdown();
        let _ = delete_redis_keys(&self.redis_prefix).await;
        let _ = marquee_infra::db::drop_database(&self.booking_db).await;
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
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
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// A seller's token (signed up, enrolled in two-factor sign-in and logged in with a
    /// code, through the gateway: selling needs the second factor).
    pub async fn seller(&self) -> String {
        let email = format!("seller-{}@example.com", Uuid::new_v4().simple());
        let password = "correct horse battery";
        let signed = self
            .post(
                "/v1/accounts",
                None,
                json!({"email": email, "password": password, "displayName": "Seller", "role": "SELLER"}),
            )
            .await;
        assert_eq!(signed.status, 201, "sign-up: {:?}", signed.body);
        let session = self
            .post(
                "/v1/sessions",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(session.status, 201, "log-in: {:?}", session.body);
        let token = session.str("/accessToken");
        let enrolled = self
            .post("/v1/me/two-factor", Some(&token), json!({}))
            .await;
        assert_eq!(enrolled.status, 201, "enrol: {:?}", enrolled.body);
        let mut authenticator = marquee_testkit::totp::Authenticator::new(enrolled.str("/secret"));
        let code = authenticator.next_code().await;
        let confirmed = self
            .post(
                "/v1/me/two-factor:confirm",
                Some(&token),
                json!({"code": code}),
            )
            .await;
        assert_eq!(confirmed.status, 200, "confirm: {:?}", confirmed.body);
        let code = authenticator.next_code().await;
        let session = self
            .post(
                "/v1/sessions",
                None,
                json!({"email": email, "password": password, "code": code}),
            )
            .await;
        assert_eq!(
            session.status, 201,
            "log-in with a code: {:?}",
            session.body
        );
        session.str("/accessToken")
    }

    /// Creates an event through the gateway; returns its id.
    pub async fn create_event(
        &self,
        seller: &str,
        title: &str,
        category: &str,
        description: &str,
        venue: &str,
    ) -> String {
        let starts = chrono::Utc::now() + chrono::Duration::days(30);
        let created = self
            .post(
                "/v1/events",
                Some(seller),
                json!({
                    "title": title,
                    "category": category,
                    "description": description,
                    "venue": venue,
                    "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "sections": [{
                        "name": "R",
                        "price": {"amountMinor": "10000", "currency": "KRW"},
                        "rows": [{"label": "A", "seats": [{"number": "1", "x": 0.0, "y": 0.0}]}],
                    }],
                    "maxSeatsPerBuyer": 4,
                }),
            )
            .await;
        assert_eq!(created.status, 201, "create event: {:?}", created.body);
        created.body["eventId"]
            .as_str()
            .expect("event id")
            .to_owned()
    }

    /// The event ids of a search through the gateway, best first.
    pub async fn search_ids(&self, query: &str) -> Vec<String> {
        let reply = self
            .get(&format!("/v1/search/events?q={}", encode(query)), None)
            .await;
        assert_eq!(reply.status, 200, "search {query}: {:?}", reply.body);
        ids(&reply.body)
    }
}

/// The `eventId`s of a search reply's hits.
pub fn ids(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|h| h["eventId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// search-svc's settings for a test: on an ephemeral port, reading the catalog from
/// `booking_url`, with the given Redis and key prefix, following the catalog changes
/// on the bus under `bus_prefix`; it rebuilds its index once at start.
pub fn search_config(
    booking_url: &str,
    redis: marquee_infra::redis_conn::RedisTarget,
    redis_prefix: &str,
    bus_prefix: &str,
) -> search_svc::SearchConfig {
    search_svc::SearchConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: None,
        booking_url: booking_url.to_owned(),
        redis,
        redis_prefix: redis_prefix.to_owned(),
        bus: BusConfig::new(amqp_url(), bus_prefix.to_owned())
            .named(format!("{bus_prefix}search-svc")),
        jwt: JWT_SECRET.into(),
        synonyms_path: search_svc::config::DEFAULT_SYNONYMS.into(),
        rebuild_on_start: true,
        rebuild_interval: None,
    }
}
