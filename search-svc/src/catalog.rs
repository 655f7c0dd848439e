//! Where the index comes from: booking-svc's catalog over gRPC (full rebuilds) and its
//! `catalog.*` change events over the bus (freshness). booking-svc's prost types stop
//! here.

use backon::{ExponentialBuilder, Retryable};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use marquee_infra::bus::Envelope;
use marquee_infra::grpc::PropagateTrace;
use marquee_proto::booking;
use marquee_proto::booking::catalog_service_client::CatalogServiceClient;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::domain::EventDoc;
use crate::error::SearchError;
use crate::index::SearchIndex;
pub use marquee_proto::kinds::EVENT_CHANGED;

/// The catalog changes search-svc follows. Every replica subscribes with a queue of
/// its own (`Bus::subscribe`), since every replica keeps its own index.
pub const ROUTING_KEYS: &[&str] = &["catalog.#"];
/// booking-svc's largest page.
const PAGE_SIZE: i32 = 100;
/// The most queued catalog changes the follower applies as one commit.
pub const MAX_BATCH: usize = 1000;

fn time(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// An event as booking-svc sends it, as the index holds it. An event without an id or
/// a start time is refused.
pub fn event_doc(event: booking::Event) -> Result<EventDoc, String> {
    if event.event_id.is_empty() {
        return Err("event without an id".into());
    }
    let starts_at = time(event.starts_at.as_ref())
        .ok_or_else(|| format!("event {} has no valid startsAt", event.event_id))?;
    let sale_starts_at = time(event.sale_starts_at.as_ref())
        .or_else(|| time(event.created_at.as_ref()))
        .unwrap_or(DateTime::UNIX_EPOCH);
    let sale_ends_at = time(event.sale_ends_at.as_ref()).unwrap_or(starts_at);
    Ok(EventDoc {
        id: event.event_id,
        title: event.title,
        category: event.category,
        description: event.description,
        venue: event.venue,
        starts_at,
        sale_starts_at,
        sale_ends_at,
    })
}

/// booking-svc's CatalogService.
#[derive(Debug, Clone)]
pub struct Catalog {
    client: CatalogServiceClient<InterceptedService<Channel, PropagateTrace>>,
}

impl Catalog {
    pub fn new(booking_url: &str) -> anyhow::Result<Self> {
        let channel = marquee_infra::grpc::lazy_channel(booking_url)?;
        Ok(Self {
            client: CatalogServiceClient::with_interceptor(channel, PropagateTrace),
        })
    }

    /// Every event of the catalog, page by page.
    pub async fn all_events(&self) -> Result<Vec<EventDoc>, SearchError> {
        let mut client = self.client.clone();
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_events(booking::ListEventsRequest {
                    page_size: PAGE_SIZE,
                    page_token: page_token.clone(),
                })
                .await?
                .into_inner();
            for event in page.events {
                match event_doc(event) {
                    Ok(doc) => events.push(doc),
                    Err(reason) => tracing::warn!(%reason, "catalog event skipped"),
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(events);
            }
            page_token = page.next_page_token;
        }
    }

    /// Reads the whole catalog into a new index version and swaps it in.
    pub async fn rebuild(&self, index: &Arc<SearchIndex>) -> Result<(String, usize), SearchError> {
        let started = std::time::Instant::now();
        // The ticket journals changes that arrive while the catalog is read.
        let ticket = index.begin_rebuild()?;
        let events = self.all_events().await?;
        let index = index.clone();
        let built =
            tokio::task::spawn_blocking(move || index.finish_rebuild(ticket, events)).await??;
        metrics::histogram!("search_index_rebuild_seconds").record(started.elapsed().as_secs_f64());
        Ok(built)
    }
}

/// Rebuilds at start-up (retrying with backoff until booking-svc answers), then every
/// `interval`, until `stop`.
pub async fn rebuild_loop(
    catalog: Catalog,
    index: Arc<SearchIndex>,
    on_start: bool,
    interval: Option<Duration>,
    stop: CancellationToken,
) {
    if on_start {
        // Until booking-svc answers: exponential from 500 ms to 30 s, with jitter.
        let first = (|| catalog.rebuild(&index))
            .retry(
                ExponentialBuilder::new()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(30))
                    .with_jitter()
                    .without_max_times(),
            )
            .when(|error| !matches!(error, SearchError::RebuildRunning))
            .notify(|error, retry_in| {
                tracing::warn!(%error, retry_in_ms = retry_in.as_millis() as u64, "initial rebuild failed");
            });
        tokio::select! {
            () = stop.cancelled() => return,
            // An error here is RebuildRunning: another rebuild builds the first index.
            built = first => if let Ok((version, events)) = built {
                tracing::info!(%version, events, "initial index built");
            },
        }
    }
    let Some(interval) = interval else { return };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = catalog.rebuild(&index).await {
            tracing::warn!(%error, "periodic rebuild failed");
        }
    }
}

/// Applies `catalog.*` notifications to the serving index (journaled for a running
/// rebuild) in the order they arrived; other kinds are ignored. Whatever queued up
/// while the previous batch was applied (up to [`MAX_BATCH`]) is applied as one batch:
/// one commit and one reader reload, so a burst of changes costs about as much as one.
/// Returns the bus handler that queues them.
pub fn follow(
    index: Arc<SearchIndex>,
    stop: CancellationToken,
) -> Arc<dyn Fn(Envelope) + Send + Sync> {
    // Exported (at zero) before the first change arrives.
    let _ = metrics::histogram!("search_index_update_lag_seconds");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Envelope>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = rx.recv_many(&mut batch, MAX_BATCH) => received,
            };
            if received == 0 {
                return;
            }
            if let Err(error) = apply(&index, std::mem::take(&mut batch)).await {
                tracing::warn!(%error, changes = received, "catalog changes not applied");
            }
        }
    });
    Arc::new(move |envelope: Envelope| {
        if envelope.kind == EVENT_CHANGED {
            let _ = tx.send(envelope);
        }
    })
}

/// The event a `catalog.event_changed` notification carries.
fn changed_event(envelope: &Envelope) -> Result<EventDoc, SearchError> {
    let malformed = |reason: String| SearchError::MalformedMessage {
        kind: envelope.kind.clone(),
        reason,
    };
    let changed = booking::EventChanged::decode(envelope.payload.as_slice())
        .map_err(|e| malformed(e.to_string()))?;
    changed
        .event
        .ok_or_else(|| malformed("no event".into()))
        .and_then(|e| event_doc(e).map_err(malformed))
}

/// Upserts the events of `envelopes` in one step; a malformed notification is skipped
/// (and logged), and of several changes of one event the last wins.
async fn apply(index: &Arc<SearchIndex>, envelopes: Vec<Envelope>) -> Result<(), SearchError> {
    let mut events: Vec<EventDoc> = Vec::with_capacity(envelopes.len());
    let mut position: HashMap<String, usize> = HashMap::with_capacity(envelopes.len());
    // When booking-svc published each change applied (the envelope's `occurred_at`;
    // the time of receipt when the message lacks it).
    let mut published: Vec<DateTime<Utc>> = Vec::with_capacity(envelopes.len());
    for envelope in &envelopes {
        match changed_event(envelope) {
            Ok(event) => {
                published.push(envelope.occurred_at);
                match position.get(&event.id) {
                    Some(&at) => events[at] = event,
                    None => {
                        position.insert(event.id.clone(), events.len());
                        events.push(event);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, message_id = %envelope.message_id, "catalog change skipped");
            }
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let count = events.len();
    let index = index.clone();
    tokio::task::spawn_blocking(move || index.upsert(&events)).await??;
    // Committed and the reader reloaded: searches see the changes from now on.
    let now = Utc::now();
    for at in published {
        // 0 if `at` is ahead: booking-svc's clock and this pod's differ.
        let lag = (now - at).to_std().unwrap_or_default().as_secs_f64();
        // Seconds from booking-svc publishing a catalog change to its being searchable.
        metrics::histogram!("search_index_update_lag_seconds").record(lag);
    }
    metrics::counter!("search_catalog_updates_total").increment(count as u64);
    metrics::histogram!("search_catalog_batch_events").record(count as f64);
    tracing::debug!(
        events = count,
        notifications = envelopes.len(),
        "catalog changes indexed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synonyms::Synonyms;

    fn changed(id: &str, title: &str) -> Envelope {
        let event = booking::Event {
            event_id: id.into(),
            title: title.into(),
            starts_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        envelope(booking::EventChanged { event: Some(event) }.encode_to_vec())
    }

    fn envelope(payload: Vec<u8>) -> Envelope {
        Envelope {
            message_id: uuid::Uuid::new_v4(),
            kind: EVENT_CHANGED.into(),
            saga_id: uuid::Uuid::nil(),
            version: 1,
            occurred_at: Utc::now(),
            trace_context: Default::default(),
            payload,
        }
    }

    #[tokio::test]
    async fn a_batch_keeps_the_last_change_of_an_event_and_skips_malformed_ones() {
        let index = Arc::new(SearchIndex::new(Synonyms::default()).expect("index"));
        let batch = vec![
            changed("a", "first title"),
            envelope(vec![0xff, 0xff, 0xff]),
            changed("", "no id"),
            changed("b", "other event"),
            changed("a", "renamed title"),
        ];
        apply(&index, batch).await.expect("applied");
        assert_eq!(index.current().len(), 2);
        assert_eq!(
            index.get("a").map(|e| e.title.clone()).as_deref(),
            Some("renamed title")
        );
        assert!(index.get("b").is_some());
    }

    #[tokio::test]
    async fn an_applied_batch_exports_its_lag_and_the_index_update_time() {
        let handle = marquee_infra::metrics::prometheus();
        let index = Arc::new(SearchIndex::new(Synonyms::default()).expect("index"));
        let before = Utc::now().timestamp() as f64;
        let mut late = changed("lagged", "published a minute ago");
        late.occurred_at = Utc::now() - chrono::Duration::seconds(60);
        apply(&index, vec![late]).await.expect("applied");
        let text = handle.render();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        };
        let updated = value("search_index_last_update_timestamp_seconds");
        assert!(
            updated.is_some_and(|t| t >= before),
            "last update {updated:?}, before {before}"
        );
        assert!(value("search_index_update_lag_seconds_count").is_some_and(|n| n >= 1.0));
        // The minute-old change landed beyond the largest bucket.
        let sum = value("search_index_update_lag_seconds_sum");
        assert!(sum.is_some_and(|s| s >= 60.0), "lag sum {sum:?}");
    }

    #[tokio::test]
    async fn a_batch_applied_during_a_rebuild_survives_the_swap() {
        let index = Arc::new(SearchIndex::new(Synonyms::default()).expect("index"));
        let ticket = index.begin_rebuild().expect("rebuild starts");
        apply(
            &index,
            vec![changed("late", "late change"), changed("b", "b")],
        )
        .await
        .expect("applied");
        // The catalog read by the rebuild predates the changes.
        index.finish_rebuild(ticket, Vec::new()).expect("swapped");
        assert!(index.get("late").is_some());
        assert!(index.get("b").is_some());
    }
}
