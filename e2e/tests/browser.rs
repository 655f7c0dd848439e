//! The reference seat-map page in a real browser: headless Debian chromium driven by
//! playwright-core (`tests/browser/seatmap.mjs`) against the whole system in process.
//! `scripts/ensure-browser.sh` installs chromium, node and the npm packages; without
//! them this test fails (it never skips).
//!
//! `System` has no search-svc: the test starts one, and a gateway routing to it as well
//! as to the system's services, and the page is served by that gateway (issue 13: the
//! paged event list, the search box and Hangul rendered with a real font).
//!
//! The auction panel (issue 14, `tests/browser/auction.mjs`) runs against the system's
//! own gateway. The tests take turns ([`ONE_AT_A_TIME`]): each starts a whole system and
//! a browser, and bounds how soon the page shows what another client did.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use marquee_e2e::{JWT_SECRET, System};
use marquee_testkit::serve;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The script bounds each step itself; this bounds the whole run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the waiting room may take to admit the first buyer of an open queue.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "correct horse battery";
/// How long a new event may take to become searchable (through the bus).
const SEARCHABLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Events beyond the page's first page of 20, to be shown by "More events".
const CATALOG_EVENTS: usize = 25;
/// The page's bid in the auction test; the other buyer outbids it.
const PAGE_BID: i64 = 15_000;

/// One browser test at a time (see the module's documentation).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with the fix when something the browser test needs is missing.
fn require_tools() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/ensure-browser.sh"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "e2e/tests/browser/node_modules is missing: run scripts/ensure-browser.sh"
    );
    chromium
}

/// A buyer whose email and password the browser can type: (email, token).
async fn buyer(system: &System, name: &str) -> (String, String) {
    let email = format!("{name}-{}@example.com", Uuid::new_v4().simple());
    let signed = system
        .post(
            "/v1/accounts",
            None,
            json!({"email": email, "password": PASSWORD, "displayName": name, "role": "BUYER"}),
        )
        .await;
    assert_eq!(signed.status, 201, "sign-up: {:?}", signed.body);
    let session = system
        .post(
            "/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(session.status, 201, "log-in: {:?}", session.body);
    (email, session.str("/accessToken"))
}

/// A waiting room for the script (issue 11): an event that admits one shopper at a
/// time, another buyer already admitted (so the page's buyer waits first in line), and
/// the page's buyer. `stream` is "live" or "refused" (see seatmap.mjs). Returns the
/// room as the script takes it, and the page's buyer's token.
async fn waiting_room(system: &System, name: &str, stream: &str) -> (Value, String) {
    let (seller, event_id) = system.seller_event(&[("R", 30_000, 2, 5)], 4).await;
    let configured = system
        .call(
            Method::PUT,
            &format!("/v1/events/{event_id}/waiting-room"),
            Some(&seller),
            Some(json!({"waitingRoom": {"maxShoppers": 1, "admissionSeconds": 60}})),
            &[],
        )
        .await;
    assert_eq!(
        configured.status, 200,
        "waiting room: {:?}",
        configured.body
    );
    let (email, token) = buyer(system, name).await;
    let (_, other) = system.account("BUYER").await;
    let joined = system
        .post(
            &format!("/v1/events/{event_id}/queue"),
            Some(&other),
            json!({}),
        )
        .await;
    assert_eq!(joined.status, 201, "join: {:?}", joined.body);
    let ticket_id = joined.str("/ticketId");
    let deadline = tokio::time::Instant::now() + ADMIT_TIMEOUT;
    let admission = loop {
        let ticket = system
            .get(&format!("/v1/queue/{ticket_id}"), Some(&other))
            .await;
        assert_eq!(ticket.status, 200, "ticket: {:?}", ticket.body);
        if ticket.str("/state") == "ADMITTED" {
            break ticket.str("/admissionToken");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first in line was not admitted within {ADMIT_TIMEOUT:?}: {:?}",
            ticket.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seats = system.seat_ids(&event_id).await;
    assert!(seats.len() >= 2, "{seats:?}");
    let room = json!({
        "name": name,
        "eventId": event_id,
        "seatCount": seats.len(),
        "seat": seats[0],
        "otherSeat": seats[1],
        "otherToken": other,
        "otherAdmission": admission,
        "email": email,
        "password": PASSWORD,
        "stream": stream,
    });
    (room, token)
}

/// search-svc and a gateway in front of the system's services and search-svc.
struct Search {
    /// The gateway the browser talks to.
    base: String,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Search {
    /// search-svc follows the system's catalog changes over its bus (with the system's
    /// prefixes, so the system's `stop` removes what it leaves in Redis).
    async fn start(system: &System) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let booking_url = format!("http://127.0.0.1:{}", system.booking_port);
        let prefix = &system.bus_prefix;
        let search = search_svc::Application::build(marquee_e2e::search::search_config(
            &booking_url,
            system.redis.clone(),
            &system.redis_prefix,
            prefix,
        ))
        .await
        .expect("search-svc starts");
        let search_url = format!("http://127.0.0.1:{}", search.port());
        serve(
            &mut tasks,
            "search-svc",
            search.run_with_shutdown(stop.clone().cancelled_owned()),
        );
        let mut config = marquee_gateway::GatewayConfig::local(
            booking_url,
            format!("http://127.0.0.1:{}", system.pay_port),
            JWT_SECRET,
        );
        config.realtime_url = format!("http://127.0.0.1:{}", system.realtime_ports[0]);
        config.search_url = search_url;
        let gateway = marquee_gateway::Application::build(config)
            .await
            .expect("gateway starts");
        let base = format!("http://127.0.0.1:{}", gateway.port());
        serve(
            &mut tasks,
            "gateway",
            gateway.run_with_shutdown(stop.clone().cancelled_owned()),
        );
        Self { base, stop, tasks }
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Waits (bounded) until a search for `query` finds `event_id`.
    async fn searchable(&self, system: &System, query: &str, event_id: &str) {
        let url = format!(
            "{}/v1/search/events?q={}",
            self.base,
            marquee_testkit::encode_query(query)
        );
        let deadline = tokio::time::Instant::now() + SEARCHABLE_TIMEOUT;
        loop {
            let response = system.http.get(&url).send().await.expect("search sent");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or_default();
            let found = body["hits"]
                .as_array()
                .is_some_and(|hits| hits.iter().any(|h| h["eventId"].as_str() == Some(event_id)));
            if status == 200 && found {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{query:?} did not find {event_id} within {SEARCHABLE_TIMEOUT:?}: {status} {body:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Events with Korean titles, enough for a second page of the event list (issue 13),
/// searchable once returned. Returns what the script takes as `CATALOG`, but for
/// `eventCount` ([`event_count`], once every event is made).
async fn catalog(system: &System, search: &Search) -> Value {
    let (_, seller) = system.account("SELLER").await;
    let mut titles = vec![
        (
            "아이유 콘서트".to_owned(),
            "아이유 <HEREH> 월드 투어 & 앙코르".to_owned(),
        ),
        (
            "뮤지컬 레미제라블".to_owned(),
            "빅토르 위고 원작 뮤지컬".to_owned(),
        ),
    ];
    titles.extend((3..=CATALOG_EVENTS).map(|n| {
        (
            format!("마퀴 재즈 페스티벌 {n}일차"),
            "가을 재즈 축제".to_owned(),
        )
    }));
    let mut events = Vec::new();
    for (title, description) in &titles {
        let mut body = marquee_e2e::event_body(title, 4, 4);
        body["description"] = json!(description);
        let created = system.post("/v1/events", Some(&seller), body).await;
        assert_eq!(created.status, 201, "create {title}: {:?}", created.body);
        events.push(json!({"eventId": created.str("/eventId"), "title": title}));
    }
    let id = |n: usize| events[n]["eventId"].as_str().unwrap_or_default().to_owned();
    search.searchable(system, "아이유", &id(0)).await;
    search.searchable(system, "레미제라블", &id(1)).await;
    json!({
        "events": events,
        "iu": events[0],
        "musical": events[1],
    })
}

/// How many events the system has: the page's list must show them all.
async fn event_count(system: &System) -> usize {
    let listed = system.get("/v1/events?pageSize=100", None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let count = listed.body["events"].as_array().map_or(0, Vec::len);
    assert!(
        (21..100).contains(&count),
        "{count} events: the list needs a second page, and no third"
    );
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pages_see_each_others_seats_live_and_a_buyer_checks_out() {
    let chromium = require_tools();
    let _turn = ONE_AT_A_TIME.lock().await;
    let system = System::start().await;
    let search = Search::start(&system).await;
    let (_, event_id) = system
        .seller_event(&[("VIP", 80_000, 2, 6), ("R", 40_000, 3, 8)], 4)
        .await;
    let seats = system.seats(&event_id).await;
    let cheap: Vec<&str> = seats
        .iter()
        .filter(|s| s.2 == 40_000)
        .map(|s| s.0.as_str())
        .collect();
    assert!(cheap.len() >= 2, "{seats:?}");
    let (a_email, a_token) = buyer(&system, "Ana").await;
    let (b_email, _) = buyer(&system, "Ben").await;
    // A seller with two-factor sign-in, who logs in on the page with a code the script
    // computes (for a step after the confirmation's).
    let (_, seller_email) = system.sign_up("SELLER").await;
    let password_only = system
        .log_in(&seller_email, json!({}))
        .await
        .str("/accessToken");
    let (authenticator, _) = system.enroll_two_factor(&password_only).await;
    system.await_wallet(&password_only).await;

    // More than a page of events with Korean titles, searchable (issue 13).
    let mut catalog = catalog(&system, &search).await;

    // The waiting rooms, last: the other buyers' admissions (60 s) run from here. The
    // page follows one ticket over its stream, and one by polling (its stream refused).
    let (live_room, live_token) = waiting_room(&system, "Wen", "live").await;
    let (polled_room, polled_token) = waiting_room(&system, "Vic", "refused").await;
    catalog["eventCount"] = json!(event_count(&system).await);

    let out = run_script(
        "seatmap.mjs",
        &[
            ("BASE_URL", search.base.clone()),
            ("EVENT_ID", event_id.clone()),
            ("SEAT_COUNT", seats.len().to_string()),
            ("SEAT_ID", cheap[0].to_owned()),
            ("SEAT_ID_2", cheap[1].to_owned()),
            ("SEAT_PRICE", "40000".to_owned()),
            ("WALLET_START", "100000".to_owned()),
            ("BUYER_A_EMAIL", a_email),
            ("BUYER_A_PASSWORD", PASSWORD.to_owned()),
            ("BUYER_B_EMAIL", b_email),
            ("BUYER_B_PASSWORD", PASSWORD.to_owned()),
            ("SELLER_EMAIL", seller_email.clone()),
            ("SELLER_PASSWORD", PASSWORD.to_owned()),
            ("SELLER_SECRET", authenticator.secret.clone()),
            (
                "SELLER_AFTER_STEP",
                authenticator.last_step().unwrap_or(0).to_string(),
            ),
            ("WAITING_ROOMS", json!([live_room, polled_room]).to_string()),
            ("CATALOG", catalog.to_string()),
            ("CHROMIUM", chromium),
        ],
        |_| async { None },
    )
    .await;
    println!("{out}");

    // What the pages showed is what the system holds: the seat is sold to Ana, the
    // second seat is sold to Ben by card, Ana paid once from her wallet.
    let after = system.seats(&event_id).await;
    let status_of = |id: &str| {
        after
            .iter()
            .find(|s| s.0 == id)
            .map(|s| s.1.clone())
            .unwrap_or_default()
    };
    assert_eq!(status_of(cheap[0]), "SOLD");
    // Held, released, then bought by Ben with the sandbox's approving test card.
    assert_eq!(status_of(cheap[1]), "SOLD");
    let card = marquee_e2e::CardMoney::check(&system.pay_pool, &system.psp).await;
    card.assert_conserved();
    assert_eq!(card.psp.net, 40_000, "{card:?}");
    let me = system.get("/v1/me", Some(&a_token)).await;
    assert_eq!(
        me.str("/walletBalance/amountMinor"),
        "60000",
        "{:?}",
        me.body
    );

    // Each waiting room: both buyers got their seat, one after the other, and the
    // page's buyer paid once.
    for (room, token) in [(&live_room, &live_token), (&polled_room, &polled_token)] {
        let event_id = room["eventId"].as_str().unwrap_or_default();
        let seats = system.seats(event_id).await;
        for key in ["seat", "otherSeat"] {
            let id = room[key].as_str().unwrap_or_default();
            let status = seats
                .iter()
                .find(|s| s.0 == id)
                .map(|s| s.1.as_str())
                .unwrap_or_default();
            assert_eq!(status, "SOLD", "{key} {id}: {seats:?}");
        }
        let me = system.get("/v1/me", Some(token)).await;
        assert_eq!(
            me.str("/walletBalance/amountMinor"),
            "70000",
            "{}: {:?}",
            room["name"],
            me.body
        );
    }

    search.stop().await;
    system.stop().await;
}

/// The auction panel (issue 14): a seller auctions two seats; the page's buyer bids on
/// the page and is ranked 1, "you"; another buyer outbids them through REST and the page
/// shows it live, from the auction's stream. The test then closes the auction (as the
/// clock would); the page shows the buyer's award of the second seat and pays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_bids_on_the_auction_panel_and_sees_the_ranking_live() {
    let chromium = require_tools();
    let _turn = ONE_AT_A_TIME.lock().await;
    let system = System::start().await;
    let (seller, event_id) = system
        .seller_event(&[("VIP", 80_000, 1, 4), ("R", 40_000, 2, 6)], 4)
        .await;
    let seats = system.seat_ids(&event_id).await;
    let krw = |amount: i64| json!({"amountMinor": amount.to_string(), "currency": "KRW"});
    let created = system
        .post(
            &format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({
                "seatIds": &seats[..2],
                "openingPrice": krw(10_000),
                "minIncrement": krw(1_000),
                "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
                "paymentWindowSeconds": 600,
            }),
        )
        .await;
    assert_eq!(created.status, 201, "create auction: {:?}", created.body);
    let auction_id = created.str("/auction/auctionId");
    let (email, token) = buyer(&system, "Ada").await;
    let (_, other) = system.account("BUYER").await;
    let auction = json!({
        "auctionId": auction_id,
        "seats": created.body["auction"]["seats"],
    });

    let out = run_script(
        "auction.mjs",
        &[
            ("BASE_URL", system.base.clone()),
            ("EVENT_ID", event_id.clone()),
            ("SEAT_COUNT", seats.len().to_string()),
            ("AUCTION", auction.to_string()),
            ("BUYER_EMAIL", email),
            ("BUYER_PASSWORD", PASSWORD.to_owned()),
            ("OTHER_TOKEN", other),
            ("WALLET_START", "100000".to_owned()),
            ("CHROMIUM", chromium),
        ],
        |line| {
            let system = &system;
            let auction_id = auction_id.clone();
            async move {
                // The script has seen the bids live: the close comes now, as if its
                // time had come (booking-svc's ticker closes it within a tick).
                if line != "CLOSE" {
                    return None;
                }
                sqlx::query("UPDATE auctions SET closes_at = now() WHERE id = $1")
                    .bind(Uuid::parse_str(&auction_id).expect("auction id"))
                    .execute(&system.booking_pool)
                    .await
                    .expect("move the close");
                Some("closed".to_owned())
            }
        },
    )
    .await;
    println!("{out}");

    // What the page showed is what the system holds: the buyer won the second seat at
    // their bid and paid it from the wallet.
    let read = system
        .get(&format!("/v1/auctions/{auction_id}"), Some(&token))
        .await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.str("/auction/state"), "AUCTION_STATE_CLOSED");
    assert_eq!(read.str("/auction/myAward/seatId"), seats[1]);
    assert_eq!(
        read.str("/auction/myAward/state"),
        "AWARD_STATE_PAID",
        "{:?}",
        read.body
    );
    let booking_id = read.str("/auction/myAward/bookingId");
    let booking = system
        .get(&format!("/v1/bookings/{booking_id}"), Some(&token))
        .await;
    assert_eq!(booking.str("/status"), "CONFIRMED", "{:?}", booking.body);
    assert_eq!(booking.str("/total/amountMinor"), PAGE_BID.to_string());
    let me = system.get("/v1/me", Some(&token)).await;
    assert_eq!(
        me.str("/walletBalance/amountMinor"),
        (100_000 - PAGE_BID).to_string(),
        "{:?}",
        me.body
    );
    let after = system.seats(&event_id).await;
    let status = after.iter().find(|s| s.0 == seats[1]).map(|s| s.1.as_str());
    assert_eq!(status, Some("SOLD"), "{after:?}");

    system.stop().await;
}

/// Runs `script` (in tests/browser) under node with `envs`, bounded by
/// [`SCRIPT_TIMEOUT`]. Each line the script prints goes to `answer` as it comes; what
/// that returns, if anything, is written to the script's stdin as a line. Returns what
/// the script printed; panics with its output when it fails or runs too long.
async fn run_script<F, Fut>(script: &str, envs: &[(&str, String)], mut answer: F) -> String
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Option<String>>,
{
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(browser_dir())
        .envs(envs.iter().map(|(name, value)| (*name, value.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (missing? run scripts/ensure-browser.sh)");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let read_err = tokio::spawn(read_all(child.stderr.take().expect("stderr")));
    let mut out = String::new();
    let run = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            out.push_str(&line);
            out.push('\n');
            if let Some(reply) = answer(line).await {
                // The script may be gone already: its exit status tells.
                let _ = stdin.write_all(format!("{reply}\n").as_bytes()).await;
            }
        }
        child.wait().await
    };
    let status = tokio::time::timeout(SCRIPT_TIMEOUT, run).await;
    let status = match status {
        Ok(status) => status.expect("node exit status"),
        Err(_) => {
            let _ = child.kill().await;
            let err = read_err.await.unwrap_or_default();
            panic!(
                "{script} ran longer than {SCRIPT_TIMEOUT:?}\n--- stdout\n{out}\n--- stderr\n{err}"
            );
        }
    };
    let err = read_err.await.unwrap_or_default();
    assert!(
        status.success(),
        "{script} failed ({status})\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    out
}

async fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}
