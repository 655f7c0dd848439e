//! The catalog: events with sections, rows and seats. An event's layout never changes
//! after creation, so it is cached in memory once loaded; seat status is not cached.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::domain::{AccountId, Currency, EventId, Money, SeatId, SeatStatus, SectionId};
use crate::error::BookingError;
use crate::holds::HoldStore;

#[derive(Debug, Clone)]
pub struct NewSeat {
    pub number: String,
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone)]
pub struct NewRow {
    pub label: String,
    pub seats: Vec<NewSeat>,
}

#[derive(Debug, Clone)]
pub struct NewSection {
    pub name: String,
    pub price_minor: i64,
    pub rows: Vec<NewRow>,
}

/// What describes an event, as its seller gave it.
#[derive(Debug, Clone)]
pub struct EventDetails {
    pub title: String,
    pub category: String,
    pub description: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub sale_starts_at: DateTime<Utc>,
    pub sale_ends_at: DateTime<Utc>,
    pub currency: Currency,
    pub max_seats_per_buyer: u32,
}

/// A validated event to create (see `grpc::parse_create_event`).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub details: EventDetails,
    pub sections: Vec<NewSection>,
}

#[derive(Debug, Clone)]
pub struct SectionInfo {
    pub id: SectionId,
    pub name: String,
    pub price: Money,
    pub seat_count: u32,
}

#[derive(Debug, Clone)]
pub struct SeatInfo {
    pub id: SeatId,
    pub section: usize,
    pub row: String,
    pub number: String,
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone)]
pub struct EventInfo {
    pub id: EventId,
    pub seller: AccountId,
    pub details: EventDetails,
    pub created_at: DateTime<Utc>,
    pub sections: Vec<SectionInfo>,
    pub seats: Vec<SeatInfo>,
    index: HashMap<SeatId, usize>,
}

impl EventInfo {
    pub fn seat(&self, id: SeatId) -> Option<&SeatInfo> {
        self.index.get(&id).map(|i| &self.seats[*i])
    }

    pub fn section_of(&self, seat: &SeatInfo) -> &SectionInfo {
        &self.sections[seat.section]
    }

    pub fn on_sale(&self, now: DateTime<Utc>) -> bool {
        self.details.sale_starts_at <= now && now < self.details.sale_ends_at
    }
}

/// Loads events and keeps their layouts.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    cache: Arc<RwLock<HashMap<EventId, Arc<EventInfo>>>>,
}

const CACHE_LIMIT: usize = 10_000;

impl Catalog {
    pub async fn event(&self, pool: &PgPool, id: EventId) -> Result<Arc<EventInfo>, BookingError> {
        if let Some(event) = self.cache.read().await.get(&id) {
            return Ok(event.clone());
        }
        let event = Arc::new(load(pool, id).await?);
        let mut cache = self.cache.write().await;
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(id, event.clone());
        Ok(event)
    }
}

type EventRow = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    i32,
    String,
    DateTime<Utc>,
);

async fn load(pool: &PgPool, id: EventId) -> Result<EventInfo, BookingError> {
    let row: Option<EventRow> = sqlx::query_as(
        "SELECT id, seller_id, title, category, description, venue, starts_at, sale_starts_at,
                sale_ends_at, max_seats_per_buyer, currency, created_at
         FROM events WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    let Some(e) = row else {
        return Err(BookingError::NotFound("event"));
    };
    let currency = Currency::parse("currency", &e.10)?;
    let sections: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT id, name, price_minor FROM sections WHERE event_id = $1 ORDER BY position",
    )
    .bind(id.0)
    .fetch_all(pool)
    .await?;
    let seats: Vec<(Uuid, Uuid, String, String, f64, f64)> = sqlx::query_as(
        "SELECT id, section_id, row_label, number, x, y FROM seats WHERE event_id = $1 ORDER BY position",
    )
    .bind(id.0)
    .fetch_all(pool)
    .await?;
    let mut sections: Vec<SectionInfo> = sections
        .into_iter()
        .map(|(sid, name, price)| SectionInfo {
            id: SectionId(sid),
            name,
            price: Money {
                amount_minor: price,
                currency: currency.clone(),
            },
            seat_count: 0,
        })
        .collect();
    let section_index: HashMap<Uuid, usize> = sections
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.0, i))
        .collect();
    let mut infos = Vec::with_capacity(seats.len());
    for (seat_id, section_id, row, number, x, y) in seats {
        let section = *section_index
            .get(&section_id)
            .ok_or_else(|| BookingError::Internal("seat without section".into()))?;
        sections[section].seat_count += 1;
        infos.push(SeatInfo {
            id: SeatId(seat_id),
            section,
            row,
            number,
            x,
            y,
        });
    }
    let index = infos.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    Ok(EventInfo {
        id,
        seller: AccountId(e.1),
        details: EventDetails {
            title: e.2,
            category: e.3,
            description: e.4,
            venue: e.5,
            starts_at: e.6,
            sale_starts_at: e.7,
            sale_ends_at: e.8,
            max_seats_per_buyer: u32::try_from(e.9).unwrap_or(1),
            currency,
        },
        created_at: e.11,
        sections,
        seats: infos,
        index,
    })
}

/// Stores a new event with all its seats in one transaction.
pub async fn create_event(
    pool: &PgPool,
    seller: AccountId,
    new: NewEvent,
) -> Result<EventId, BookingError> {
    let id = EventId::new();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO events (id, seller_id, title, category, description, venue, starts_at,
                             sale_starts_at, sale_ends_at, max_seats_per_buyer, currency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.0)
    .bind(seller.0)
    .bind(&new.details.title)
    .bind(&new.details.category)
    .bind(&new.details.description)
    .bind(&new.details.venue)
    .bind(new.details.starts_at)
    .bind(new.details.sale_starts_at)
    .bind(new.details.sale_ends_at)
    .bind(i32::try_from(new.details.max_seats_per_buyer).unwrap_or(i32::MAX))
    .bind(new.details.currency.as_str())
    .execute(&mut *tx)
    .await?;
    let mut position = 0i32;
    let (mut seat_ids, mut seat_sections, mut rows, mut numbers, mut xs, mut ys, mut positions) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, section) in new.sections.iter().enumerate() {
        let section_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO sections (id, event_id, name, price_minor, position) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(section_id)
        .bind(id.0)
        .bind(&section.name)
        .bind(section.price_minor)
        .bind(i32::try_from(i).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        for row in &section.rows {
            for seat in &row.seats {
                seat_ids.push(Uuid::now_v7());
                seat_sections.push(section_id);
                rows.push(row.label.clone());
                numbers.push(seat.number.clone());
                xs.push(seat.x);
                ys.push(seat.y);
                positions.push(position);
                position += 1;
            }
        }
    }
    sqlx::query(
        "INSERT INTO seats (id, event_id, section_id, row_label, number, x, y, position)
         SELECT u.id, $1, u.section_id, u.row_label, u.number, u.x, u.y, u.position
         FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::float8[], $7::float8[], $8::int4[])
              AS u(id, section_id, row_label, number, x, y, position)",
    )
    .bind(id.0)
    .bind(&seat_ids)
    .bind(&seat_sections)
    .bind(&rows)
    .bind(&numbers)
    .bind(&xs)
    .bind(&ys)
    .bind(&positions)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("events_created_total").increment(1);
    tracing::info!(event_id = %id, seller_id = %seller, seats = position, "event created");
    Ok(id)
}

/// Event ids, soonest first.
pub async fn list_event_ids(
    pool: &PgPool,
    offset: i64,
    limit: i64,
) -> Result<Vec<EventId>, BookingError> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY starts_at, id OFFSET $1 LIMIT $2")
            .bind(offset)
            .bind(limit)
            .fetch_all(pool)
            .await?;
    Ok(ids.into_iter().map(EventId).collect())
}

/// Every seat of `event` with its status: SOLD and HELD from Postgres' active bookings
/// (the source of truth for what is sold), else HELD when Redis holds it.
pub async fn seat_statuses(
    pool: &PgPool,
    holds: &HoldStore,
    event: &EventInfo,
) -> Result<Vec<SeatStatus>, BookingError> {
    let booked: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT bs.seat_id, b.status FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
         WHERE bs.event_id = $1 AND bs.active",
    )
    .bind(event.id.0)
    .fetch_all(pool)
    .await?;
    let booked: HashMap<Uuid, String> = booked.into_iter().collect();
    let ids: Vec<SeatId> = event.seats.iter().map(|s| s.id).collect();
    let redis = holds.seat_values(&ids).await?;
    Ok(event
        .seats
        .iter()
        .zip(redis)
        .map(
            |(seat, value)| match booked.get(&seat.id.0).map(String::as_str) {
                Some("PENDING_PAYMENT") => SeatStatus::Held,
                Some(_) => SeatStatus::Sold,
                None if value.is_some() => SeatStatus::Held,
                None => SeatStatus::Available,
            },
        )
        .collect())
}

#[derive(Debug, Clone)]
pub struct SectionSales {
    pub section: usize,
    pub seats_sold: u32,
    pub revenue_minor: i64,
}

/// Seats sold and revenue per section, counting confirmed bookings only.
pub async fn sales(pool: &PgPool, event: &EventInfo) -> Result<Vec<SectionSales>, BookingError> {
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT s.section_id, count(*)::int8, coalesce(sum(bs.price_minor), 0)::int8
         FROM booking_seats bs
         JOIN bookings b ON b.id = bs.booking_id
         JOIN seats s ON s.id = bs.seat_id
         WHERE bs.event_id = $1 AND bs.active AND b.status = 'CONFIRMED'
         GROUP BY s.section_id",
    )
    .bind(event.id.0)
    .fetch_all(pool)
    .await?;
    let by_section: HashMap<Uuid, (i64, i64)> =
        rows.into_iter().map(|(s, n, r)| (s, (n, r))).collect();
    Ok(event
        .sections
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (n, r) = by_section.get(&s.id.0).copied().unwrap_or((0, 0));
            SectionSales {
                section: i,
                seats_sold: u32::try_from(n).unwrap_or(0),
                revenue_minor: r,
            }
        })
        .collect())
}
