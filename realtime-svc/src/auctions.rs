//! Auction watchers: an auction's ranking, cut-off and awards as they change.
//!
//! Per watched auction one `tokio::sync::watch` channel holds the newest state seen,
//! fed by booking-svc's `auction.changed` broadcasts (each carries the whole public
//! auction at a version; an older or repeated version is dropped) and by reads of
//! `GetAuction`: when the first watcher comes, and by every watcher each `refresh`,
//! since broadcasts are lossy. A watcher sends the current state first (unless the
//! client already has that version, from `Last-Event-ID`), then every newer one it sees;
//! a slow reader skips to the latest. Rooms nobody watches are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use marquee_infra::grpc::PropagateTrace;
use marquee_proto::booking::auction_service_client::AuctionServiceClient;
use marquee_proto::booking::{Auction, AuctionChanged, GetAuctionRequest};
use marquee_proto::realtime::AuctionUpdate;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::error::RealtimeError;

pub type AuctionClient = AuctionServiceClient<InterceptedService<Channel, PropagateTrace>>;

/// An auction id as a request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuctionId(Uuid);

impl AuctionId {
    pub fn parse(value: &str) -> Result<Self, RealtimeError> {
        Uuid::parse_str(value.trim())
            .map(Self)
            .map_err(|_| RealtimeError::invalid("auctionId", "not a valid auction id"))
    }
}

/// Where a watcher starts: the version the client already has (its Last-Event-ID).
pub fn parse_resume(value: &str) -> Result<i64, RealtimeError> {
    if value.trim().is_empty() {
        return Ok(0);
    }
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| RealtimeError::invalid("lastEventId", "must be an auction version"))
}

type Latest = Option<Arc<Auction>>;

#[derive(Default)]
struct Rooms {
    by_auction: HashMap<AuctionId, watch::Sender<Latest>>,
}

pub struct AuctionHub {
    client: AuctionClient,
    refresh: Duration,
    rooms: Mutex<Rooms>,
}

/// Puts `auction` in `tx` if it is newer than what is there; whether it was.
fn offer(tx: &watch::Sender<Latest>, auction: Auction) -> bool {
    tx.send_if_modified(|latest| {
        let newer = latest
            .as_ref()
            .is_none_or(|current| auction.version > current.version);
        if newer {
            *latest = Some(Arc::new(auction));
        }
        newer
    })
}

impl AuctionHub {
    pub fn new(client: AuctionClient, refresh: Duration) -> Arc<Self> {
        Arc::new(Self {
            client,
            refresh,
            rooms: Mutex::default(),
        })
    }

    fn rooms(&self) -> MutexGuard<'_, Rooms> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An `auction.changed` broadcast: offered to its room, if anyone watches it.
    pub fn on_changed(&self, changed: AuctionChanged) {
        let Some(auction) = changed.auction else {
            return;
        };
        let Ok(id) = AuctionId::parse(&auction.auction_id) else {
            return;
        };
        let rooms = self.rooms();
        if let Some(tx) = rooms.by_auction.get(&id) {
            offer(tx, auction);
        }
    }

    async fn read(&self, id: AuctionId) -> Result<Auction, RealtimeError> {
        metrics::counter!("auction_reads_total").increment(1);
        self.client
            .clone()
            .get_auction(GetAuctionRequest {
                auction_id: id.0.to_string(),
            })
            .await
            .map_err(RealtimeError::Upstream)?
            .into_inner()
            .auction
            .ok_or_else(|| {
                RealtimeError::Upstream(tonic::Status::internal(
                    "an auction reply without its auction",
                ))
            })
    }

    /// The auction's updates after version `after`.
    pub async fn watch(
        self: &Arc<Self>,
        id: AuctionId,
        after: i64,
    ) -> Result<BoxStream<'static, AuctionUpdate>, RealtimeError> {
        // Join the room before the read, so no broadcast falls between them.
        let mut rx = {
            let mut rooms = self.rooms();
            rooms
                .by_auction
                .entry(id)
                .or_insert_with(|| watch::channel(None).0)
                .subscribe()
        };
        let first = self.read(id).await;
        let first = match first {
            Ok(auction) => auction,
            Err(error) => {
                drop(rx);
                self.evict(id);
                return Err(error);
            }
        };
        if let Some(tx) = self.rooms().by_auction.get(&id) {
            offer(tx, first);
        }
        rx.mark_changed();
        let mut refresh = tokio::time::interval(self.refresh);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        refresh.reset();
        let state = Watcher {
            rx,
            refresh,
            sent: after,
            hub: self.clone(),
            id,
        };
        let stream = futures::stream::unfold(state, |mut w| async move {
            let update = w.next().await?;
            Some((update, w))
        });
        Ok(Guarded {
            inner: stream.boxed(),
            hub: self.clone(),
            id,
        }
        .boxed())
    }

    /// Drops the room of `id` if nobody watches it.
    fn evict(&self, id: AuctionId) {
        let mut rooms = self.rooms();
        if rooms
            .by_auction
            .get(&id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            rooms.by_auction.remove(&id);
        }
    }
}

/// One watcher's state between updates.
struct Watcher {
    rx: watch::Receiver<Latest>,
    refresh: tokio::time::Interval,
    /// The version the client has.
    sent: i64,
    hub: Arc<AuctionHub>,
    id: AuctionId,
}

impl Watcher {
    /// The next update to send; `None` when the room is gone.
    async fn next(&mut self) -> Option<AuctionUpdate> {
        loop {
            tokio::select! {
                changed = self.rx.changed() => {
                    changed.ok()?;
                    let latest = self.rx.borrow_and_update().clone();
                    if let Some(auction) = latest
                        && auction.version > self.sent
                    {
                        self.sent = auction.version;
                        return Some(AuctionUpdate {
                            version: auction.version,
                            auction: Some((*auction).clone()),
                        });
                    }
                }
                _ = self.refresh.tick() => {
                    match self.hub.read(self.id).await {
                        Ok(auction) => {
                            if let Some(tx) = self.hub.rooms().by_auction.get(&self.id) {
                                offer(tx, auction);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(auction_id = %self.id.0, %error, "auction re-read failed");
                        }
                    }
                }
            }
        }
    }
}

/// A watcher's stream: when it ends (the client left), its room goes if it was the last.
struct Guarded {
    inner: BoxStream<'static, AuctionUpdate>,
    hub: Arc<AuctionHub>,
    id: AuctionId,
}

impl futures::Stream for Guarded {
    type Item = AuctionUpdate;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // The stream (and its receiver) is dropped with `inner` after this runs, so
        // count it out by hand: the room goes when this was its only watcher.
        let mut rooms = self.hub.rooms();
        if rooms
            .by_auction
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            rooms.by_auction.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auction(version: i64) -> Auction {
        Auction {
            auction_id: Uuid::nil().to_string(),
            version,
            ..Default::default()
        }
    }

    #[test]
    fn only_newer_versions_replace_the_latest() {
        let (tx, _rx) = watch::channel(None);
        assert!(offer(&tx, auction(3)));
        assert!(!offer(&tx, auction(2)), "an older version is dropped");
        assert!(!offer(&tx, auction(3)), "a repeated version is dropped");
        assert!(offer(&tx, auction(5)));
        assert_eq!(tx.borrow().as_ref().map(|a| a.version), Some(5));
    }

    #[test]
    fn resume_versions_parse() {
        assert_eq!(parse_resume("").ok(), Some(0));
        assert_eq!(parse_resume(" 42 ").ok(), Some(42));
        assert!(parse_resume("x").is_err());
    }
}
