//! The sandbox payment provider (`psp-sandbox`) in process, on a database of its own:
//! what pay-svc's card tests and the e2e system charge cards through. Stopping it
//! keeps its database, so [`Sandbox::restart`] is "the PSP back on the same ledger".

use std::net::SocketAddr;
use std::time::Duration;

use psp_sandbox::{Application, PspConfig};
use serde_json::Value;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The sandbox's secret key (its public default): what pay-svc sends as Basic auth.
pub const SECRET_KEY: &str = psp_sandbox::config::DEFAULT_SECRET_KEY;

/// A running (or stopped) sandbox.
pub struct Sandbox {
    addr: SocketAddr,
    database_url: String,
    slow: Duration,
    server: Option<JoinHandle<()>>,
    http: reqwest::Client,
}

/// `GET /v1/ledger`: every payment the sandbox took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub captured: i64,
    pub refunded: i64,
    pub net: i64,
    pub payments: i64,
    pub double_charges: i64,
}

/// `GET /v1/ledger/orders/{orderId}`: one order's charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLedger {
    pub charges: i64,
    pub captured: i64,
    pub refunded: i64,
}

/// The client the ledger is read with.
fn ledger_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

impl Sandbox {
    /// A sandbox on a fresh database whose `tok_slow` answers after `slow`.
    pub async fn start(slow: Duration) -> Self {
        let database_url = format!("{}/psp_test_{}", crate::pg_base(), Uuid::new_v4().simple());
        let mut sandbox = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            slow,
            server: None,
            http: ledger_client(),
        };
        sandbox.serve().await;
        sandbox
    }

    /// The sandbox another process serves at `addr` (a split benchmark's system
    /// process): its ledger can be read here; stopping and restarting it is that
    /// process's business.
    pub fn attach(addr: SocketAddr, slow: Duration) -> Self {
        Self {
            addr,
            database_url: String::new(),
            slow,
            server: None,
            http: ledger_client(),
        }
    }

    async fn serve(&mut self) {
        assert!(
            !self.database_url.is_empty(),
            "an attached sandbox is served by the process that started it"
        );
        let mut config = PspConfig::local(self.database_url.clone());
        config.listen_addr = self.addr;
        config.slow = self.slow;
        let mut attempts = 0;
        let app = loop {
            // A restart rebinds the port the stopped server just let go of.
            match Application::build(config.clone()).await {
                Ok(app) => break app,
                Err(error) if attempts < 50 => {
                    attempts += 1;
                    tracing::debug!(error = %error, "psp sandbox not up yet; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("starting the psp sandbox: {error:#}"),
            }
        };
        self.addr = app.addr();
        self.server = Some(tokio::spawn(async move {
            if let Err(error) = app.run_with_shutdown(std::future::pending()).await {
                panic!("psp sandbox failed: {error:#}");
            }
        }));
    }

    /// `http://127.0.0.1:<port>`: pay-svc's `PSP_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting at once, as a crash would (its database stays).
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Serves again on the same port and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.serve().await;
    }

    /// Stops and drops its database.
    pub async fn stop_for_good(mut self) {
        self.stop().await;
        let _ = marquee_infra::db::drop_database(&self.database_url).await;
    }

    async fn get(&self, path: &str) -> Value {
        let reply = self
            .http
            .get(format!("{}{path}", self.url()))
            .basic_auth(SECRET_KEY, Some(""))
            .send()
            .await
            .expect("reading the psp ledger");
        assert!(reply.status().is_success(), "{path}: {}", reply.status());
        reply.json().await.expect("psp ledger json")
    }

    pub async fn ledger(&self) -> Ledger {
        let body = self.get("/v1/ledger").await;
        let field = |name: &str| {
            body[name]
                .as_i64()
                .unwrap_or_else(|| panic!("{name} in {body}"))
        };
        Ledger {
            captured: field("captured"),
            refunded: field("refunded"),
            net: field("net"),
            payments: field("payments"),
            double_charges: field("doubleCharges"),
        }
    }

    /// The order of `booking` (pay-svc uses the booking id as the order id).
    pub async fn order(&self, booking: Uuid) -> OrderLedger {
        let body = self.get(&format!("/v1/ledger/orders/{booking}")).await;
        let field = |name: &str| {
            body[name]
                .as_i64()
                .unwrap_or_else(|| panic!("{name} in {body}"))
        };
        OrderLedger {
            charges: field("charges"),
            captured: field("captured"),
            refunded: field("refunded"),
        }
    }
}
