//! search-svc with booking-svc and the gateway, driven over REST as a frontend would:
//! freshness through the real bus, rebuild-and-swap under load, rankings, suggestions
//! and bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use marquee_e2e::search::{System, encode, ids, token};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_event_is_searchable_within_a_second_through_the_bus() {
    let system = System::start().await;
    let seller = system.seller().await;
    // booking-svc publishes catalog.event_changed; search-svc consumes it.
    let id = system
        .create_event(
            &seller,
            "자라섬 재즈 페스티벌 Zebrafinch",
            "FESTIVAL",
            "가을 재즈 축제",
            "자라섬",
        )
        .await;
    let created = Instant::now();
    let mut found = false;
    while created.elapsed() < Duration::from_secs(1) {
        if system.search_ids("zebrafinch").await.contains(&id) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = created.elapsed();
    assert!(found, "event not searchable after {waited:?}");
    // And by its Korean title, its chosung and as a suggestion.
    assert_eq!(system.search_ids("자라섬").await.first(), Some(&id));
    assert_eq!(system.search_ids("ㅈㄹㅅ").await.first(), Some(&id));
    let suggested = system
        .get(
            &format!("/v1/search/suggestions?q={}", encode("자라서")),
            None,
        )
        .await;
    assert_eq!(suggested.status, 200, "{:?}", suggested.body);
    assert_eq!(suggested.body["suggestions"][0]["eventId"], json!(id));
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_swaps_the_index_while_queries_keep_being_answered() {
    let system = System::start().await;
    let seller = system.seller().await;
    let mut events = Vec::new();
    for n in 0..12 {
        let id = system
            .create_event(
                &seller,
                &format!("방탄소년단 월드투어 {n}회차"),
                "CONCERT",
                "BTS live",
                "잠실종합운동장",
            )
            .await;
        events.push(id);
    }
    // Wait for the bus (or the start-up rebuild) to have indexed them all.
    let deadline = Instant::now() + Duration::from_secs(5);
    while system.index.current().len() < events.len() {
        assert!(Instant::now() < deadline, "events not indexed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, answered) = (stop.clone(), answered.clone());
        let http = system.http.clone();
        let url = format!(
            "{}/v1/search/events?q={}&pageSize=50",
            system.base,
            encode("방탄")
        );
        let expected = events.len();
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        let n = ids(&body).len();
                        if n < expected {
                            failures.push(format!("only {n} of {expected} hits"));
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("transport: {e}")),
                }
            }
            failures
        }));
    }

    let admin = token("admin-1", "ADMIN");
    let mut versions = Vec::new();
    for round in 0..3 {
        // A change that lands while the rebuild runs must survive the swap.
        let late = system
            .create_event(
                &seller,
                &format!("방탄소년단 추가공연 {round}"),
                "CONCERT",
                "",
                "고척스카이돔",
            )
            .await;
        let rebuilt = system
            .post("/v1/search/index:rebuild", Some(&admin), json!({}))
            .await;
        assert_eq!(rebuilt.status, 202, "{:?}", rebuilt.body);
        versions.push(
            rebuilt.body["indexVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        events.push(late);
        assert!(
            rebuilt.body["events"]
                .as_str()
                .unwrap_or("0")
                .parse::<usize>()
                .unwrap_or(0)
                >= events.len(),
            "{:?}",
            rebuilt.body
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.expect("worker"));
    }
    assert!(
        failures.is_empty(),
        "failed queries during rebuilds: {failures:?}"
    );
    assert!(answered.load(Ordering::Relaxed) > 20, "too few queries ran");
    versions.dedup();
    assert_eq!(
        versions.len(),
        3,
        "each rebuild is a new version: {versions:?}"
    );
    let found = system.search_ids("추가공연").await;
    assert_eq!(found.len(), 3, "late events survived the swaps: {found:?}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rankings_count_each_user_once_an_hour() {
    let system = System::start().await;
    let seller = system.seller().await;
    let a = system
        .create_event(&seller, "아이유 콘서트", "CONCERT", "", "KSPO DOME")
        .await;
    let b = system
        .create_event(&seller, "잔나비 단독공연", "CONCERT", "", "Yes24 Live Hall")
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while system.index.get(&b).is_none() || system.index.get(&a).is_none() {
        assert!(Instant::now() < deadline, "events not indexed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (u1, u2) = (token("buyer-1", "BUYER"), token("buyer-2", "BUYER"));
    for (user, event) in [(&u1, &b), (&u1, &b), (&u1, &b), (&u1, &a), (&u2, &a)] {
        let viewed = system
            .post(&format!("/v1/events/{event}:view"), Some(user), json!({}))
            .await;
        assert_eq!(viewed.status, 202, "{:?}", viewed.body);
    }
    // Anonymous views are accepted but not counted.
    for _ in 0..5 {
        let viewed = system
            .post(&format!("/v1/events/{b}:view"), None, json!({}))
            .await;
        assert_eq!(viewed.status, 202, "{:?}", viewed.body);
    }
    let ranked = system.get("/v1/rankings/events", None).await;
    assert_eq!(ranked.status, 200, "{:?}", ranked.body);
    let events = ranked.body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(events.len(), 2, "{:?}", ranked.body);
    assert_eq!(
        events[0]["eventId"],
        json!(a),
        "two users beat one user three times"
    );
    assert_eq!(events[0]["title"], json!("아이유 콘서트"));
    assert_eq!(events[0]["score"].as_f64(), Some(2.0));
    assert_eq!(events[1]["score"].as_f64(), Some(1.0));

    // Keywords: searches that found something, once per user an hour.
    for (user, q) in [
        (&u1, "잔나비"),
        (&u1, "잔나비"),
        (&u2, "잔나비"),
        (&u2, "아이유"),
    ] {
        let r = system
            .get(&format!("/v1/search/events?q={}", encode(q)), Some(user))
            .await;
        assert_eq!(r.status, 200);
    }
    let nothing = system.get("/v1/search/events?q=zzqqxx", Some(&u1)).await;
    assert_eq!(nothing.body["hits"], json!([]));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let kw = system.get("/v1/rankings/keywords?limit=5", None).await;
        assert_eq!(kw.status, 200, "{:?}", kw.body);
        let expected =
            json!([{"keyword": "잔나비", "score": 2.0}, {"keyword": "아이유", "score": 1.0}]);
        if kw.body["keywords"] == expected {
            break;
        }
        assert!(Instant::now() < deadline, "keywords: {:?}", kw.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx() {
    let system = System::start().await;
    let long = "가".repeat(10 * 1024 / 3);
    let cases: Vec<(String, u16)> = vec![
        ("/v1/search/events".into(), 400),
        ("/v1/search/events?q=".into(), 400),
        ("/v1/search/events?q=%20%20".into(), 400),
        ("/v1/search/events?q=bts&pageSize=100000".into(), 400),
        ("/v1/search/events?q=bts&pageSize=-3".into(), 400),
        ("/v1/search/events?q=bts&pageToken=garbage".into(), 400),
        (
            "/v1/search/events?q=bts&pageToken=20.0000000000000000".into(),
            400,
        ),
        ("/v1/search/events?q=bts&from=yesterday".into(), 400),
        (
            "/v1/search/events?q=bts&from=2026-10-01T00:00:00Z&to=2026-01-01T00:00:00Z".into(),
            400,
        ),
        (format!("/v1/search/events?q={}", encode(&long)), 400),
        ("/v1/search/suggestions?q=".into(), 400),
        ("/v1/search/suggestions?q=bt&limit=1000".into(), 400),
        ("/v1/rankings/events?limit=100000".into(), 400),
        ("/v1/rankings/keywords?limit=-1".into(), 400),
    ];
    for (path, status) in cases {
        let reply = system.get(&path, None).await;
        assert_eq!(reply.status, status, "{path}: {:?}", reply.body);
        assert!(
            reply.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{path}: no message in {:?}",
            reply.body
        );
    }
    let unknown = system
        .post("/v1/events/no-such-event:view", None, json!({}))
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    let anonymous = system
        .post("/v1/search/index:rebuild", None, json!({}))
        .await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
    let buyer = system
        .post(
            "/v1/search/index:rebuild",
            Some(&token("buyer-1", "BUYER")),
            json!({}),
        )
        .await;
    assert_eq!(buyer.status, 403, "{:?}", buyer.body);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_highlights_through_the_gateway() {
    let system = System::start().await;
    let seller = system.seller().await;
    for n in 0..3 {
        system
            .create_event(
                &seller,
                &format!("Coldplay <Live> {n}"),
                "CONCERT",
                "콜드플레이 내한 공연",
                "고양종합운동장",
            )
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while system.index.current().len() < 3 {
        assert!(Instant::now() < deadline, "events not indexed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = system
        .get("/v1/search/events?q=coldplay&pageSize=2", None)
        .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["total"], json!("3"));
    assert_eq!(ids(&first.body).len(), 2);
    let title = first.body["hits"][0]["titleHighlight"]
        .as_str()
        .unwrap_or_default();
    assert!(
        title.starts_with("<em>Coldplay</em> &lt;Live&gt;"),
        "highlighted and escaped: {title}"
    );
    let token = first.body["nextPageToken"].as_str().expect("next page");
    let second = system
        .get(
            &format!("/v1/search/events?q=coldplay&pageSize=2&pageToken={token}"),
            None,
        )
        .await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(ids(&second.body).len(), 1);
    assert!(
        second.body["nextPageToken"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    let mut all = ids(&first.body);
    all.extend(ids(&second.body));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 3, "pages do not overlap");
    // A token is bound to its query.
    let other = system
        .get(&format!("/v1/search/events?q=bts&pageToken={token}"), None)
        .await;
    assert_eq!(other.status, 400, "{:?}", other.body);
    system.stop().await;
}
