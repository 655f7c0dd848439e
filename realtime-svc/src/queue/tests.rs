use std::collections::VecDeque;

use super::*;

const EVENT: &str = "0b0e7c1e-0000-4000-8000-000000000001";

fn advance(opened: bool, admitted: i64, joined: i64, rate: f64, at: i64) -> QueueAdvanced {
    QueueAdvanced {
        event_id: EVENT.into(),
        opened,
        admitted,
        joined,
        admit_rate: rate,
        at: Some(prost_types::Timestamp {
            seconds: at,
            nanos: 0,
        }),
    }
}

fn progress(opened: bool, admitted: i64, rate: f64) -> Progress {
    let mut progress = Progress::default();
    progress.merge(&advance(opened, admitted, admitted, rate, 1));
    progress
}

fn ticket(state: QueueTicketState, number: i64, position: i64, eta: i64) -> QueueTicket {
    QueueTicket {
        ticket_id: "ticket-1".into(),
        event_id: EVENT.into(),
        state: state as i32,
        number,
        position,
        eta_seconds: eta,
        ..QueueTicket::default()
    }
}

fn waiting(number: i64, position: i64, eta: i64) -> QueueTicket {
    ticket(QueueTicketState::Waiting, number, position, eta)
}

fn admitted(number: i64) -> QueueTicket {
    QueueTicket {
        admission_token: "signed".into(),
        ..ticket(QueueTicketState::Admitted, number, 0, 0)
    }
}

// ---- merge ----

#[test]
fn counts_keep_the_largest_seen_and_opened_stays_opened() {
    let mut p = Progress::default();
    assert!(p.merge(&advance(true, 10, 100, 2.0, 5)));
    assert!(p.merge(&advance(false, 7, 120, 2.0, 5)), "joined grew");
    assert!(p.opened);
    assert_eq!((p.admitted, p.joined), (10, 120));
    assert!(p.merge(&advance(false, 12, 90, 2.0, 5)));
    assert_eq!((p.admitted, p.joined), (12, 120));
}

#[test]
fn the_rate_is_the_latest_by_at_not_by_arrival() {
    let mut p = Progress::default();
    p.merge(&advance(true, 10, 10, 2.0, 20));
    assert!(
        !p.merge(&advance(true, 10, 10, 9.0, 19)),
        "older pace ignored"
    );
    assert_eq!(p.admit_rate, 2.0);
    assert!(p.merge(&advance(true, 10, 10, 0.5, 21)));
    assert_eq!(p.admit_rate, 0.5);
    // Without `at`, an advance's pace is older than any with one.
    let mut late = advance(true, 10, 10, 7.0, 0);
    late.at = None;
    assert!(!p.merge(&late));
    assert_eq!(p.admit_rate, 0.5);
    let mut fresh = Progress::default();
    assert!(fresh.merge(&late));
    assert_eq!(fresh.admit_rate, 7.0);
}

#[test]
fn a_repeated_or_late_advance_changes_nothing() {
    let mut p = Progress::default();
    let a = advance(true, 10, 50, 2.0, 20);
    assert!(p.merge(&a));
    assert!(!p.merge(&a));
    assert!(!p.merge(&advance(false, 3, 20, 1.0, 10)));
}

#[test]
fn a_bad_rate_counts_as_no_pace() {
    for bad in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
        let mut p = Progress::default();
        p.merge(&advance(true, 1, 1, bad, 1));
        assert_eq!(p.admit_rate, 0.0, "{bad}");
    }
}

// ---- place ----

#[test]
fn position_is_those_ahead_still_waiting_and_eta_rounds_up() {
    let p = progress(true, 10, 2.0);
    assert_eq!(place(10, &p), Place::Admitted);
    assert_eq!(place(3, &p), Place::Admitted);
    assert_eq!(
        place(11, &p),
        Place::Waiting {
            position: 0,
            eta_seconds: Some(1)
        }
    );
    assert_eq!(
        place(15, &p),
        Place::Waiting {
            position: 4,
            eta_seconds: Some(3)
        }
    );
    assert_eq!(
        place(16, &p),
        Place::Waiting {
            position: 5,
            eta_seconds: Some(3)
        }
    );
    assert_eq!(
        place(15, &progress(true, 10, 0.0)),
        Place::Waiting {
            position: 4,
            eta_seconds: None
        }
    );
    assert_eq!(
        place(i64::MAX, &progress(true, 0, 1e-300)),
        Place::Waiting {
            position: i64::MAX - 1,
            eta_seconds: Some(i64::MAX)
        }
    );
}

// ---- decide ----

#[test]
fn a_waiting_ticket_moves_up_with_the_advances() {
    let t = waiting(15, 9, 5);
    assert_eq!(
        decide(&t, &progress(true, 10, 2.0)),
        Decision::Send(waiting(15, 4, 3))
    );
    // Same place, new pace: the ETA alone changed.
    assert_eq!(
        decide(&waiting(15, 4, 3), &progress(true, 10, 1.0)),
        Decision::Send(waiting(15, 4, 5))
    );
    // Without a pace the ETA stays as it was.
    assert_eq!(
        decide(&t, &progress(true, 10, 0.0)),
        Decision::Send(waiting(15, 4, 5))
    );
}

#[test]
fn nothing_changed_or_an_advance_behind_the_ticket_sends_nothing() {
    assert_eq!(
        decide(&waiting(15, 4, 3), &progress(true, 10, 2.0)),
        Decision::Nothing
    );
    // This replica missed advances booking-svc made: no going back in line.
    assert_eq!(
        decide(&waiting(15, 4, 3), &progress(true, 2, 2.0)),
        Decision::Nothing
    );
    assert_eq!(
        decide(&waiting(15, 4, 3), &Progress::default()),
        Decision::Nothing
    );
}

#[test]
fn an_admitted_number_is_read_again_for_its_token() {
    assert_eq!(
        decide(&waiting(10, 0, 1), &progress(true, 10, 2.0)),
        Decision::Refetch
    );
    assert_eq!(
        decide(&waiting(3, 0, 1), &progress(true, 10, 2.0)),
        Decision::Refetch
    );
}

#[test]
fn a_ticket_before_the_opening_is_read_again_once_the_queue_opened() {
    let t = ticket(QueueTicketState::BeforeOpening, 0, 0, 60);
    assert_eq!(decide(&t, &progress(false, 0, 0.0)), Decision::Nothing);
    assert_eq!(decide(&t, &progress(true, 0, 0.0)), Decision::Refetch);
}

#[test]
fn final_and_unknown_tickets_ignore_advances() {
    let p = progress(true, 100, 2.0);
    for state in [
        QueueTicketState::Admitted,
        QueueTicketState::Expired,
        QueueTicketState::Used,
        QueueTicketState::Unspecified,
    ] {
        assert_eq!(decide(&ticket(state, 5, 0, 0), &p), Decision::Nothing);
    }
    let mut unknown = waiting(5, 0, 0);
    unknown.state = 42;
    assert_eq!(decide(&unknown, &p), Decision::Nothing);
    // A WAITING ticket without a number is booking-svc's to fix; the timer re-reads it.
    assert_eq!(decide(&waiting(0, 0, 0), &p), Decision::Nothing);
}

#[test]
fn ticket_ids_are_opaque_but_bounded() {
    assert!(TicketId::parse("").is_err());
    assert!(TicketId::parse(&"x".repeat(129)).is_err());
    assert!(TicketId::parse(&"x".repeat(128)).is_ok());
    assert!(
        TicketId::parse(&"é".repeat(128)).is_ok(),
        "characters, not bytes"
    );
    assert_eq!(
        TicketId::parse("qt_01J9 anything")
            .map(|id| id.as_str().to_owned())
            .ok(),
        Some("qt_01J9 anything".to_owned())
    );
    let error = TicketId::parse("").err().map(tonic::Status::from);
    assert_eq!(
        error.as_ref().map(tonic::Status::code),
        Some(tonic::Code::InvalidArgument)
    );
    assert!(error.is_some_and(|s| s.message().starts_with("ticketId")));
}

// ---- the watcher, with booking-svc's answers scripted ----

type Answer = Result<QueueTicket, RealtimeError>;

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    causes: Mutex<Vec<&'static str>>,
}

impl Script {
    fn new(answers: impl IntoIterator<Item = Answer>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into_iter().collect()),
            causes: Mutex::default(),
        })
    }

    fn causes(&self) -> Vec<&'static str> {
        self.causes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// A reader answering from the script; `on_read` runs before each answer.
    fn reader(self: &Arc<Self>, on_read: impl Fn(usize) + Send + Sync + 'static) -> Reader {
        let script = self.clone();
        Arc::new(move |cause| {
            let read = {
                let mut causes = script.causes.lock().expect("causes");
                causes.push(cause);
                causes.len()
            };
            on_read(read);
            let answer = script
                .answers
                .lock()
                .expect("answers")
                .pop_front()
                .unwrap_or_else(|| {
                    Err(RealtimeError::Upstream(tonic::Status::unavailable(
                        "no more answers",
                    )))
                });
            futures::future::ready(answer).boxed()
        })
    }
}

fn hub(refresh: Duration) -> Arc<QueueHub> {
    // Never called: the tests read through scripts.
    let channel = marquee_infra::grpc::lazy_channel("http://127.0.0.1:1").expect("channel");
    QueueHub::new(
        WaitingRoomServiceClient::with_interceptor(channel, PropagateTrace),
        refresh,
    )
}

const QUIET: Duration = Duration::from_secs(3600);

fn id() -> TicketId {
    TicketId::parse("ticket-1").expect("id")
}

async fn next(updates: &mut TicketUpdates) -> Option<QueueTicket> {
    match tokio::time::timeout(Duration::from_secs(5), updates.next()).await {
        Ok(Some(Ok(update))) => update.ticket,
        Ok(Some(Err(error))) => panic!("stream failed: {error}"),
        Ok(None) => None,
        Err(_) => panic!("no update within 5 s"),
    }
}

/// Nothing arrives for a while (the stream neither sends nor ends).
async fn quiet(updates: &mut TicketUpdates) {
    let got = tokio::time::timeout(Duration::from_millis(150), updates.next()).await;
    assert!(got.is_err(), "expected nothing, got {got:?}");
}

fn room_count(hub: &QueueHub) -> usize {
    hub.rooms().by_event.len()
}

#[tokio::test]
async fn a_final_ticket_is_sent_and_the_stream_ends_without_a_room() {
    let hub = hub(QUIET);
    let script = Script::new([Ok(admitted(3))]);
    let mut updates = hub
        .watch_with(&id(), script.reader(|_| ()))
        .await
        .expect("watch");
    assert_eq!(next(&mut updates).await, Some(admitted(3)));
    assert_eq!(room_count(&hub), 0);
    assert_eq!(next(&mut updates).await, None);
}

#[tokio::test]
async fn a_refused_watch_leaves_no_room_behind() {
    let hub = hub(QUIET);
    let script = Script::new([Err(RealtimeError::Upstream(tonic::Status::not_found(
        "no such ticket",
    )))]);
    let refused = hub.watch_with(&id(), script.reader(|_| ())).await;
    assert!(
        matches!(refused, Err(RealtimeError::Upstream(s)) if s.code() == tonic::Code::NotFound)
    );
    assert_eq!(room_count(&hub), 0);
}

#[tokio::test]
async fn a_waiting_ticket_follows_the_advances_until_admitted() {
    let hub = hub(QUIET);
    let script = Script::new([Ok(waiting(15, 9, 5)), Ok(admitted(15))]);
    let mut updates = hub
        .watch_with(&id(), script.reader(|_| ()))
        .await
        .expect("watch");
    assert_eq!(next(&mut updates).await, Some(waiting(15, 9, 5)));
    assert_eq!(room_count(&hub), 1);

    hub.on_advance(&advance(true, 10, 40, 2.0, 1));
    assert_eq!(next(&mut updates).await, Some(waiting(15, 4, 3)));
    // Repeated, late, or for another event: nothing to send.
    hub.on_advance(&advance(true, 10, 40, 2.0, 1));
    hub.on_advance(&advance(true, 8, 30, 2.0, 0));
    hub.on_advance(&QueueAdvanced {
        event_id: "other".into(),
        ..advance(true, 100, 100, 9.0, 2)
    });
    quiet(&mut updates).await;

    // Admitted: read again for the token, sent, and the end.
    hub.on_advance(&advance(true, 20, 40, 2.0, 2));
    assert_eq!(next(&mut updates).await, Some(admitted(15)));
    assert_eq!(next(&mut updates).await, None);
    assert_eq!(script.causes(), ["start", "admitted"]);
    drop(updates);
    assert_eq!(room_count(&hub), 0, "the last watcher took its room along");
}

#[tokio::test]
async fn watchers_of_one_event_share_a_room_that_goes_with_the_last() {
    let hub = hub(QUIET);
    let one = Script::new([Ok(waiting(15, 9, 5))]);
    let two = Script::new([Ok(waiting(30, 24, 12))]);
    let mut first = hub
        .watch_with(&id(), one.reader(|_| ()))
        .await
        .expect("watch");
    let mut second = hub
        .watch_with(&id(), two.reader(|_| ()))
        .await
        .expect("watch");
    next(&mut first).await;
    next(&mut second).await;
    assert_eq!(room_count(&hub), 1);
    hub.on_advance(&advance(true, 10, 40, 2.0, 1));
    assert_eq!(next(&mut first).await, Some(waiting(15, 4, 3)));
    assert_eq!(next(&mut second).await, Some(waiting(30, 19, 10)));
    drop(first);
    assert_eq!(room_count(&hub), 1);
    drop(second);
    assert_eq!(room_count(&hub), 0);
}

#[tokio::test]
async fn a_watcher_joining_a_room_sees_what_it_merged_at_once() {
    let hub = hub(QUIET);
    let early = Script::new([Ok(waiting(30, 24, 12))]);
    let mut early_updates = hub
        .watch_with(&id(), early.reader(|_| ()))
        .await
        .expect("watch");
    next(&mut early_updates).await;
    hub.on_advance(&advance(true, 10, 40, 2.0, 1));
    next(&mut early_updates).await;

    // booking-svc answered before it admitted the 10 (an old read): the room knows.
    let late = Script::new([Ok(waiting(15, 9, 5))]);
    let mut late_updates = hub
        .watch_with(&id(), late.reader(|_| ()))
        .await
        .expect("watch");
    assert_eq!(next(&mut late_updates).await, Some(waiting(15, 9, 5)));
    assert_eq!(next(&mut late_updates).await, Some(waiting(15, 4, 3)));
    assert_eq!(late.causes(), ["start"]);
}

#[tokio::test]
async fn an_advance_between_the_first_read_and_a_new_room_is_not_lost() {
    let hub = hub(QUIET);
    let script = Script::new([Ok(waiting(15, 9, 5)), Ok(waiting(15, 4, 3))]);
    let during = hub.clone();
    // While the first read travels, the event advances (nobody here watches it yet).
    let reader = script.reader(move |read| {
        if read == 1 {
            during.on_advance(&advance(true, 10, 40, 2.0, 1));
        }
    });
    let mut updates = hub.watch_with(&id(), reader).await.expect("watch");
    assert_eq!(next(&mut updates).await, Some(waiting(15, 4, 3)));
    assert_eq!(script.causes(), ["start", "joined"]);
}

#[tokio::test]
async fn no_advance_between_the_first_read_and_a_new_room_costs_no_second_read() {
    let hub = hub(QUIET);
    hub.on_advance(&advance(true, 10, 40, 2.0, 1));
    let script = Script::new([Ok(waiting(15, 4, 3))]);
    let mut updates = hub
        .watch_with(&id(), script.reader(|_| ()))
        .await
        .expect("watch");
    next(&mut updates).await;
    assert_eq!(script.causes(), ["start"]);
}

#[tokio::test]
async fn the_opening_draws_a_number_which_may_already_be_admitted() {
    let hub = hub(QUIET);
    let before = ticket(QueueTicketState::BeforeOpening, 0, 0, 60);
    let script = Script::new([
        Ok(before.clone()),
        // Re-read at the opening: drawn 5, but 8 are admitted by now.
        Ok(waiting(5, 0, 1)),
        Ok(admitted(5)),
    ]);
    let mut updates = hub
        .watch_with(&id(), script.reader(|_| ()))
        .await
        .expect("watch");
    assert_eq!(next(&mut updates).await, Some(before));
    hub.on_advance(&advance(false, 0, 40, 0.0, 1));
    quiet(&mut updates).await;
    hub.on_advance(&advance(true, 8, 40, 2.0, 2));
    assert_eq!(next(&mut updates).await, Some(waiting(5, 0, 1)));
    assert_eq!(next(&mut updates).await, Some(admitted(5)));
    assert_eq!(next(&mut updates).await, None);
    assert_eq!(script.causes(), ["start", "opened", "admitted"]);
}

#[tokio::test]
async fn an_answer_lagging_behind_the_advance_is_not_asked_again_until_the_timer() {
    let hub = hub(QUIET);
    let script = Script::new([Ok(waiting(10, 0, 1)), Ok(waiting(10, 0, 1))]);
    let mut updates = hub
        .watch_with(&id(), script.reader(|_| ()))
        .await
        .expect("watch");
    next(&mut updates).await;
    hub.on_advance(&advance(true, 10, 40, 2.0, 1));
    quiet(&mut updates).await;
    // Another advance that changes nothing about this ticket's admission.
    hub.on_advance(&advance(true, 10, 50, 2.0, 2));
    quiet(&mut updates).await;
    assert_eq!(script.causes(), ["start", "admitted"]);
}

#[tokio::test]
async fn the_timer_rereads_the_ticket_when_notifications_are_lost() {
    let hub = hub(Duration::from_millis(200));
    let script = Script::new([
        Ok(waiting(15, 9, 5)),
        Err(RealtimeError::Upstream(tonic::Status::unavailable(
            "restarting",
        ))),
        Ok(waiting(15, 9, 5)),
        Ok(admitted(15)),
    ]);
    let mut updates = hub
        .watch_with(&id(), script.reader(|_| ()))
        .await
        .expect("watch");
    assert_eq!(next(&mut updates).await, Some(waiting(15, 9, 5)));
    // A failed re-read and an unchanged answer send nothing; the admission arrives.
    assert_eq!(next(&mut updates).await, Some(admitted(15)));
    assert_eq!(next(&mut updates).await, None);
    assert_eq!(script.causes(), ["start", "refresh", "refresh", "refresh"]);
}

#[tokio::test]
async fn a_ticket_gone_on_a_reread_ends_the_stream_with_the_error() {
    let hub = hub(Duration::from_millis(100));
    let script = Script::new([
        Ok(waiting(15, 9, 5)),
        Err(RealtimeError::Upstream(tonic::Status::unauthenticated(
            "token expired",
        ))),
    ]);
    let mut updates = hub
        .watch_with(&id(), script.reader(|_| ()))
        .await
        .expect("watch");
    next(&mut updates).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), updates.next()).await;
    let Ok(Some(Err(error))) = ended else {
        panic!("expected the error, got {ended:?}");
    };
    assert_eq!(
        tonic::Status::from(error).code(),
        tonic::Code::Unauthenticated
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), updates.next())
            .await
            .is_ok_and(|end| end.is_none())
    );
}

#[test]
fn the_first_reread_is_in_the_second_half_of_the_period() {
    let period = Duration::from_secs(5);
    let firsts: Vec<Duration> = (0..50)
        .map(|n| {
            first_refresh(
                &TicketId::parse(&format!("ticket-{n}")).expect("id"),
                period,
            )
        })
        .collect();
    assert!(
        firsts
            .iter()
            .all(|first| *first >= period / 2 && *first < period),
        "{firsts:?}"
    );
    assert!(
        firsts.iter().any(|first| *first != firsts[0]),
        "spread: {firsts:?}"
    );
}
