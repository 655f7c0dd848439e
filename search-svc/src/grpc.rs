//! SearchService over gRPC: the only place search-svc's own prost types appear. Requests
//! are parsed into [`crate::domain`] types here; anything invalid is INVALID_ARGUMENT.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use marquee_infra::auth::{Claims, TokenKeys};
use marquee_proto::search as pb;
use marquee_proto::search::search_service_server::SearchService;
use tonic::{Request, Response, Status};

use crate::catalog::Catalog;
use crate::domain::{self, Query, SearchRequest};
use crate::error::SearchError;
use crate::index::SearchIndex;
use crate::rankings::{Kind, Rankings};

/// The role allowed to rebuild the index by hand.
const ADMIN: &str = "ADMIN";
/// The longest event id accepted.
const MAX_ID_CHARS: usize = 64;

#[derive(Clone)]
pub struct SearchApi {
    index: Arc<SearchIndex>,
    rankings: Rankings,
    catalog: Catalog,
    keys: TokenKeys,
}

impl std::fmt::Debug for SearchApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchApi").finish_non_exhaustive()
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

fn instant(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, SearchError> {
    let Some(t) = t else { return Ok(None) };
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .map(Some)
        .ok_or_else(|| SearchError::InvalidArgument(format!("{field} is not a valid timestamp")))
}

impl SearchApi {
    pub fn new(
        index: Arc<SearchIndex>,
        rankings: Rankings,
        catalog: Catalog,
        keys: TokenKeys,
    ) -> Self {
        Self {
            index,
            rankings,
            catalog,
            keys,
        }
    }

    /// The caller's claims: `None` without a token; a bad token is refused.
    fn caller<T>(&self, request: &Request<T>) -> Result<Option<Claims>, SearchError> {
        if request.metadata().get("authorization").is_none() {
            return Ok(None);
        }
        Ok(Some(self.keys.verify_metadata(request.metadata())?))
    }

    /// Counts in the background so a slow Redis never slows a search down.
    fn count(&self, kind: Kind, user: String, member: String) {
        let rankings = self.rankings.clone();
        tokio::spawn(async move {
            if let Err(error) = rankings.record(kind, &user, &member, Utc::now()).await {
                tracing::warn!(%error, ?kind, "ranking count failed");
            }
        });
    }

    fn parse_search(req: pb::SearchEventsRequest) -> Result<SearchRequest, SearchError> {
        let from = instant("from", req.from.as_ref())?;
        let to = instant("to", req.to.as_ref())?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(SearchError::InvalidArgument("from is after to".into()));
        }
        let request = SearchRequest {
            query: Query::parse("q", &req.q)?,
            category: domain::category(&req.category)?,
            from,
            to,
            bookable_at: req.bookable.then(Utc::now),
            page_size: domain::limit(
                "pageSize",
                req.page_size,
                domain::DEFAULT_PAGE_SIZE,
                domain::MAX_PAGE_SIZE,
            )?,
            offset: 0,
        };
        request.with_page_token(&req.page_token)
    }

    async fn search_events(
        &self,
        request: Request<pb::SearchEventsRequest>,
    ) -> Result<pb::SearchEventsResponse, SearchError> {
        let caller = self.caller(&request)?;
        let search = Self::parse_search(request.into_inner())?;
        let page = self.index.search(&search)?;
        if let Some(claims) = caller
            && search.offset == 0
            && page.total > 0
        {
            self.count(Kind::Keywords, claims.sub, search.query.normalized.clone());
        }
        metrics::counter!("search_queries_total", "empty" => (page.total == 0).to_string())
            .increment(1);
        Ok(pb::SearchEventsResponse {
            next_page_token: if page.more {
                search.next_page_token()
            } else {
                String::new()
            },
            total: i64::try_from(page.total).unwrap_or(i64::MAX),
            hits: page
                .hits
                .into_iter()
                .map(|hit| pb::SearchHit {
                    event_id: hit.event.id.clone(),
                    title: hit.event.title.clone(),
                    category: hit.event.category.clone(),
                    venue: hit.event.venue.clone(),
                    starts_at: Some(timestamp(hit.event.starts_at)),
                    title_highlight: hit.title_highlight,
                    description_snippet: hit.description_snippet,
                    score: hit.score,
                })
                .collect(),
        })
    }

    fn suggest(&self, req: pb::SuggestRequest) -> Result<pb::SuggestResponse, SearchError> {
        let query = Query::parse("q", &req.q)?;
        let limit = domain::limit(
            "limit",
            req.limit,
            domain::DEFAULT_SUGGESTIONS,
            domain::MAX_SUGGESTIONS,
        )?;
        Ok(pb::SuggestResponse {
            suggestions: self
                .index
                .suggest(&query.normalized, limit)
                .into_iter()
                .map(|s| pb::Suggestion {
                    text: s.text,
                    event_id: s.event_id,
                })
                .collect(),
        })
    }

    async fn popular_events(
        &self,
        req: pb::ListPopularEventsRequest,
    ) -> Result<pb::ListPopularEventsResponse, SearchError> {
        let limit = domain::limit(
            "limit",
            req.limit,
            domain::DEFAULT_RANKING,
            domain::MAX_RANKING,
        )?;
        // A few extra in case some ranked events are no longer in the catalog.
        let top = self
            .rankings
            .top(Kind::Events, limit + 10, Utc::now())
            .await?;
        let events = top
            .into_iter()
            .filter_map(|(id, score)| {
                let event = self.index.get(&id)?;
                Some(pb::PopularEvent {
                    event_id: event.id.clone(),
                    title: event.title.clone(),
                    score,
                })
            })
            .take(limit)
            .collect();
        Ok(pb::ListPopularEventsResponse { events })
    }

    async fn popular_keywords(
        &self,
        req: pb::ListPopularKeywordsRequest,
    ) -> Result<pb::ListPopularKeywordsResponse, SearchError> {
        let limit = domain::limit(
            "limit",
            req.limit,
            domain::DEFAULT_RANKING,
            domain::MAX_RANKING,
        )?;
        let top = self.rankings.top(Kind::Keywords, limit, Utc::now()).await?;
        Ok(pb::ListPopularKeywordsResponse {
            keywords: top
                .into_iter()
                .map(|(keyword, score)| pb::PopularKeyword { keyword, score })
                .collect(),
        })
    }

    async fn record_view(
        &self,
        request: Request<pb::RecordEventViewRequest>,
    ) -> Result<pb::RecordEventViewResponse, SearchError> {
        let caller = self.caller(&request)?;
        let id = request.into_inner().event_id;
        let id = id.trim();
        if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
            return Err(SearchError::InvalidArgument("eventId is not valid".into()));
        }
        if self.index.get(id).is_none() {
            return Err(SearchError::NotFound(format!("event {id}")));
        }
        // Anonymous views are not counted: one count per signed-in user and hour.
        if let Some(claims) = caller {
            self.rankings
                .record(Kind::Events, &claims.sub, id, Utc::now())
                .await?;
        }
        Ok(pb::RecordEventViewResponse {})
    }

    async fn rebuild(
        &self,
        request: Request<pb::RebuildIndexRequest>,
    ) -> Result<pb::RebuildIndexResponse, SearchError> {
        let claims = self.keys.verify_metadata(request.metadata())?;
        if claims.role != ADMIN {
            return Err(SearchError::PermissionDenied(
                "only an admin may rebuild the index".into(),
            ));
        }
        let (index_version, events) = self.catalog.rebuild(&self.index).await?;
        Ok(pb::RebuildIndexResponse {
            index_version,
            events: i64::try_from(events).unwrap_or(i64::MAX),
        })
    }
}

#[tonic::async_trait]
impl SearchService for SearchApi {
    async fn search_events(
        &self,
        request: Request<pb::SearchEventsRequest>,
    ) -> Result<Response<pb::SearchEventsResponse>, Status> {
        Ok(Response::new(
            SearchApi::search_events(self, request).await?,
        ))
    }

    async fn suggest(
        &self,
        request: Request<pb::SuggestRequest>,
    ) -> Result<Response<pb::SuggestResponse>, Status> {
        Ok(Response::new(SearchApi::suggest(
            self,
            request.into_inner(),
        )?))
    }

    async fn list_popular_events(
        &self,
        request: Request<pb::ListPopularEventsRequest>,
    ) -> Result<Response<pb::ListPopularEventsResponse>, Status> {
        Ok(Response::new(
            self.popular_events(request.into_inner()).await?,
        ))
    }

    async fn list_popular_keywords(
        &self,
        request: Request<pb::ListPopularKeywordsRequest>,
    ) -> Result<Response<pb::ListPopularKeywordsResponse>, Status> {
        Ok(Response::new(
            self.popular_keywords(request.into_inner()).await?,
        ))
    }

    async fn record_event_view(
        &self,
        request: Request<pb::RecordEventViewRequest>,
    ) -> Result<Response<pb::RecordEventViewResponse>, Status> {
        Ok(Response::new(self.record_view(request).await?))
    }

    async fn rebuild_index(
        &self,
        request: Request<pb::RebuildIndexRequest>,
    ) -> Result<Response<pb::RebuildIndexResponse>, Status> {
        Ok(Response::new(self.rebuild(request).await?))
    }
}
