//! The ranking window against the real Redis, with explicit clocks: counts decay with
//! age, fall out after 24 hours, and a user counts once per item and hour.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::System;
use search_svc::rankings::{Kind, decay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_interest_outranks_older_interest_and_old_interest_expires() {
    let system = System::start().await;
    let r = &system.rankings;
    let now = Utc
        .with_ymd_and_hms(2026, 11, 21, 12, 30, 0)
        .single()
        .expect("now");

    // Three users viewed "old" 20 hours ago; two view "new" now; five viewed "gone"
    // 30 hours ago (outside the window).
    for user in ["u1", "u2", "u3"] {
        assert!(
            r.record(Kind::Events, user, "old", now - Duration::hours(20))
                .await
                .expect("record")
        );
    }
    for user in ["u1", "u2"] {
        assert!(
            r.record(Kind::Events, user, "new", now)
                .await
                .expect("record")
        );
    }
    for user in ["u1", "u2", "u3", "u4", "u5"] {
        r.record(Kind::Events, user, "gone", now - Duration::hours(30))
            .await
            .expect("record");
    }
    // The same user again within the hour does not count; in the next hour it does.
    assert!(
        !r.record(Kind::Events, "u1", "new", now + Duration::minutes(20))
            .await
            .expect("record")
    );

    let top = r.top(Kind::Events, 10, now).await.expect("top");
    let names: Vec<&str> = top.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["new", "old"], "{top:?}");
    assert!((top[0].1 - 2.0).abs() < 1e-9, "{top:?}");
    assert!((top[1].1 - 3.0 * decay(20)).abs() < 1e-6, "{top:?}");

    assert!(
        r.record(Kind::Events, "u1", "new", now + Duration::hours(1))
            .await
            .expect("record")
    );
    let later = r
        .top(Kind::Events, 10, now + Duration::hours(1))
        .await
        .expect("top");
    let expected = 1.0 + 2.0 * decay(1);
    assert!((later[0].1 - expected).abs() < 1e-6, "{later:?}");

    // Keywords are ranked separately.
    assert!(
        r.top(Kind::Keywords, 10, now)
            .await
            .expect("top")
            .is_empty()
    );
    system.stop().await;
}
