//! Property tests of a seat feed, driven without a network as the unit tests do: a
//! snapshot, then the changes after it delivered in any order (with duplicates and
//! changes older than the snapshot mixed in), read by watchers that poll at random
//! moments and join at random versions.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;

use super::*;

fn event() -> EventId {
    EventId(Uuid::from_u128(9))
}

fn seat_id(i: usize) -> String {
    format!("seat-{i}")
}

#[derive(Debug, Clone)]
struct Change {
    seats: Vec<usize>,
    status: i32,
}

#[derive(Debug, Clone)]
struct Case {
    /// The snapshot's version.
    start: i64,
    /// The snapshot's statuses, by seat.
    statuses: Vec<i32>,
    /// The changes after it: `changes[i]` is version `start + 1 + i`.
    changes: Vec<Change>,
    /// What is delivered, as indexes into `changes` (a permutation, with repeats) or,
    /// for `None`, a change older than the snapshot.
    deliveries: Vec<Option<usize>>,
    /// Before each delivery, which watchers read what is ready.
    polls: Vec<[bool; 3]>,
    /// When the third watcher joins (before that delivery) and at which version it
    /// resumes (a fraction of the versions applied by then).
    join_at: usize,
    join_version: prop::sample::Index,
    resume_buffer: usize,
}

fn case(changes: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    (0i64..1000, 1usize..8, changes).prop_flat_map(|(start, seats, n)| {
        let change = (prop::collection::vec(0..seats, 1..4), 1i32..=3)
            .prop_map(|(seats, status)| Change { seats, status });
        let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
        let extra =
            prop::collection::vec((any::<prop::sample::Index>(), prop::option::of(0..n)), 0..6);
        (
            Just(start),
            prop::collection::vec(1i32..=3, seats),
            prop::collection::vec(change, n),
            order,
            extra,
            prop::collection::vec(any::<[bool; 3]>(), n + 6),
            0..=n,
            any::<prop::sample::Index>(),
            1usize..8,
        )
            .prop_map(
                |(
                    start,
                    statuses,
                    changes,
                    order,
                    extra,
                    polls,
                    join_at,
                    join_version,
                    resume_buffer,
                )| {
                    let mut deliveries: Vec<Option<usize>> = order.into_iter().map(Some).collect();
                    for (at, what) in extra {
                        let at = at.index(deliveries.len() + 1);
                        deliveries.insert(at, what);
                    }
                    let join_at = join_at.min(deliveries.len());
                    Case {
                        start,
                        statuses,
                        changes,
                        deliveries,
                        polls,
                        join_at,
                        join_version,
                        resume_buffer,
                    }
                },
            )
    })
}

fn seats_changed(version: i64, change: &Change) -> SeatsChanged {
    SeatsChanged {
        event_id: event().0.to_string(),
        version,
        reason: 1,
        status: change.status,
        seat_ids: change.seats.iter().map(|s| seat_id(*s)).collect(),
        changed_at: None,
    }
}

/// The statuses after each version: `[0]` is the snapshot's, `[i]` after `changes[..i]`.
fn statuses_by_version(case: &Case) -> Vec<Vec<i32>> {
    let mut states = vec![case.statuses.clone()];
    for change in &case.changes {
        let mut next = states.last().expect("one at least").clone();
        for seat in &change.seats {
            next[*seat] = change.status;
        }
        states.push(next);
    }
    states
}

type NextUpdate = Pin<Box<dyn Future<Output = Option<(SeatUpdate, Watcher)>>>>;

/// A watcher read the way its gRPC stream reads it, and what its client now shows.
struct Client {
    next: Option<NextUpdate>,
    /// The version the client's map is at, once it has one.
    version: Option<i64>,
    statuses: Vec<i32>,
    updates: usize,
}

impl Client {
    fn watch(feed: &Arc<Feed>, start: Start, known: Option<(i64, Vec<i32>)>) -> Self {
        feed.watchers.fetch_add(1, Ordering::AcqRel);
        let (rx, first) = feed.subscribe(start);
        let watcher = Watcher {
            first: first.into(),
            rx,
            at: match start {
                Start::After(v) => v,
                Start::Snapshot => -1,
            },
            feed: feed.clone(),
            lagged: false,
            _watching: Watching(feed.clone()),
        };
        let (version, statuses) = match known {
            Some((v, s)) => (Some(v), s),
            None => (None, Vec::new()),
        };
        Self {
            next: Some(Box::pin(watcher.next())),
            version,
            statuses,
            updates: 0,
        }
    }

    /// Reads every update that is ready and applies it as a client does, checking that
    /// no version comes twice, out of order or with a hole before it.
    fn read(&mut self) -> Result<(), TestCaseError> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Some(next) = self.next.as_mut() {
            let (update, watcher) = match next.as_mut().poll(&mut cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(None) => {
                    self.next = None;
                    return Ok(());
                }
                Poll::Ready(Some(ready)) => ready,
            };
            self.updates += 1;
            match &update.kind {
                Some(seat_update::Kind::Snapshot(snapshot)) => {
                    // Here nothing re-reads the snapshot, so a snapshot always brings
                    // the client something new: the whole map at a later version.
                    prop_assert!(
                        self.version.is_none_or(|v| snapshot.version > v),
                        "a snapshot at {} after version {:?}",
                        snapshot.version,
                        self.version
                    );
                    prop_assert_eq!(update.version, snapshot.version);
                    self.version = Some(snapshot.version);
                    let index: HashMap<&str, i32> = snapshot
                        .seats
                        .iter()
                        .map(|s| (s.seat_id.as_str(), s.status))
                        .collect();
                    self.statuses = (0..index.len())
                        .map(|i| index[seat_id(i).as_str()])
                        .collect();
                }
                Some(seat_update::Kind::Changes(changes)) => {
                    let Some(mut version) = self.version else {
                        return Err(TestCaseError::fail(
                            "changes before any snapshot or resume point",
                        ));
                    };
                    prop_assert!(!changes.items.is_empty());
                    for item in &changes.items {
                        prop_assert_eq!(item.version, version + 1, "after version {}", version);
                        version = item.version;
                        for seat in &item.seat_ids {
                            let i: usize = seat["seat-".len()..].parse().expect("our seat ids");
                            self.statuses[i] = item.status;
                        }
                    }
                    prop_assert_eq!(update.version, version, "an update is at its last change");
                    self.version = Some(version);
                }
                None => return Err(TestCaseError::fail("an update without a kind")),
            }
            self.next = Some(Box::pin(watcher.next()));
        }
        Ok(())
    }
}

/// Delivers `case` to a feed and checks the feed and its watchers.
fn check(case: Case) -> Result<(), TestCaseError> {
    let states = statuses_by_version(&case);
    let end = case.start + case.changes.len() as i64;
    let feed = Arc::new(Feed::new(event(), case.resume_buffer));
    feed.install(SeatSnapshot {
        event_id: event().0.to_string(),
        version: case.start,
        seats: case
            .statuses
            .iter()
            .enumerate()
            .map(|(i, status)| SeatState {
                seat_id: seat_id(i),
                status: *status,
            })
            .collect(),
    });
    // One more watcher reads only at the end: past WATCHER_BUFFER updates it has
    // fallen behind, and is resynced with a snapshot.
    let lazy = Client::watch(&feed, Start::Snapshot, None);
    let mut clients = vec![
        Client::watch(&feed, Start::Snapshot, None),
        Client::watch(
            &feed,
            Start::After(case.start),
            Some((case.start, case.statuses.clone())),
        ),
    ];
    for (step, delivery) in case.deliveries.iter().enumerate() {
        if step == case.join_at {
            let applied = feed.state().version;
            let resume =
                case.start + case.join_version.index((applied - case.start) as usize + 1) as i64;
            let known = states[(resume - case.start) as usize].clone();
            clients.push(Client::watch(
                &feed,
                Start::After(resume),
                Some((resume, known)),
            ));
        }
        for (client, poll) in clients.iter_mut().zip(case.polls[step]) {
            if poll {
                client.read()?;
            }
        }
        let change = match delivery {
            Some(i) => seats_changed(case.start + 1 + *i as i64, &case.changes[*i]),
            // Older than the snapshot, and not what the snapshot says: must be ignored.
            None => seats_changed(
                case.start,
                &Change {
                    seats: vec![0],
                    status: 9,
                },
            ),
        };
        feed.offer(change);
    }

    {
        let state = feed.state();
        prop_assert_eq!(state.version, end);
        let statuses: Vec<i32> = state.seats.iter().map(|s| s.status).collect();
        prop_assert_eq!(&statuses, &states[case.changes.len()]);
        prop_assert!(
            state.pending.is_empty() && state.gap_since.is_none(),
            "nothing left waiting"
        );
        prop_assert!(state.recent.len() <= case.resume_buffer);
    }
    clients.push(lazy);
    for (n, client) in clients.iter_mut().enumerate() {
        client.read()?;
        prop_assert_eq!(
            client.version,
            Some(end),
            "watcher {} ends at the feed's version",
            n
        );
        prop_assert_eq!(
            &client.statuses,
            &states[case.changes.len()],
            "watcher {} shows the feed's seats",
            n
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn changes_in_any_order_end_where_applying_them_in_order_ends(case in case(1..40)) {
        check(case)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// More changes than a watcher's broadcast buffer holds: the watcher that reads
    /// only at the end lags and is resynced, and still never sees a version twice.
    #[test]
    fn a_watcher_that_falls_behind_is_resynced_without_repeating_a_version(
        case in case(WATCHER_BUFFER + 1..WATCHER_BUFFER + 80)
    ) {
        check(case)?;
    }
}
