//! After the load: wait until every saga is terminal and the outboxes and queues are
//! empty (or the bound passes), then check the invariants from the databases.
//!
//! A saga is terminal when its booking is CONFIRMED with its payment CAPTURED, or
//! CANCELLED with no payment, a FAILED or a REFUNDED one, and nothing about it is
//! pending: no pay-svc payment PENDING, REFUNDING or VOIDING, no PSP payment
//! IN_PROGRESS, no money held at the PSP for a cancelled booking.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::db::{self, Db};
use anyhow::{Context, Result};
use uuid::Uuid;

use crate::system::System;

/// One line of the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    pub started: usize,
    pub terminal: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub double_charges: usize,
    pub oversold: usize,
    pub ledger_difference: i64,
    /// From the end of the load and faults until settled; `None`: not within the bound.
    pub settle: Option<Duration>,
    /// Scenario-specific checks that failed.
    pub failures: Vec<String>,
    /// What else is worth printing (confirmed, cancelled, refused...).
    pub notes: Vec<String>,
    /// Where the services' logs are.
    pub logs: String,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.double_charges == 0
            && self.oversold == 0
            && self.ledger_difference == 0
            && self.settle.is_some()
            && self.failures.is_empty()
    }
}

/// One reading of every database.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// booking id → (status, total).
    pub bookings: HashMap<Uuid, (String, i64)>,
    /// booking id → pay-svc payment (status, method, refund wanted).
    pub payments: HashMap<Uuid, (String, String, bool)>,
    /// order id (the booking id) → PSP payments (status, amount).
    pub psp: HashMap<String, Vec<(String, i64)>>,
    /// booking id → wallet ledger entries (kind, amount), absolute.
    pub wallet: HashMap<Uuid, Vec<(String, i64)>>,
    /// booking id → card ledger entries (kind, amount), absolute.
    pub card: HashMap<Uuid, Vec<(String, i64)>>,
    pub booking_backlog: i64,
    pub pay_backlog: i64,
    /// Seats in more than one booking that is not cancelled.
    pub oversold: usize,
}

impl Snapshot {
    /// [`Snapshot::read_once`], retried a few times (PostgreSQL may be short of
    /// connections for a moment).
    pub async fn read(sys: &System) -> Result<Self> {
        let mut attempt = 0;
        loop {
            match Self::read_once(sys).await {
                Ok(snapshot) => return Ok(snapshot),
                Err(error) if attempt < 5 => {
                    attempt += 1;
                    crate::procs::tracing_free_note(&format!(
                        "reading the databases: {error:#}; again"
                    ));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn read_once(sys: &System) -> Result<Self> {
        let bookings: Vec<(Uuid, String, i64)> = db::rows(
            &sys.booking_pool,
            "SELECT id, status, total_minor FROM bookings",
            vec![],
        )
        .await
        .context("read bookings")?;
        let payments: Vec<(Uuid, String, String, bool)> = db::rows(
            &sys.pay_pool,
            "SELECT booking_id, status, method, refund_wanted FROM payments",
            vec![],
        )
        .await
        .context("read payments")?;
        let psp: Vec<(String, String, i64)> = db::rows(
            &sys.psp_pool,
            "SELECT order_id, status, total_amount FROM psp_payments",
            vec![],
        )
        .await
        .context("read the psp's payments")?;
        let wallet: Vec<(Uuid, String, i64)> = db::rows(
            &sys.pay_pool,
            "SELECT booking_id, kind, abs(amount_minor)::int8 FROM ledger_entries
             WHERE booking_id IS NOT NULL",
            vec![],
        )
        .await
        .context("read the wallet ledger")?;
        let card: Vec<(Uuid, String, i64)> = db::rows(
            &sys.pay_pool,
            "SELECT booking_id, kind, abs(amount_minor)::int8 FROM card_ledger_entries",
            vec![],
        )
        .await
        .context("read the card ledger")?;
        let booking_backlog = backlog(&sys.booking_pool).await?;
        let pay_backlog = backlog(&sys.pay_pool).await?;
        let oversold: i64 = db::one(
            &sys.booking_pool,
            "SELECT count(*) FROM (SELECT bs.seat_id FROM booking_seats bs
             JOIN bookings b ON b.id = bs.booking_id WHERE b.status <> 'CANCELLED'
             GROUP BY bs.seat_id HAVING count(*) > 1) AS twice",
            vec![],
        )
        .await
        .context("read seats in two bookings")?;
        let mut snapshot = Self {
            booking_backlog,
            pay_backlog,
            oversold: usize::try_from(oversold).unwrap_or(usize::MAX),
            ..Self::default()
        };
        for (id, status, total) in bookings {
            snapshot.bookings.insert(id, (status, total));
        }
        for (booking, status, method, refund_wanted) in payments {
            snapshot
                .payments
                .insert(booking, (status, method, refund_wanted));
        }
        for (order, status, amount) in psp {
            snapshot
                .psp
                .entry(order)
                .or_default()
                .push((status, amount));
        }
        for (booking, kind, amount) in wallet {
            snapshot
                .wallet
                .entry(booking)
                .or_default()
                .push((kind, amount));
        }
        for (booking, kind, amount) in card {
            snapshot
                .card
                .entry(booking)
                .or_default()
                .push((kind, amount));
        }
        Ok(snapshot)
    }

    /// Whether booking `id`'s saga is over, and nothing about it pending.
    pub fn terminal(&self, id: &Uuid) -> bool {
        let Some((status, total)) = self.bookings.get(id) else {
            return false;
        };
        let payment = self.payments.get(id).map(|(s, _, _)| s.as_str());
        let refund_wanted = self.payments.get(id).is_some_and(|(_, _, wanted)| *wanted);
        let psp = self.psp.get(&id.to_string());
        let psp_pending = psp.is_some_and(|p| p.iter().any(|(s, _)| s == "IN_PROGRESS"));
        let psp_holds_money = psp.is_some_and(|p| p.iter().any(|(s, _)| s == "DONE"));
        if psp_pending || refund_wanted {
            return false;
        }
        match status.as_str() {
            "CONFIRMED" => *total == 0 || payment == Some("CAPTURED"),
            "CANCELLED" => {
                matches!(payment, None | Some("FAILED") | Some("REFUNDED")) && !psp_holds_money
            }
            _ => false,
        }
    }

    /// The bookings charged more than once, and those with any effect twice.
    pub fn duplicates(&self) -> (usize, usize) {
        let mut double_charges = HashSet::new();
        let mut duplicated = HashSet::new();
        let count = |entries: Option<&Vec<(String, i64)>>, kind: &str| {
            entries.map_or(0, |e| e.iter().filter(|(k, _)| k == kind).count())
        };
        let ids: HashSet<Uuid> = self
            .bookings
            .keys()
            .chain(self.payments.keys())
            .chain(self.wallet.keys())
            .chain(self.card.keys())
            .copied()
            .collect();
        for id in ids {
            let wallet = self.wallet.get(&id);
            let card = self.card.get(&id);
            let psp_charges = self.psp.get(&id.to_string()).map_or(0, |p| {
                p.iter()
                    .filter(|(s, _)| s == "DONE" || s == "CANCELED")
                    .count()
            });
            let debits = count(wallet, "PAYMENT");
            let captures = count(card, "CAPTURE");
            if debits > 1 || psp_charges > 1 || captures > 1 || debits + psp_charges > 1 {
                double_charges.insert(id);
            }
            if debits > 1
                || count(wallet, "REFUND") > 1
                || captures > 1
                || count(card, "REFUND") > 1
                || psp_charges > 1
            {
                duplicated.insert(id);
            }
        }
        (duplicated.len(), double_charges.len())
    }

    /// Σ money taken (wallet debits − wallet refunds + PSP captured − PSP refunded)
    /// − Σ confirmed bookings' totals.
    pub fn ledger_difference(&self) -> i64 {
        let wallet: i64 = self
            .wallet
            .values()
            .flatten()
            .map(|(kind, amount)| match kind.as_str() {
                "PAYMENT" => *amount,
                "REFUND" => -*amount,
                _ => 0,
            })
            .sum();
        let psp: i64 = self
            .psp
            .values()
            .flatten()
            .map(|(status, amount)| match status.as_str() {
                // Captured (DONE), or captured then refunded (CANCELED): nets to 0.
                "DONE" => *amount,
                _ => 0,
            })
            .sum();
        let confirmed: i64 = self
            .bookings
            .values()
            .filter(|(status, _)| status == "CONFIRMED")
            .map(|(_, total)| *total)
            .sum();
        wallet + psp - confirmed
    }

    /// pay-svc's card ledger net against the PSP's net: they must agree once settled.
    pub fn card_ledger_difference(&self) -> i64 {
        let card: i64 = self
            .card
            .values()
            .flatten()
            .map(|(kind, amount)| match kind.as_str() {
                "CAPTURE" => *amount,
                "REFUND" => -*amount,
                _ => 0,
            })
            .sum();
        let psp: i64 = self
            .psp
            .values()
            .flatten()
            .filter(|(status, _)| status == "DONE")
            .map(|(_, amount)| *amount)
            .sum();
        card - psp
    }

    pub fn count_status(&self, status: &str) -> usize {
        self.bookings.values().filter(|(s, _)| s == status).count()
    }
}

/// Outbox messages not yet published.
pub async fn backlog(pool: &Db) -> Result<i64> {
    db::one(
        pool,
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
        vec![],
    )
    .await
    .context("read the outbox backlog")
}

/// Waits (up to `bound` after `since`) until every saga is terminal, both outboxes are
/// empty and no message waits in the run's queues; then fills the row's counts.
/// `accepted`: the booking ids booking-svc answered with.
pub async fn settle(
    sys: &System,
    scenario: &str,
    accepted: &HashSet<Uuid>,
    since: Instant,
    bound: Duration,
) -> Result<(Row, Snapshot)> {
    settle_except(sys, scenario, accepted, &HashSet::new(), since, bound).await
}

/// [`settle`], leaving the bookings in `except` out (a dead-lettered saga that waits
/// for its redrive).
pub async fn settle_except(
    sys: &System,
    scenario: &str,
    accepted: &HashSet<Uuid>,
    except: &HashSet<Uuid>,
    since: Instant,
    bound: Duration,
) -> Result<(Row, Snapshot)> {
    let mut settled_at = None;
    let counted = |snapshot: &Snapshot| -> Vec<Uuid> {
        snapshot
            .bookings
            .keys()
            .filter(|id| !except.contains(id))
            .copied()
            .collect()
    };
    let snapshot = loop {
        let snapshot = Snapshot::read(sys).await?;
        let all_terminal = counted(&snapshot).iter().all(|id| snapshot.terminal(id))
            && accepted.iter().all(|id| snapshot.bookings.contains_key(id));
        if all_terminal && snapshot.booking_backlog == 0 && snapshot.pay_backlog == 0 {
            let (live, _) = crate::bus::depths(&sys.bus_prefix)?;
            if live == 0 {
                // Read again: a message may have been consumed between the two reads.
                let again = Snapshot::read(sys).await?;
                if counted(&again).iter().all(|id| again.terminal(id))
                    && again.bookings.len() == snapshot.bookings.len()
                {
                    settled_at = Some(since.elapsed());
                    break again;
                }
            }
        }
        if since.elapsed() > bound {
            break snapshot;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut started: HashSet<Uuid> = counted(&snapshot).into_iter().collect();
    started.extend(accepted.iter().filter(|id| !except.contains(id)).copied());
    let terminal = started.iter().filter(|id| snapshot.terminal(id)).count();
    let (duplicated, double_charges) = snapshot.duplicates();
    let mut row = Row {
        scenario: scenario.to_owned(),
        started: started.len(),
        terminal,
        lost: started.len() - terminal,
        duplicated,
        double_charges,
        oversold: snapshot.oversold,
        ledger_difference: snapshot.ledger_difference(),
        settle: settled_at,
        logs: sys.log_dir().display().to_string(),
        ..Row::default()
    };
    let card = snapshot.card_ledger_difference();
    if card != 0 {
        row.failures.push(format!("card ledger − psp net = {card}"));
    }
    row.notes.push(format!(
        "{} confirmed, {} cancelled",
        snapshot.count_status("CONFIRMED"),
        snapshot.count_status("CANCELLED")
    ));
    Ok((row, snapshot))
}
