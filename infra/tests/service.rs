//! The service shell on its own: health follows a dependency check both ways, and a
//! shutdown signal makes health NOT_SERVING while the server still answers, before it
//! stops accepting and runs its stop hooks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use marquee_infra::service::{Dependency, Shell};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The server's overall health, or `None` when it does not answer.
async fn status(url: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .ok()?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(reply.get_ref().status).ok()
}

async fn await_status(url: &str, want: Option<ServingStatus>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = status(url).await;
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health stayed {now:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn health_follows_the_dependency_and_the_drain() {
    let up = Arc::new(AtomicBool::new(true));
    let stopped = Arc::new(AtomicBool::new(false));
    let mut shell = Shell::bind("test-svc", "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}", shell.port());
    let check = up.clone();
    let hook = stopped.clone();
    shell
        .depends_on(Dependency::new("thing", move || {
            let up = check.load(Ordering::SeqCst);
            async move { up }
        }))
        .check_interval(Duration::from_millis(50))
        .drain_grace(Duration::from_millis(1500))
        .on_stop(move || hook.store(true, Ordering::SeqCst));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(shell.serve(async {
        let _ = rx.await;
    }));

    await_status(&url, Some(ServingStatus::Serving)).await;
    up.store(false, Ordering::SeqCst);
    await_status(&url, Some(ServingStatus::NotServing)).await;
    up.store(true, Ordering::SeqCst);
    await_status(&url, Some(ServingStatus::Serving)).await;

    // Drain: NOT_SERVING while still answering, even though the dependency is up.
    tx.send(()).unwrap();
    await_status(&url, Some(ServingStatus::NotServing)).await;
    assert!(!stopped.load(Ordering::SeqCst), "stopped before draining");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&url).await, Some(ServingStatus::NotServing));
    // Then it stops accepting, and the stop hooks run.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops after the grace")
        .unwrap()
        .unwrap();
    assert!(stopped.load(Ordering::SeqCst), "stop hooks ran");
    assert_eq!(status(&url).await, None);
}
