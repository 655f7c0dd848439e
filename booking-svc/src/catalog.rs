//! The catalog: events with sections, rows and seats. An event's layout never changes
//! after creation, so it is cached in memory once loaded; seat status is not cached.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Asterisk, Expr, Func};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DerivePartialModel, EntityTrait,
    FromQueryResult, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Statement,
    TransactionTrait,
};
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::domain::{
    AccountId, Currency, EventId, Money, SeatId, SeatStatus, SectionId, TransferPolicy,
};
use crate::entity::{booking_seats, bookings, events, seats, sections};
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
    /// Whether and at what price its bookings may be transferred.
    pub transfers: TransferPolicy,
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
    pub async fn event(
        &self,
        pool: &DatabaseConnection,
        id: EventId,
    ) -> Result<Arc<EventInfo>, BookingError> {
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

/// A section as the layout needs it.
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "sections::Entity")]
struct SectionRow {
    id: Uuid,
    name: String,
    price_minor: i64,
}

/// A seat as the layout needs it.
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "seats::Entity")]
struct SeatRow {
    id: Uuid,
    section_id: Uuid,
    row_label: String,
    number: String,
    x: f64,
    y: f64,
}

async fn load(pool: &DatabaseConnection, id: EventId) -> Result<EventInfo, BookingError> {
    let Some(e) = events::Entity::find_by_id(id.0).one(pool).await? else {
        return Err(BookingError::NotFound("event"));
    };
    let currency = Currency::parse("currency", &e.currency)?;
    let sections = sections::Entity::find()
        .filter(sections::Column::EventId.eq(id.0))
        .order_by_asc(sections::Column::Position)
        .into_partial_model::<SectionRow>()
        .all(pool)
        .await?;
    let seats = seats::Entity::find()
        .filter(seats::Column::EventId.eq(id.0))
        .order_by_asc(seats::Column::Position)
        .into_partial_model::<SeatRow>()
        .all(pool)
        .await?;
    let mut sections: Vec<SectionInfo> = sections
        .into_iter()
        .map(|section| SectionInfo {
            id: SectionId(section.id),
            name: section.name,
            price: Money {
                amount_minor: section.price_minor,
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
    for seat in seats {
        let section = *section_index
            .get(&seat.section_id)
            .ok_or_else(|| BookingError::Internal("seat without section".into()))?;
        sections[section].seat_count += 1;
        infos.push(SeatInfo {
            id: SeatId(seat.id),
            section,
            row: seat.row_label,
            number: seat.number,
            x: seat.x,
            y: seat.y,
        });
    }
    let index = infos.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    Ok(EventInfo {
        id,
        seller: AccountId(e.seller_id),
        details: EventDetails {
            title: e.title,
            category: e.category,
            description: e.description,
            venue: e.venue,
            starts_at: e.starts_at,
            sale_starts_at: e.sale_starts_at,
            sale_ends_at: e.sale_ends_at,
            max_seats_per_buyer: u32::try_from(e.max_seats_per_buyer).unwrap_or(1),
            currency,
        },
        created_at: e.created_at,
        sections,
        seats: infos,
        index,
    })
}

/// Stores a new event with all its seats in one transaction.
pub async fn create_event(
    pool: &DatabaseConnection,
    seller: AccountId,
    new: NewEvent,
) -> Result<EventId, BookingError> {
    let id = EventId::new();
    let details = &new.details;
    let tx = pool.begin().await?;
    events::Entity::insert(events::ActiveModel {
        id: Set(id.0),
        seller_id: Set(seller.0),
        title: Set(details.title.clone()),
        category: Set(details.category.clone()),
        description: Set(details.description.clone()),
        venue: Set(details.venue.clone()),
        starts_at: Set(details.starts_at),
        sale_starts_at: Set(details.sale_starts_at),
        sale_ends_at: Set(details.sale_ends_at),
        max_seats_per_buyer: Set(i32::try_from(details.max_seats_per_buyer).unwrap_or(i32::MAX)),
        currency: Set(details.currency.as_str().to_owned()),
        created_at: NotSet,
        transfers_allowed: Set(new.transfers.allowed()),
        transfer_max_price_percent: Set(i32::from(new.transfers.max_price_percent())),
    })
    .exec_without_returning(&tx)
    .await?;
    let mut position = 0i32;
    let (mut seat_ids, mut seat_sections, mut rows, mut numbers, mut xs, mut ys, mut positions) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut section_rows = Vec::with_capacity(new.sections.len());
    for (i, section) in new.sections.iter().enumerate() {
        let section_id = Uuid::now_v7();
        section_rows.push(sections::ActiveModel {
            id: Set(section_id),
            event_id: Set(id.0),
            name: Set(section.name.clone()),
            price_minor: Set(section.price_minor),
            position: Set(i32::try_from(i).unwrap_or(i32::MAX)),
        });
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
    if !section_rows.is_empty() {
        // Every section in one statement.
        sections::Entity::insert_many(section_rows)
            .exec_without_returning(&tx)
            .await?;
    }
    // Raw SQL: an event has up to tens of thousands of seats, inserted in one statement
    // with one array parameter per column (UNNEST), which the insert builder cannot
    // express (a multi-row VALUES would run out of bind parameters).
    tx.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO seats (id, event_id, section_id, row_label, number, x, y, position)
         SELECT u.id, $1, u.section_id, u.row_label, u.number, u.x, u.y, u.position
         FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::float8[], $7::float8[], $8::int4[])
              AS u(id, section_id, row_label, number, x, y, position)",
        [
            id.0.into(),
            seat_ids.into(),
            seat_sections.into(),
            rows.into(),
            numbers.into(),
            xs.into(),
            ys.into(),
            positions.into(),
        ],
    ))
    .await?;
    tx.commit().await?;
    metrics::counter!("events_created_total").increment(1);
    tracing::info!(event_id = %id, seller_id = %seller, seats = position, "event created");
    Ok(id)
}

/// The event's transfer rule, read from the database each time (the rule can change;
/// the cached layout cannot).
pub async fn transfer_policy<C: ConnectionTrait>(
    db: &C,
    id: EventId,
) -> Result<TransferPolicy, BookingError> {
    let row: Option<(bool, i32)> = events::Entity::find_by_id(id.0)
        .select_only()
        .column(events::Column::TransfersAllowed)
        .column(events::Column::TransferMaxPricePercent)
        .into_tuple()
        .one(db)
        .await?;
    let (allowed, percent) = row.ok_or(BookingError::NotFound("event"))?;
    Ok(TransferPolicy::stored(allowed, percent))
}

/// The transfer rules of `ids` (one query, for a page of events); an unknown id is
/// left out.
pub async fn transfer_policies<C: ConnectionTrait>(
    db: &C,
    ids: &[EventId],
) -> Result<HashMap<EventId, TransferPolicy>, BookingError> {
    let rows: Vec<(Uuid, bool, i32)> = events::Entity::find()
        .select_only()
        .column(events::Column::Id)
        .column(events::Column::TransfersAllowed)
        .column(events::Column::TransferMaxPricePercent)
        .filter(events::Column::Id.is_in(ids.iter().map(|id| id.0)))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, allowed, percent)| (EventId(id), TransferPolicy::stored(allowed, percent)))
        .collect())
}

/// Sets the event's transfer rule.
pub async fn set_transfer_policy(
    pool: &DatabaseConnection,
    id: EventId,
    policy: TransferPolicy,
) -> Result<(), BookingError> {
    let updated = events::Entity::update_many()
        .col_expr(
            events::Column::TransfersAllowed,
            Expr::value(policy.allowed()),
        )
        .col_expr(
            events::Column::TransferMaxPricePercent,
            Expr::value(i32::from(policy.max_price_percent())),
        )
        .filter(events::Column::Id.eq(id.0))
        .exec(pool)
        .await?;
    if updated.rows_affected == 0 {
        return Err(BookingError::NotFound("event"));
    }
    tracing::info!(event_id = %id, allowed = policy.allowed(), max_price_percent = policy.max_price_percent(), "transfer policy set");
    Ok(())
}

/// Event ids, soonest first.
pub async fn list_event_ids(
    pool: &DatabaseConnection,
    offset: i64,
    limit: i64,
) -> Result<Vec<EventId>, BookingError> {
    let ids: Vec<Uuid> = events::Entity::find()
        .select_only()
        .column(events::Column::Id)
        .order_by_asc(events::Column::StartsAt)
        .order_by_asc(events::Column::Id)
        .offset(u64::try_from(offset).unwrap_or(0))
        .limit(u64::try_from(limit).unwrap_or(0))
        .into_tuple()
        .all(pool)
        .await?;
    Ok(ids.into_iter().map(EventId).collect())
}

/// Every seat of `event` with its status: SOLD and HELD from Postgres' active bookings
/// (the source of truth for what is sold), else HELD when Redis holds it.
pub async fn seat_statuses(
    pool: &DatabaseConnection,
    holds: &HoldStore,
    event: &EventInfo,
) -> Result<Vec<SeatStatus>, BookingError> {
    let booked = booking_seats::Entity::find()
        .select_only()
        .column(booking_seats::Column::SeatId)
        .column(bookings::Column::Status)
        .join(JoinType::InnerJoin, booking_seats::Relation::Booking.def())
        .filter(booking_seats::Column::EventId.eq(event.id.0))
        .filter(booking_seats::Column::Active.eq(true))
        .into_model::<BookedSeatStatus>()
        .all(pool)
        .await?;
    let booked: HashMap<Uuid, String> = booked
        .into_iter()
        .map(|seat| (seat.seat_id, seat.status))
        .collect();
    let ids: Vec<SeatId> = event.seats.iter().map(|s| s.id).collect();
    let redis = holds.seat_values(event.id, &ids).await?;
    Ok(event
        .seats
        .iter()
        .zip(redis)
        .map(
            |(seat, value)| match booked.get(&seat.id.0).map(String::as_str) {
                Some("PENDING_PAYMENT") => SeatStatus::Held,
                Some(_) => SeatStatus::Sold,
                // A seat an auction may still sell carries the auction's sold marker.
                None if value.as_deref().is_some_and(crate::holds::is_sold) => SeatStatus::Sold,
                None if value.is_some() => SeatStatus::Held,
                None => SeatStatus::Available,
            },
        )
        .collect())
}

/// An actively booked seat and its booking's status.
#[derive(Debug, FromQueryResult)]
struct BookedSeatStatus {
    seat_id: Uuid,
    status: String,
}

/// One section's confirmed seats and their revenue.
#[derive(Debug, FromQueryResult)]
struct SectionSalesRow {
    section_id: Uuid,
    seats_sold: i64,
    revenue_minor: i64,
}

#[derive(Debug, Clone)]
pub struct SectionSales {
    pub section: usize,
    pub seats_sold: u32,
    pub revenue_minor: i64,
}

/// Seats sold and revenue per section, counting confirmed bookings only.
pub async fn sales(
    pool: &DatabaseConnection,
    event: &EventInfo,
) -> Result<Vec<SectionSales>, BookingError> {
    // sum(bigint) is numeric in Postgres: cast back to bigint.
    let revenue = Expr::from(Func::cast_as(
        Func::coalesce([
            Func::sum(booking_seats::Column::PriceMinor.into_expr()).into(),
            Expr::val(0i64),
        ]),
        Alias::new("int8"),
    ));
    let rows = booking_seats::Entity::find()
        .select_only()
        .column(seats::Column::SectionId)
        .column_as(Expr::from(Func::count(Expr::col(Asterisk))), "seats_sold")
        .column_as(revenue, "revenue_minor")
        .join(JoinType::InnerJoin, booking_seats::Relation::Booking.def())
        .join(JoinType::InnerJoin, booking_seats::Relation::Seat.def())
        .filter(booking_seats::Column::EventId.eq(event.id.0))
        .filter(booking_seats::Column::Active.eq(true))
        // A booking being transferred is still sold (and its seats still active).
        .filter(bookings::Column::Status.is_in([
            crate::domain::BookingStatus::Confirmed.as_str(),
            crate::domain::BookingStatus::Transferring.as_str(),
        ]))
        .group_by(seats::Column::SectionId)
        .into_model::<SectionSalesRow>()
        .all(pool)
        .await?;
    let by_section: HashMap<Uuid, (i64, i64)> = rows
        .into_iter()
        .map(|row| (row.section_id, (row.seats_sold, row.revenue_minor)))
        .collect();
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
