//! What search-svc works with, parsed at the edge: the indexed event, a search request
//! with its filters and page, and the limits that keep every request cheap.

use chrono::{DateTime, Utc};

use crate::error::SearchError;

/// The longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most words of a query that are searched for (the rest are ignored).
pub const MAX_QUERY_WORDS: usize = 8;
pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;
/// Results past this offset are not paged to (search engines stop somewhere too).
pub const MAX_OFFSET: usize = 1000;
pub const DEFAULT_SUGGESTIONS: usize = 10;
pub const MAX_SUGGESTIONS: usize = 20;
pub const DEFAULT_RANKING: usize = 10;
pub const MAX_RANKING: usize = 100;

/// An event as the index holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDoc {
    pub id: String,
    pub title: String,
    pub category: String,
    pub description: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub sale_starts_at: DateTime<Utc>,
    pub sale_ends_at: DateTime<Utc>,
}

/// A search: a query plus filters and a page.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub query: Query,
    pub category: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only events on sale at this instant.
    pub bookable_at: Option<DateTime<Utc>>,
    pub page_size: usize,
    pub offset: usize,
}

impl SearchRequest {
    /// A stable fingerprint of everything but the page, which a page token carries
    /// so that it cannot be replayed against another search.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        h.write(self.query.normalized.as_bytes());
        h.write(self.category.as_deref().unwrap_or("-").as_bytes());
        for t in [self.from, self.to] {
            h.write(&t.map_or(i64::MIN, |t| t.timestamp()).to_le_bytes());
        }
        h.write(&[u8::from(self.bookable_at.is_some())]);
        h.finish()
    }

    /// The token of the page after this one.
    pub fn next_page_token(&self) -> String {
        format!(
            "{}.{:016x}",
            self.offset + self.page_size,
            self.fingerprint()
        )
    }

    /// Reads `token` (empty: the first page) for this search.
    pub fn with_page_token(mut self, token: &str) -> Result<Self, SearchError> {
        if token.is_empty() {
            return Ok(self);
        }
        let invalid = || SearchError::InvalidArgument("pageToken is not valid".into());
        let (offset, fingerprint) = token.split_once('.').ok_or_else(invalid)?;
        let offset: usize = offset.parse().map_err(|_| invalid())?;
        let fingerprint = u64::from_str_radix(fingerprint, 16).map_err(|_| invalid())?;
        if fingerprint != self.fingerprint() {
            return Err(SearchError::InvalidArgument(
                "pageToken belongs to another search".into(),
            ));
        }
        if offset > MAX_OFFSET {
            return Err(SearchError::InvalidArgument(format!(
                "pageToken goes past the first {MAX_OFFSET} results"
            )));
        }
        self.offset = offset;
        Ok(self)
    }
}

/// A query string, trimmed, lower-cased and with whitespace collapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub normalized: String,
}

impl Query {
    pub fn parse(field: &str, raw: &str) -> Result<Self, SearchError> {
        if raw.chars().count() > MAX_QUERY_CHARS {
            return Err(SearchError::InvalidArgument(format!(
                "{field} is longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        let normalized = raw
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if normalized.is_empty() {
            return Err(SearchError::InvalidArgument(format!(
                "{field} must not be empty"
            )));
        }
        if !normalized
            .chars()
            .any(|c| c.is_alphanumeric() || crate::korean::is_compat_jamo(c))
        {
            return Err(SearchError::InvalidArgument(format!(
                "{field} has no letters or digits"
            )));
        }
        Ok(Self { normalized })
    }

    /// The query's words (see [`crate::korean::words`]), at most [`MAX_QUERY_WORDS`].
    pub fn words(&self) -> Vec<&str> {
        crate::korean::words(&self.normalized)
            .into_iter()
            .map(|w| w.2)
            .take(MAX_QUERY_WORDS)
            .collect()
    }
}

/// A page size or limit: 0 means `default`; above `max` or negative is refused.
pub fn limit(field: &str, value: i32, default: usize, max: usize) -> Result<usize, SearchError> {
    match usize::try_from(value) {
        Ok(0) => Ok(default),
        Ok(n) if n <= max => Ok(n),
        _ => Err(SearchError::InvalidArgument(format!(
            "{field} must be between 1 and {max}"
        ))),
    }
}

/// A category filter: trimmed, compared case-insensitively.
pub fn category(raw: &str) -> Result<Option<String>, SearchError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > 50 {
        return Err(SearchError::InvalidArgument(
            "category is longer than 50 characters".into(),
        ));
    }
    Ok(Some(trimmed.to_lowercase()))
}

/// 64-bit FNV-1a: a stable hash for page tokens (std's hasher is seeded per process).
#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(q: &str) -> SearchRequest {
        SearchRequest {
            query: Query::parse("q", q).expect("query"),
            category: None,
            from: None,
            to: None,
            bookable_at: None,
            page_size: 20,
            offset: 0,
        }
    }

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_search() {
        let first = request("bts");
        let token = first.next_page_token();
        assert_eq!(
            request("bts").with_page_token(&token).expect("ok").offset,
            20
        );
        assert!(request("iu").with_page_token(&token).is_err());
        assert!(request("bts").with_page_token("garbage").is_err());
        assert!(request("bts").with_page_token("99999.0").is_err());
    }

    #[test]
    fn queries_are_normalized_and_bounded() {
        assert_eq!(
            Query::parse("q", "  BTS   부산 ").expect("ok").normalized,
            "bts 부산"
        );
        assert!(Query::parse("q", "   ").is_err());
        assert!(Query::parse("q", "!!!").is_err());
        assert!(Query::parse("q", &"a".repeat(201)).is_err());
        assert!(limit("pageSize", 101, 20, 100).is_err());
        assert!(limit("pageSize", -1, 20, 100).is_err());
        assert_eq!(limit("pageSize", 0, 20, 100).ok(), Some(20));
    }
}
