//! Best-available holds against the real PostgreSQL, Redis and RabbitMQ: a group asks
//! for a quantity and gets the best block of adjacent seats in one row (the seller's
//! section and row order, the row's centre), never one that strands a single seat when
//! another exists, all or nothing under contention, within the per-buyer limit, 409
//! when no block exists, and the same hold again for a retry with its key.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use booking_svc::accounts::{self, Hasher, NewAccount};
use booking_svc::best;
use booking_svc::bookings::{Bookings, HoldTiming};
use booking_svc::catalog::{
    Catalog, EventDetails, EventInfo, NewEvent, NewRow, NewSeat, NewSection,
};
use booking_svc::changes::ChangeFeed;
use booking_svc::domain::{
    AccountId, BestAvailable, Currency, Email, HoldGranted, IdempotencyKey, Password, Role, SeatId,
    SeatSelection, SeatStatus,
};
use booking_svc::error::BookingError;
use booking_svc::holds::{HoldStore, RedisTimeouts};
use booking_svc::migration::Migrator;
use chrono::Utc;
use futures::FutureExt as _;
use marquee_infra::bus::{Bus, BusConfig};
use marquee_infra::db;
use marquee_infra::outbox::Relay;
use marquee_infra::redis_conn::RedisTarget;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Rig {
    db: DatabaseConnection,
    bookings: Arc<Bookings>,
    relay: Relay,
    hasher: Hasher,
}

async fn with_rig<F, Fut>(test: F)
where
    F: FnOnce(Rig) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    with_rig_on(RedisTarget::Single(marquee_testkit::redis_url()), test).await;
}

/// The rig with its hold store on `target` (one Redis, or a Redis Cluster).
async fn with_rig_on<F, Fut>(target: RedisTarget, test: F)
where
    F: FnOnce(Rig) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let id = Uuid::new_v4().simple().to_string();
    let url = format!("{}/test_best_booking_{id}", marquee_testkit::pg_base());
    let redis_prefix = format!("test:{id}:");
    let db = db::connect(&url, 4).await.expect("database");
    db::migrate::<Migrator>(&db).await.expect("migrate");
    let bus = Bus::connect(
        BusConfig::new(marquee_testkit::amqp_url(), format!("test.{id}.")),
        Duration::from_secs(10),
    )
    .await
    .expect("bus");
    let stop = CancellationToken::new();
    let holds = HoldStore::connect(&target, &redis_prefix, RedisTimeouts::default())
        .await
        .expect("redis");
    let relay = Relay::spawn(
        "booking-svc",
        db.clone(),
        bus.clone(),
        Duration::from_millis(200),
        stop.clone(),
    );
    let bookings = Arc::new(Bookings::new(
        db.clone(),
        holds,
        Catalog::default(),
        relay.clone(),
        ChangeFeed::spawn(bus.clone(), stop.clone()),
        HoldTiming {
            hold_ttl: Duration::from_secs(60),
            checkout_grace: Duration::from_secs(15),
            payment_deadline: Duration::from_secs(60),
        },
    ));
    bookings.restore_redis().await.expect("prime redis");
    let rig = Rig {
        db: db.clone(),
        bookings,
        relay,
        hasher: Hasher::new(1024).expect("hasher"),
    };
    let outcome = std::panic::AssertUnwindSafe(test(rig)).catch_unwind().await;
    stop.cancel();
    let _ = bus.delete_topology(&[]).await;
    bus.shutdown();
    let _ = db.close().await;
    let _ = db::drop_database(&url).await;
    let _ = marquee_testkit::delete_redis_keys_in(&target, &redis_prefix).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn seller(rig: &Rig) -> AccountId {
    accounts::sign_up(
        &rig.db,
        &rig.hasher,
        &rig.relay,
        NewAccount {
            email: Email::parse(&format!("seller-{}@example.com", Uuid::new_v4().simple()))
                .expect("email"),
            password: Password::parse("correct horse").expect("password"),
            display_name: "Seller".into(),
            role: Role::Seller,
        },
    )
    .await
    .expect("sign up")
    .id
}

/// A buyer: holds never look the account up, so any id will do.
fn buyer() -> AccountId {
    AccountId(Uuid::new_v4())
}

/// An event on sale now with `sections` of (name, price, rows of seat counts); seats
/// are numbered from 1 at x 1, 2, ... in each row; rows are labelled A, B, ...
async fn event(
    rig: &Rig,
    sections: &[(&str, i64, &[usize])],
    max_per_buyer: u32,
) -> Arc<EventInfo> {
    let seller = seller(rig).await;
    let now = Utc::now();
    let sections = sections
        .iter()
        .map(|(name, price, rows)| NewSection {
            name: (*name).to_owned(),
            price_minor: *price,
            rows: rows
                .iter()
                .enumerate()
                .map(|(r, n)| NewRow {
                    label: char::from(b'A' + u8::try_from(r).expect("a few rows")).to_string(),
                    seats: (1..=*n)
                        .map(|i| NewSeat {
                            number: i.to_string(),
                            x: i as f64,
                            y: r as f64,
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    rig.bookings
        .create_event(
            seller,
            NewEvent {
                details: EventDetails {
                    title: "Best seats".into(),
                    category: "concert".into(),
                    description: String::new(),
                    venue: "Hall".into(),
                    starts_at: now + chrono::Duration::days(2),
                    sale_starts_at: now - chrono::Duration::hours(1),
                    sale_ends_at: now + chrono::Duration::hours(1),
                    currency: Currency::parse("currency", "KRW").expect("currency"),
                    max_seats_per_buyer: max_per_buyer,
                },
                sections,
                transfers: Default::default(),
            },
        )
        .await
        .expect("create event")
}

fn best(quantity: i32) -> BestAvailable {
    BestAvailable::parse(quantity, "", None).expect("best available")
}

fn in_section(quantity: i32, event: &EventInfo, section: usize) -> BestAvailable {
    BestAvailable::parse(quantity, &event.sections[section].id.to_string(), None)
        .expect("best available")
}

fn up_to(quantity: i32, price: i64) -> BestAvailable {
    BestAvailable::parse(quantity, "", Some((price, "KRW"))).expect("best available")
}

fn key(value: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(value).expect("key"))
}

/// The seats `labels` ("A1" = row A, seat 1) of section `section`, in that order.
fn seats(event: &EventInfo, section: usize, labels: &[&str]) -> Vec<SeatId> {
    labels
        .iter()
        .map(|label| {
            let (row, number) = label.split_at(1);
            event
                .seats
                .iter()
                .find(|s| s.section == section && s.row == row && s.number == number)
                .unwrap_or_else(|| panic!("no seat {label} in section {section}"))
                .id
        })
        .collect()
}

/// What a hold holds, as "row+number" labels in the order given, and its section.
fn labels(event: &EventInfo, hold: &HoldGranted) -> (usize, Vec<String>) {
    let infos: Vec<_> = hold
        .seats
        .iter()
        .map(|id| event.seat(*id).expect("a seat of the event"))
        .collect();
    let section = infos.first().expect("a seat").section;
    assert!(infos.iter().all(|s| s.section == section), "{infos:?}");
    (
        section,
        infos
            .iter()
            .map(|s| format!("{}{}", s.row, s.number))
            .collect(),
    )
}

/// Holds the seats `ids` for a new buyer (making them unavailable to best available).
async fn take(rig: &Rig, event: &EventInfo, ids: &[SeatId]) {
    let selection = SeatSelection::parse(&ids.iter().map(ToString::to_string).collect::<Vec<_>>())
        .expect("selection");
    rig.bookings
        .hold(buyer(), event.id, selection, None)
        .await
        .expect("seats taken");
}

/// The HTTP status the gateway answers for `error`.
fn http(error: BookingError) -> u16 {
    let status = tonic::Status::from(error);
    marquee_infra::errors::http_status(status.code()).as_u16()
}

/// Positions of a hold's seats in the layout: one row, adjacent in listed order.
fn assert_contiguous(event: &EventInfo, hold: &HoldGranted) {
    let mut positions: Vec<usize> = hold
        .seats
        .iter()
        .map(|id| {
            event
                .seats
                .iter()
                .position(|s| s.id == *id)
                .expect("a seat of the event")
        })
        .collect();
    positions.sort_unstable();
    let first = &event.seats[positions[0]];
    for pair in positions.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "seats not adjacent: {:?}", hold.seats);
    }
    for &p in &positions {
        let seat = &event.seats[p];
        assert_eq!(
            (seat.section, &seat.row),
            (first.section, &first.row),
            "seats in two rows: {:?}",
            hold.seats
        );
    }
}

#[tokio::test]
async fn the_best_block_by_section_row_and_centre_in_one_row() {
    with_rig(|rig| async move {
        let event = event(
            &rig,
            &[("Front", 50_000, &[6, 6]), ("Back", 20_000, &[8])],
            4,
        )
        .await;

        // Row A of the first section: x 1..6. A centred three (2-4 or 3-5) would
        // strand seat 1 or 6 at the row's end, so the block starts at the left end.
        let first = rig
            .bookings
            .hold(buyer(), event.id, best(3), None)
            .await
            .expect("held");
        assert_eq!(
            labels(&event, &first),
            (0, vec!["A1".into(), "A2".into(), "A3".into()])
        );
        assert_eq!(first.total.amount_minor, 150_000);
        assert_contiguous(&event, &first);
        // The rest of row A is the next best block of three.
        let second = rig
            .bookings
            .hold(buyer(), event.id, best(3), None)
            .await
            .expect("held");
        assert_eq!(
            labels(&event, &second),
            (0, vec!["A4".into(), "A5".into(), "A6".into()])
        );
        // Row A is full: row B, centred (3-4 of 1..6 leaves pairs on both sides).
        let third = rig
            .bookings
            .hold(buyer(), event.id, best(2), None)
            .await
            .expect("held");
        assert_eq!(labels(&event, &third), (0, vec!["B3".into(), "B4".into()]));
        // Only the back section: centred in its row of eight.
        let back = rig
            .bookings
            .hold(buyer(), event.id, in_section(4, &event, 1), None)
            .await
            .expect("held");
        assert_eq!(
            labels(&event, &back),
            (1, vec!["A3".into(), "A4".into(), "A5".into(), "A6".into()])
        );
        assert_eq!(back.total.amount_minor, 80_000);
        // At most 20,000 a seat: the back section again, its two pairs tie, the left one.
        let cheap = rig
            .bookings
            .hold(buyer(), event.id, up_to(2, 20_000), None)
            .await
            .expect("held");
        assert_eq!(labels(&event, &cheap), (1, vec!["A1".into(), "A2".into()]));

        // What the seat map shows held is exactly what was granted.
        let granted: HashSet<SeatId> = [&first, &second, &third, &back, &cheap]
            .iter()
            .flat_map(|h| h.seats.iter().copied())
            .collect();
        assert_eq!(granted.len(), 14);
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        for (seat, status) in event.seats.iter().zip(statuses) {
            let expected = if granted.contains(&seat.id) {
                SeatStatus::Held
            } else {
                SeatStatus::Available
            };
            assert_eq!(status, expected, "{}{}", seat.row, seat.number);
        }
    })
    .await;
}

#[tokio::test]
async fn no_single_seat_is_stranded_when_another_block_exists() {
    with_rig(|rig| async move {
        // Row A: x 1..7 with seats 1 and 7 taken: [x . . . . . x]. The centred block
        // 3-5 would leave seats 2 and 6 alone; 2-4 leaves the pair 5-6.
        let event = event(&rig, &[("Hall", 10_000, &[7, 6])], 4).await;
        take(&rig, &event, &seats(&event, 0, &["A1", "A7"])).await;
        let group = rig
            .bookings
            .hold(buyer(), event.id, best(3), None)
            .await
            .expect("held");
        assert_eq!(
            labels(&event, &group),
            (0, vec!["A2".into(), "A3".into(), "A4".into()])
        );
        // The pair left over is a block of two that strands nothing.
        let pair = rig
            .bookings
            .hold(buyer(), event.id, best(2), None)
            .await
            .expect("held");
        assert_eq!(labels(&event, &pair), (0, vec!["A5".into(), "A6".into()]));

        // Row B: [x . . . . x] once its ends are taken. Every block of three strands a
        // seat; with no other choice the best of them is still given.
        take(&rig, &event, &seats(&event, 0, &["B1", "B6"])).await;
        let stranding = rig
            .bookings
            .hold(buyer(), event.id, best(3), None)
            .await
            .expect("held");
        assert_eq!(
            labels(&event, &stranding),
            (0, vec!["B2".into(), "B3".into(), "B4".into()])
        );
    })
    .await;
}

#[tokio::test]
async fn no_block_big_enough_is_a_409_and_the_limit_holds() {
    with_rig(|rig| async move {
        let event = event(
            &rig,
            &[("Front", 30_000, &[3, 3]), ("Back", 10_000, &[5])],
            4,
        )
        .await;
        // No row of four.
        let error = rig
            .bookings
            .hold(buyer(), event.id, in_section(4, &event, 0), None)
            .await
            .expect_err("no block");
        assert!(
            matches!(error, BookingError::NoAdjacentSeats { quantity: 4, .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "no 4 adjacent seats available in one row of the section asked for"
        );
        assert_eq!(http(error), 409);
        // Available seats that are not adjacent are no block either.
        take(&rig, &event, &seats(&event, 1, &["A2", "A4"])).await;
        let error = rig
            .bookings
            .hold(buyer(), event.id, up_to(2, 10_000), None)
            .await
            .expect_err("no block");
        assert_eq!(
            error.to_string(),
            "no 2 adjacent seats available in one row at the price asked for"
        );
        assert_eq!(http(error), 409);

        // The per-buyer limit (4): more in one request is a 400 naming the quantity,
        // more than what is left of it the same 400 as for named seats.
        let me = buyer();
        let error = rig
            .bookings
            .hold(me, event.id, best(5), None)
            .await
            .expect_err("over the limit");
        assert!(
            matches!(
                error,
                BookingError::InvalidArgument {
                    field: "quantity",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(http(error), 400);
        rig.bookings
            .hold(me, event.id, best(3), None)
            .await
            .expect("held");
        let error = rig
            .bookings
            .hold(me, event.id, best(2), None)
            .await
            .expect_err("over the limit");
        assert!(
            matches!(
                error,
                BookingError::SeatLimit {
                    limit: 4,
                    current: 3
                }
            ),
            "{error}"
        );
        assert_eq!(http(error), 400);

        // A section of another event, or a price in another currency: 400s.
        let other = self::event(&rig, &[("Elsewhere", 1, &[2])], 4).await;
        let error = rig
            .bookings
            .hold(buyer(), event.id, in_section(2, &other, 0), None)
            .await
            .expect_err("not this event's section");
        assert!(
            matches!(
                error,
                BookingError::InvalidArgument {
                    field: "sectionId",
                    ..
                }
            ),
            "{error}"
        );
        let dollars = BestAvailable::parse(2, "", Some((100, "USD"))).expect("parsed");
        let error = rig
            .bookings
            .hold(buyer(), event.id, dollars, None)
            .await
            .expect_err("another currency");
        assert!(
            matches!(
                error,
                BookingError::InvalidArgument {
                    field: "maxPrice.currency",
                    ..
                }
            ),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_retry_with_its_key_gets_the_same_hold_even_when_nothing_is_left() {
    with_rig(|rig| async move {
        let event = event(&rig, &[("Hall", 10_000, &[4, 4])], 4).await;
        let me = buyer();
        let first = rig
            .bookings
            .hold(me, event.id, best(2), key("group-1"))
            .await
            .expect("held");
        // The retry would choose other seats now; it gets the first hold.
        let again = rig
            .bookings
            .hold(me, event.id, best(2), key("group-1"))
            .await
            .expect("replayed");
        assert_eq!(again.hold_id, first.hold_id);
        assert_eq!(again.seats, first.seats);
        assert_eq!(again.expires_at, first.expires_at);
        assert_eq!(again.total, first.total);
        // Everything else sold out: the retry still gets it, not a 409.
        while rig
            .bookings
            .hold(buyer(), event.id, best(1), None)
            .await
            .is_ok()
        {}
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        assert!(statuses.iter().all(|s| *s == SeatStatus::Held));
        let late = rig
            .bookings
            .hold(me, event.id, best(2), key("group-1"))
            .await
            .expect("replayed");
        assert_eq!((late.hold_id, &late.seats), (first.hold_id, &first.seats));
        // The same key for another request is refused (409), with or without a block.
        for other in [best(3), up_to(2, 10_000)] {
            let error = rig
                .bookings
                .hold(me, event.id, other, key("group-1"))
                .await
                .expect_err("key reused");
            assert!(matches!(error, BookingError::AlreadyExists(_)), "{error}");
            assert_eq!(http(error), 409);
        }
        let named = SeatSelection::parse(&[first.seats[0].to_string()]).expect("selection");
        let error = rig
            .bookings
            .hold(me, event.id, named, key("group-1"))
            .await
            .expect_err("key reused");
        assert!(matches!(error, BookingError::AlreadyExists(_)), "{error}");
        // A new key while a block exists uses the same path as without one.
        let fresh = self::event(&rig, &[("Hall", 10_000, &[4])], 4).await;
        let keyed = rig
            .bookings
            .hold(me, fresh.id, best(2), key("group-1"))
            .await
            .expect("a key is per event");
        assert_contiguous(&fresh, &keyed);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contending_groups_never_share_a_seat_and_every_hold_is_one_block() {
    with_rig(contention).await;
}

/// The same on a real three-master Redis Cluster, where a script whose candidate seats
/// spanned two slots would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contending_groups_never_share_a_seat_on_a_redis_cluster() {
    with_rig_on(marquee_testkit::redis_cluster::redis_cluster(), contention).await;
}

/// 40 groups of 2 to 4 at once on 48 seats: no seat held twice, every hold one block
/// in one row, every refusal a 409, and "no block" only when none was left.
async fn contention(rig: Rig) {
    // 48 seats in rows of 8; 40 groups of 2 to 4 want about 120.
    let event = event(
        &rig,
        &[("Front", 30_000, &[8, 8, 8]), ("Back", 10_000, &[8, 8, 8])],
        4,
    )
    .await;
    let mut tasks = Vec::new();
    for n in 0..40usize {
        let (bookings, id) = (rig.bookings.clone(), event.id);
        let quantity = 2 + (n % 3);
        tasks.push(tokio::spawn(async move {
            let result = bookings
                .hold(
                    buyer(),
                    id,
                    best(i32::try_from(quantity).expect("small")),
                    None,
                )
                .await;
            (quantity, result)
        }));
    }
    let mut granted = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.expect("group") {
            (_, Ok(hold)) => granted.push(hold),
            (quantity, Err(error)) => refused.push((quantity, error)),
        }
    }
    assert!(
        granted.len() >= 12,
        "only {} groups got seats",
        granted.len()
    );
    assert!(!refused.is_empty(), "the layout cannot seat every group");
    eprintln!(
        "{} groups held seats; refused: {} with no block left, {} outrun",
        granted.len(),
        refused
            .iter()
            .filter(|(_, e)| matches!(e, BookingError::NoAdjacentSeats { .. }))
            .count(),
        refused
            .iter()
            .filter(|(_, e)| matches!(e, BookingError::SeatsTaken(_)))
            .count()
    );

    // No seat twice, every hold one block of adjacent seats in one row.
    let mut held = HashSet::new();
    for hold in &granted {
        assert_contiguous(&event, hold);
        for seat in &hold.seats {
            assert!(held.insert(*seat), "seat {seat} held twice");
        }
    }
    let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
    for (seat, status) in event.seats.iter().zip(&statuses) {
        let expected = if held.contains(&seat.id) {
            SeatStatus::Held
        } else {
            SeatStatus::Available
        };
        assert_eq!(*status, expected, "seat {}{}", seat.row, seat.number);
    }
    // Every refusal is a 409; one saying no block exists was true (seats were only
    // taken since, never given back).
    let free: Vec<bool> = statuses
        .iter()
        .map(|s| *s == SeatStatus::Available)
        .collect();
    for (quantity, error) in refused {
        if let BookingError::NoAdjacentSeats { .. } = error {
            let filter = best::Filter {
                quantity,
                section: None,
                max_price: None,
            };
            let eligible = best::eligible(&event.sections, &event.seats, &filter);
            assert_eq!(
                best::choose(&eligible, &event.seats, &free, quantity),
                None,
                "a block of {quantity} was left"
            );
        } else {
            assert!(matches!(error, BookingError::SeatsTaken(_)), "{error}");
        }
        assert_eq!(http(error), 409);
    }
}
