//! The saga timeline support and SREs read (`GET /v1/admin/sagas/{booking_id}`, ADMIN
//! only), the buyer's status history (`GET /v1/bookings/{id}`'s `history`), against the
//! whole system: a wallet purchase, a booking cancelled by its payment deadline (whose
//! late payment is refunded), and a card charge whose answer the PSP dropped.
//!
//! The steps carry the OpenTelemetry trace they ran in, so this binary installs a
//! tracer (process-global, exporting to a receiver that discards the spans) before any
//! system starts.

use std::sync::OnceLock;
use std::time::Duration;

use marquee_e2e::{Options, System};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

const PRICE: i64 = 20_000;

/// An OTLP receiver that accepts every span and keeps none.
struct Discard;

#[tonic::async_trait]
impl TraceService for Discard {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Installs the tracer once for the whole binary: the receiver and the exporter run on
/// a runtime of their own that outlives every test's runtime.
fn traced() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let (ready, started) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("telemetry runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind otlp");
                let port = listener.local_addr().expect("otlp addr").port();
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(Discard))
                        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
                );
                let guard = marquee_infra::telemetry::init_with_endpoint(
                    "marquee-e2e",
                    Some(&format!("http://127.0.0.1:{port}")),
                );
                let _ = ready.send(());
                // Keeps the provider and this runtime alive until the process exits.
                std::future::pending::<()>().await;
                drop(guard);
            });
        });
        started.recv().expect("telemetry started");
    });
}

/// The text at `key` of a JSON object, "" when absent (proto3 JSON omits defaults).
fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A buyer holding one seat of a fresh event: (buyer token, hold id).
async fn held_seat(sys: &System) -> (String, String) {
    let (_, event_id) = sys.seller_event(&[("R", PRICE, 1, 4)], 0).await;
    let (_, buyer) = sys.account("BUYER").await;
    let seat = sys.seat_ids(&event_id).await.remove(0);
    let hold = sys.hold(&buyer, &event_id, &[seat]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    (buyer, hold.str("/holdId"))
}

async fn pay_by_card(sys: &System, buyer: &str, hold_id: &str, token: &str) -> String {
    let reply = sys
        .call(
            Method::POST,
            "/v1/bookings",
            Some(buyer),
            Some(json!({"holdId": hold_id, "paymentMethod": "CARD", "cardToken": token})),
            &[("Idempotency-Key", &Uuid::new_v4().to_string())],
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    reply.str("/bookingId")
}

/// The admin timeline of a booking: (booking, steps).
async fn timeline(sys: &System, admin: &str, booking_id: &str) -> (Value, Vec<Value>) {
    let reply = sys
        .get(&format!("/v1/admin/sagas/{booking_id}"), Some(admin))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let steps = reply.body["steps"].as_array().cloned().unwrap_or_default();
    (reply.body["booking"].clone(), steps)
}

/// Polls the timeline until `done` holds (panics after 20 s, showing the timeline).
async fn timeline_until(
    sys: &System,
    admin: &str,
    booking_id: &str,
    done: impl Fn(&[Value]) -> bool,
) -> (Value, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (booking, steps) = timeline(sys, admin, booking_id).await;
        if done(&steps) {
            return (booking, steps);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timeline of {booking_id} never complete: {}",
            render(&steps)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One line per step, for failure messages.
fn render(steps: &[Value]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {}→{} {}{} {} attempt={} outcome={:?} reason={:?} detail={:?} trace={}",
                text(s, "at"),
                text(s, "service"),
                text(s, "kind"),
                text(s, "fromStatus"),
                text(s, "toStatus"),
                text(s, "operation"),
                text(s, "messageType"),
                text(s, "messageId"),
                s.get("attempt").and_then(Value::as_i64).unwrap_or(0),
                text(s, "outcome"),
                text(s, "reason"),
                text(s, "detail"),
                text(s, "traceId"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a step must be: its service and kind, and every (field, value) given.
struct Want {
    service: &'static str,
    kind: &'static str,
    fields: &'static [(&'static str, &'static str)],
}

const fn want(
    service: &'static str,
    kind: &'static str,
    fields: &'static [(&'static str, &'static str)],
) -> Want {
    Want {
        service,
        kind,
        fields,
    }
}

fn matches(step: &Value, want: &Want) -> bool {
    text(step, "service") == want.service
        && text(step, "kind") == want.kind
        && want.fields.iter().all(|(k, v)| text(step, k) == *v)
}

/// The index of each wanted step, each found after the one before it; `None` when
/// one is missing.
fn in_order(steps: &[Value], wanted: &[Want]) -> Option<Vec<usize>> {
    let mut at = 0;
    let mut found = Vec::new();
    for want in wanted {
        let offset = steps[at..].iter().position(|s| matches(s, want))?;
        found.push(at + offset);
        at += offset + 1;
    }
    Some(found)
}

const WALLET_PURCHASE: &[Want] = &[
    want(
        "booking-svc",
        "status",
        &[("toStatus", "PENDING_PAYMENT"), ("outcome", "created")],
    ),
    want(
        "booking-svc",
        "message_sent",
        &[("messageType", "payment.requested")],
    ),
    want(
        "pay-svc",
        "message_received",
        &[
            ("messageType", "payment.requested"),
            ("outcome", "captured"),
        ],
    ),
    want("pay-svc", "wallet", &[("outcome", "debited")]),
    want("pay-svc", "status", &[("toStatus", "CAPTURED")]),
    want(
        "pay-svc",
        "message_sent",
        &[("messageType", "payment.succeeded")],
    ),
    want(
        "booking-svc",
        "message_received",
        &[("messageType", "payment.succeeded"), ("outcome", "applied")],
    ),
    want(
        "booking-svc",
        "status",
        &[("fromStatus", "PENDING_PAYMENT"), ("toStatus", "CONFIRMED")],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_purchase_is_one_ordered_traced_timeline_and_the_buyer_sees_its_history() {
    traced();
    let sys = System::start().await;
    let (_, admin) = sys.admin().await;
    let (_, event_id) = sys.seller_event(&[("A", PRICE, 1, 4)], 0).await;
    let (_, buyer) = sys.account("BUYER").await;
    let seat = sys.seat_ids(&event_id).await.remove(0);
    let hold = sys.hold(&buyer, &event_id, &[seat]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booked = sys
        .checkout(&buyer, &hold.str("/holdId"), "saga-admin-wallet")
        .await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    let booking_id = booked.str("/bookingId");
    sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;

    let (booking, steps) = timeline_until(&sys, &admin, &booking_id, |steps| {
        in_order(steps, WALLET_PURCHASE).is_some()
    })
    .await;
    assert_eq!(text(&booking, "bookingId"), booking_id);
    assert_eq!(text(&booking, "status"), "CONFIRMED");
    assert_eq!(text(&booking, "paymentMethod"), "WALLET");
    assert_eq!(booking["amount"]["amountMinor"], json!(PRICE.to_string()));
    assert!(!text(&booking, "createdAt").is_empty(), "{booking:?}");

    // In time order, and every step of the purchase in one trace.
    let ats: Vec<chrono::DateTime<chrono::Utc>> = steps
        .iter()
        .map(|s| text(s, "at").parse().expect("step time"))
        .collect();
    assert!(ats.is_sorted(), "{}", render(&steps));
    let purchase = in_order(&steps, WALLET_PURCHASE).expect("checked above");
    let trace = text(&steps[purchase[0]], "traceId");
    assert_eq!(trace.len(), 32, "a trace id: {}", render(&steps));
    for index in &purchase {
        assert_eq!(
            text(&steps[*index], "traceId"),
            trace,
            "step {index} in another trace:\n{}",
            render(&steps)
        );
    }
    // The message sent is the message received: same ids across the services.
    let sent = text(&steps[purchase[1]], "messageId");
    assert_eq!(text(&steps[purchase[2]], "messageId"), sent);
    let replied = text(&steps[purchase[5]], "messageId");
    assert_eq!(text(&steps[purchase[6]], "messageId"), replied);
    assert!(!sent.is_empty() && !replied.is_empty() && sent != replied);

    // The buyer sees the status changes, nothing internal.
    let mine = sys
        .get(&format!("/v1/bookings/{booking_id}"), Some(&buyer))
        .await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    let history = mine.body["history"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<String> = history.iter().map(|h| text(h, "status")).collect();
    assert_eq!(statuses, ["PENDING_PAYMENT", "CONFIRMED"], "{history:?}");
    for change in &history {
        let keys: Vec<&String> = change.as_object().expect("object").keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["status", "reason", "at"].contains(&k.as_str())),
            "{change:?}"
        );
    }
    // The list leaves the history out.
    let listed = sys.get("/v1/bookings", Some(&buyer)).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert!(
        listed.body["bookings"][0]
            .get("history")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty),
        "{:?}",
        listed.body
    );
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_route_is_for_admins_and_answers_404_and_400() {
    let sys = System::start().await;
    let (_, admin) = sys.admin().await;
    let (buyer, hold_id) = held_seat(&sys).await;
    let booked = sys.checkout(&buyer, &hold_id, "saga-admin-403").await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    let booking_id = booked.str("/bookingId");

    // A buyer may not read a timeline, not even of their own booking.
    let denied = sys
        .get(&format!("/v1/admin/sagas/{booking_id}"), Some(&buyer))
        .await;
    assert_eq!(denied.status, 403, "{:?}", denied.body);
    let anonymous = sys
        .get(&format!("/v1/admin/sagas/{booking_id}"), None)
        .await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
    // pay-svc checks the role itself too: a buyer's token is refused there.
    let mut pay =
        marquee_proto::pay::payment_admin_service_client::PaymentAdminServiceClient::connect(
            format!("http://127.0.0.1:{}", sys.pay_port),
        )
        .await
        .expect("pay-svc");
    let mut request = tonic::Request::new(marquee_proto::pay::ListPaymentStepsRequest {
        booking_id: booking_id.clone(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {buyer}").parse().expect("header"),
    );
    let refused = pay
        .list_payment_steps(request)
        .await
        .expect_err("a buyer is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let unknown = sys
        .get(&format!("/v1/admin/sagas/{}", Uuid::new_v4()), Some(&admin))
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    let malformed = sys.get("/v1/admin/sagas/not-a-uuid", Some(&admin)).await;
    assert_eq!(malformed.status, 400, "{:?}", malformed.body);
    let (booking, _) = timeline(&sys, &admin, &booking_id).await;
    assert_eq!(text(&booking, "bookingId"), booking_id);

    // The gateway documents the route; pay-svc's internal RPC has none.
    let doc = sys.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    let route = &doc.body["paths"]["/v1/admin/sagas/{bookingId}"]["get"];
    assert_eq!(
        route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/marquee.booking.v1.SagaTimeline",
        "{route:?}"
    );
    let documented = doc.body.to_string();
    assert!(!documented.contains("ListPaymentSteps"));
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_past_its_deadline_shows_why_and_its_late_payment_refunded() {
    // The deadline (1 s) passes while the PSP is still answering the charge (3 s;
    // pay-svc waits up to 5 s for it, so the charge is not resolved any sooner by an
    // inquiry).
    let sys = System::start_with(Options {
        payment_deadline: Duration::from_secs(1),
        psp_slow: Duration::from_secs(3),
        psp_timeout: Duration::from_secs(5),
        ..Options::default()
    })
    .await;
    let (_, admin) = sys.admin().await;
    let (buyer, hold_id) = held_seat(&sys).await;
    let booking_id = pay_by_card(&sys, &buyer, &hold_id, "tok_slow").await;
    let cancelled = sys.await_booking(&buyer, &booking_id, "CANCELLED").await;
    let history = cancelled["history"].as_array().cloned().unwrap_or_default();
    let seen: Vec<(String, String)> = history
        .iter()
        .map(|h| (text(h, "status"), text(h, "reason")))
        .collect();
    assert_eq!(
        seen,
        [
            ("PENDING_PAYMENT".to_owned(), String::new()),
            ("CANCELLED".to_owned(), "payment deadline passed".to_owned()),
        ],
        "{history:?}"
    );

    // The late capture is refunded, and the timeline tells the whole story.
    let story = [
        want("booking-svc", "status", &[("toStatus", "PENDING_PAYMENT")]),
        want("booking-svc", "deadline", &[("outcome", "passed")]),
        want(
            "booking-svc",
            "status",
            &[
                ("fromStatus", "PENDING_PAYMENT"),
                ("toStatus", "CANCELLED"),
                ("reason", "payment deadline passed"),
            ],
        ),
        want(
            "booking-svc",
            "message_received",
            &[
                ("messageType", "payment.succeeded"),
                ("outcome", "booking cancelled"),
            ],
        ),
        want(
            "booking-svc",
            "message_sent",
            &[("messageType", "refund.requested")],
        ),
        want(
            "pay-svc",
            "message_received",
            &[("messageType", "refund.requested")],
        ),
        want(
            "pay-svc",
            "psp_call",
            &[("operation", "cancel"), ("outcome", "canceled")],
        ),
        want(
            "pay-svc",
            "message_sent",
            &[("messageType", "refund.completed")],
        ),
        want(
            "booking-svc",
            "message_received",
            &[("messageType", "refund.completed"), ("outcome", "ignored")],
        ),
    ];
    let (booking, steps) = timeline_until(&sys, &admin, &booking_id, |steps| {
        in_order(steps, &story).is_some()
    })
    .await;
    assert_eq!(text(&booking, "status"), "CANCELLED");
    assert_eq!(text(&booking, "cancelReason"), "payment deadline passed");
    // The buyer's history did not change after the cancellation.
    let after = sys
        .get(&format!("/v1/bookings/{booking_id}"), Some(&buyer))
        .await;
    assert_eq!(
        after.body["history"].as_array().map(Vec::len),
        Some(2),
        "{:?}\n{}",
        after.body,
        render(&steps)
    );
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_card_charge_shows_one_confirm_then_the_inquiry_that_captured_it() {
    let sys = System::start().await;
    let (_, admin) = sys.admin().await;
    let (buyer, hold_id) = held_seat(&sys).await;
    let booking_id = pay_by_card(&sys, &buyer, &hold_id, "tok_charge_drop").await;
    sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;
    let story = [
        want(
            "pay-svc",
            "message_received",
            &[("messageType", "payment.requested")],
        ),
        want("pay-svc", "status", &[("toStatus", "PENDING")]),
        want(
            "pay-svc",
            "psp_call",
            &[("operation", "confirm"), ("outcome", "unknown")],
        ),
        want(
            "pay-svc",
            "psp_call",
            &[("operation", "inquiry"), ("outcome", "captured")],
        ),
        want(
            "pay-svc",
            "status",
            &[("fromStatus", "PENDING"), ("toStatus", "CAPTURED")],
        ),
        want(
            "pay-svc",
            "message_sent",
            &[("messageType", "payment.succeeded")],
        ),
        want("booking-svc", "status", &[("toStatus", "CONFIRMED")]),
    ];
    let (_, steps) = timeline_until(&sys, &admin, &booking_id, |steps| {
        in_order(steps, &story).is_some()
    })
    .await;
    let found = in_order(&steps, &story).expect("checked above");
    let confirm = &steps[found[2]];
    assert_eq!(confirm["attempt"], json!(1), "{}", render(&steps));
    assert!(
        confirm.get("httpStatus").is_none_or(|s| s == &json!(0)),
        "no answer came back: {}",
        render(&steps)
    );
    let inquiry = &steps[found[3]];
    assert_eq!(inquiry["httpStatus"], json!(200), "{}", render(&steps));
    // One confirm only: the charge was resolved by inquiry, never sent again.
    let confirms = steps
        .iter()
        .filter(|s| text(s, "kind") == "psp_call" && text(s, "operation") == "confirm")
        .count();
    assert_eq!(confirms, 1, "{}", render(&steps));
    sys.stop().await;
}
