//! A purchase is one OpenTelemetry trace: from the gateway's HTTP span through
//! booking-svc's RPC, the outbox relays, RabbitMQ and pay-svc, and back to booking-svc.
//! The spans are exported over OTLP/gRPC to a receiver inside this test.
//!
//! The tracing subscriber is process-global, so this file is its own test binary with
//! exactly one test.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marquee_e2e::System;
use marquee_infra::telemetry::TelemetryGuard;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use reqwest::Method;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

/// One span as the receiver got it; ids in lowercase hex, `parent` empty for a root.
#[derive(Debug, Clone)]
struct Received {
    trace: String,
    id: String,
    parent: String,
    name: String,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/gRPC trace collector that keeps every span it is sent.
struct Receiver {
    spans: Spans,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let received = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .map(|span| Received {
                trace: hex(&span.trace_id),
                id: hex(&span.span_id),
                parent: hex(&span.parent_span_id),
                name: span.name,
            });
        self.spans.lock().expect("spans lock").extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves the receiver on an ephemeral port; returns the port and its stop switch.
async fn start_receiver(spans: Spans) -> (u16, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind otlp");
    let port = listener.local_addr().expect("otlp addr").port();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver { spans }))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stopped.await;
            })
            .await
            .expect("otlp receiver runs");
    });
    (port, stop)
}

/// The spans of one trace, by span id.
fn trace_of(spans: &[Received], trace: &str) -> HashMap<String, Received> {
    spans
        .iter()
        .filter(|s| s.trace == trace)
        .map(|s| (s.id.clone(), s.clone()))
        .collect()
}

/// The trace as an indented tree of span names, for failure messages.
fn render(trace: &HashMap<String, Received>) -> String {
    fn walk(
        out: &mut String,
        children: &HashMap<&str, Vec<&Received>>,
        span: &Received,
        depth: usize,
    ) {
        let _ = writeln!(out, "{}{} [{}]", "  ".repeat(depth), span.name, span.id);
        for child in children.get(span.id.as_str()).into_iter().flatten() {
            walk(out, children, child, depth + 1);
        }
    }
    let mut children: HashMap<&str, Vec<&Received>> = HashMap::new();
    let mut roots = Vec::new();
    for span in trace.values() {
        if trace.contains_key(&span.parent) {
            children.entry(span.parent.as_str()).or_default().push(span);
        } else {
            roots.push(span);
        }
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    roots.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for root in roots {
        if !root.parent.is_empty() {
            let _ = writeln!(out, "(parent {} missing)", root.parent);
        }
        walk(&mut out, &children, root, 0);
    }
    out
}

/// Whether `ancestor` is `span` or lies on its parent chain within `trace`.
fn descends_from(trace: &HashMap<String, Received>, span: &Received, ancestor: &str) -> bool {
    let mut current = Some(span);
    let mut seen = HashSet::new();
    while let Some(s) = current {
        if s.id == ancestor {
            return true;
        }
        if !seen.insert(s.id.as_str()) {
            return false;
        }
        current = trace.get(&s.parent);
    }
    false
}

const GATEWAY_SPAN: &str = "POST /v1/bookings";
/// The hops of a purchase, each a descendant of the one before it.
const HOPS: &[&str] = &[
    "marquee.booking.v1.BookingService/CreateBooking",
    "publish payment.requested",
    "consume payment.requested",
    "publish payment.succeeded",
    "consume payment.succeeded",
];

/// Runs a blocking flush off the async workers (the exporter needs them to send).
async fn flush(guard: &Arc<TelemetryGuard>) {
    let guard = guard.clone();
    let _ = tokio::task::spawn_blocking(move || guard.flush()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_is_one_trace_across_every_service() {
    let spans: Spans = Arc::default();
    let (port, stop_receiver) = start_receiver(spans.clone()).await;
    let guard = Arc::new(marquee_infra::telemetry::init_with_endpoint(
        "marquee-e2e",
        Some(&format!("http://127.0.0.1:{port}")),
    ));

    let sys = System::start().await;
    let (_, seller) = sys.account("SELLER").await;
    let event = sys.event(&seller, &[("A", 20_000, 1, 4)], 0).await;
    let event_id = event["eventId"].as_str().expect("event id").to_owned();
    let (_, buyer) = sys.account("BUYER").await;
    let seat = sys.seats(&event_id).await.remove(0).0;
    let hold = sys
        .post(
            &format!("/v1/events/{event_id}/holds"),
            Some(&buyer),
            json!({"seatIds": [seat]}),
        )
        .await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booked = sys
        .call(
            Method::POST,
            "/v1/bookings",
            Some(&buyer),
            Some(json!({"holdId": hold.str("/holdId"), "paymentMethod": "WALLET"})),
            &[("Idempotency-Key", "trace-e2e")],
        )
        .await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    let booking_id = booked.str("/bookingId");
    sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;

    // The last hop's span ends after its handler committed, so it may still be open
    // when the booking reads CONFIRMED: flush and look again until it arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (trace, root) = loop {
        flush(&guard).await;
        let found = {
            let spans = spans.lock().expect("spans lock");
            let roots: Vec<&Received> = spans.iter().filter(|s| s.name == GATEWAY_SPAN).collect();
            roots.first().map(|root| {
                assert_eq!(roots.len(), 1, "one checkout, one gateway span: {roots:?}");
                ((*root).clone(), trace_of(&spans, &root.trace))
            })
        };
        if let Some((root, trace)) = &found
            && HOPS
                .iter()
                .all(|hop| trace.values().any(|s| s.name == *hop))
        {
            break (trace.clone(), root.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            let spans = spans.lock().expect("spans lock").clone();
            let mut by_trace: HashMap<&str, Vec<&str>> = HashMap::new();
            for s in &spans {
                by_trace.entry(&s.trace).or_default().push(&s.name);
            }
            let tree = found.map(|(_, t)| render(&t)).unwrap_or_default();
            panic!(
                "the purchase trace is incomplete after 15 s; wanted {GATEWAY_SPAN} and {HOPS:?}\n\
                 checkout trace:\n{tree}\nall {} spans by trace: {by_trace:#?}",
                spans.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let tree = render(&trace);
    println!("purchase trace {}:\n{tree}", root.trace);

    // The gateway span is the root; every other span hangs off a span of this trace.
    assert!(
        root.parent.is_empty(),
        "the gateway span has a parent: {root:?}\n{tree}"
    );
    for span in trace.values().filter(|s| s.id != root.id) {
        assert!(
            trace.contains_key(&span.parent),
            "span {} ({}) has parent {:?}, which is not in the trace\n{tree}",
            span.name,
            span.id,
            span.parent
        );
    }
    // Each hop descends from the one before it, the first from the gateway span.
    let mut previous = root.clone();
    for hop in HOPS {
        let span = trace
            .values()
            .filter(|s| s.name == *hop)
            .find(|s| descends_from(&trace, s, &previous.id))
            .unwrap_or_else(|| {
                panic!(
                    "no {hop} span descends from {} ({})\n{tree}",
                    previous.name, previous.id
                )
            });
        previous = span.clone();
    }

    sys.stop().await;
    let guard = Arc::try_unwrap(guard).expect("sole guard");
    let _ = tokio::task::spawn_blocking(move || guard.shutdown()).await;
    let _ = stop_receiver.send(());
}
