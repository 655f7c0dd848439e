//! The index: one immutable-schema tantivy index in RAM per version, the documents it
//! was built from, and the suggestion table. [`SearchIndex`] serves the current version
//! and swaps in a rebuilt one atomically; catalog changes that arrive while a rebuild
//! runs are journaled and replayed onto the new version before the swap, so none is
//! lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use chrono::Utc;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, BoostQuery, DisjunctionMaxQuery, FuzzyTermQuery, Occur, PhraseQuery, Query,
    RangeQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::analysis::{self, CHOSUNG_TOKENIZER, KoreanTokenizer, Mode, TEXT_TOKENIZER};
use crate::domain::{EventDoc, SearchRequest};
use crate::error::SearchError;
use crate::korean;
use crate::synonyms::Synonyms;

/// Field boosts: a title match outranks a venue match outranks a description match.
const TITLE_BOOST: f32 = 4.0;
const CHOSUNG_BOOST: f32 = 3.0;
const VENUE_BOOST: f32 = 1.5;
const CATEGORY_BOOST: f32 = 1.0;
const DESCRIPTION_BOOST: f32 = 1.0;
/// A synonym counts a little less than the word the buyer typed.
const SYNONYM_WEIGHT: f32 = 0.8;
/// The word without a particle it ends in (잠실에서 → 잠실) counts less than the word
/// as typed, so a title that really has 잠실에서 ranks first.
const PARTICLE_WEIGHT: f32 = 0.7;
/// A match across the title's word boundaries (서울재즈 in 서울 재즈) counts a little
/// less than one within its words.
const COMPACT_TITLE_WEIGHT: f32 = 0.9;
/// How much the other matching alternatives of a word add to the best one.
const ALTERNATIVE_TIE_BREAKER: f32 = 0.1;
/// A typo-tolerant match counts less than an exact one.
const FUZZY_WEIGHT: f32 = 0.5;
/// Latin words at least this long tolerate one typo (edit or transposition).
const FUZZY_MIN_CHARS: usize = 4;
/// Title words per event that suggestions can start at.
const SUGGEST_WORD_STARTS: usize = 4;
const SUGGEST_KEY_CHARS: usize = 30;
/// Candidates a suggestion lookup looks at before ranking them.
const SUGGEST_SCAN: usize = 2000;
const DESCRIPTION_SNIPPET_CHARS: usize = 160;
const HIGHLIGHT_OPEN: &str = "<em>";
const HIGHLIGHT_CLOSE: &str = "</em>";
/// Indexing memory of a version's writer (tantivy's minimum is 15 MB a thread).
const WRITER_MEMORY: usize = 64_000_000;

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    /// The title with the spaces between Hangul words removed.
    title_compact: Field,
    description: Field,
    venue: Field,
    category_text: Field,
    category_key: Field,
    chosung: Field,
    starts_at: Field,
    sale_starts_at: Field,
    sale_ends_at: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
    };
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        title: b.add_text_field("title", text(TEXT_TOKENIZER)),
        title_compact: b.add_text_field("title_compact", text(TEXT_TOKENIZER)),
        description: b.add_text_field("description", text(TEXT_TOKENIZER)),
        venue: b.add_text_field("venue", text(TEXT_TOKENIZER)),
        category_text: b.add_text_field("category_text", text(TEXT_TOKENIZER)),
        category_key: b.add_text_field("category_key", STRING),
        chosung: b.add_text_field("chosung", text(CHOSUNG_TOKENIZER)),
        starts_at: b.add_i64_field("starts_at", INDEXED | FAST),
        sale_starts_at: b.add_i64_field("sale_starts_at", INDEXED | FAST),
        sale_ends_at: b.add_i64_field("sale_ends_at", INDEXED | FAST),
    };
    (b.build(), fields)
}

/// One hit of a search, ready for the wire.
#[derive(Debug, Clone)]
pub struct Hit {
    pub event: Arc<EventDoc>,
    pub title_highlight: String,
    pub description_snippet: String,
    pub score: f32,
}

/// One page of a search.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub hits: Vec<Hit>,
    pub total: usize,
    /// Whether there are results after this page (within the paging limit).
    pub more: bool,
}

/// One completion of a partial query.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub text: String,
    pub event_id: String,
}

/// One version of the index: built once, then kept fresh by upserts.
pub struct IndexVersion {
    name: String,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    docs: RwLock<HashMap<String, Arc<EventDoc>>>,
    suggester: Suggester,
}

impl std::fmt::Debug for IndexVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexVersion")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn lock_poisoned<T>(_: T) -> SearchError {
    SearchError::Index(tantivy::TantivyError::InternalError(
        "index lock poisoned".into(),
    ))
}

impl IndexVersion {
    /// Indexes `events` into a new in-memory index named `name`.
    pub fn build(name: String, events: Vec<EventDoc>) -> Result<Self, SearchError> {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        index.tokenizers().register(
            TEXT_TOKENIZER,
            TextAnalyzer::from(KoreanTokenizer::new(Mode::Text)),
        );
        index.tokenizers().register(
            CHOSUNG_TOKENIZER,
            TextAnalyzer::from(KoreanTokenizer::new(Mode::Chosung)),
        );
        let threads = if events.len() > 10_000 { 2 } else { 1 };
        let mut writer: IndexWriter = index.writer_with_num_threads(threads, WRITER_MEMORY)?;
        let mut docs = HashMap::with_capacity(events.len());
        for event in events {
            let event = Arc::new(event);
            if let Some(old) = docs.insert(event.id.clone(), event.clone()) {
                // The same event twice in one listing: keep the last, index it once.
                writer.delete_term(Term::from_field_text(fields.id, &old.id));
            }
            writer.add_document(document(&fields, &event))?;
        }
        writer.commit()?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let suggester = Suggester::build(docs.values().cloned());
        Ok(Self {
            name,
            reader,
            writer: Mutex::new(writer),
            fields,
            docs: RwLock::new(docs),
            suggester,
        })
    }

    /// How many events the version holds.
    pub fn len(&self) -> usize {
        self.docs.read().map_or(0, |d| d.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &str) -> Option<Arc<EventDoc>> {
        self.docs.read().ok()?.get(id).cloned()
    }

    /// Adds or replaces events, searchable when this returns. Blocking.
    pub fn upsert(&self, events: &[EventDoc]) -> Result<(), SearchError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().map_err(lock_poisoned)?;
        for event in events {
            writer.delete_term(Term::from_field_text(self.fields.id, &event.id));
            writer.add_document(document(&self.fields, event))?;
        }
        writer.commit()?;
        let fresh: Vec<Arc<EventDoc>> = events.iter().cloned().map(Arc::new).collect();
        {
            let mut docs = self.docs.write().map_err(lock_poisoned)?;
            for event in &fresh {
                docs.insert(event.id.clone(), event.clone());
            }
        }
        self.suggester.add(&fresh);
        self.reader.reload()?;
        Ok(())
    }

    /// One page of events matching `request`, best first.
    pub fn search(
        &self,
        request: &SearchRequest,
        synonyms: &Synonyms,
    ) -> Result<SearchPage, SearchError> {
        let searcher = self.reader.searcher();
        let plan = QueryPlan::new(&self.fields, request, synonyms);
        let Some(text) = plan.text_query(Occur::Must) else {
            return Ok(SearchPage {
                hits: Vec::new(),
                total: 0,
                more: false,
            });
        };
        let collector = (
            TopDocs::with_limit(request.page_size)
                .and_offset(request.offset)
                .order_by_score(),
            Count,
        );
        let mut query = self.filtered(request, text);
        let (mut top, mut total) = searcher.search(&query, &collector)?;
        if total == 0 && plan.words.len() > 1 {
            // Nothing has every word: fall back to any word, best first.
            if let Some(relaxed) = plan.text_query(Occur::Should) {
                query = self.filtered(request, relaxed);
                (top, total) = searcher.search(&query, &collector)?;
            }
        }
        let mut found = Vec::with_capacity(top.len());
        {
            // Held only to look the events up: highlighting happens after, so the
            // catalog follower's writes never wait on it.
            let docs = self.docs.read().map_err(lock_poisoned)?;
            for (score, address) in top {
                let Some(id) = stored_id(&searcher, &self.fields, address)? else {
                    continue;
                };
                if let Some(event) = docs.get(&id) {
                    found.push((score, event.clone()));
                }
            }
        }
        let hits = if found.is_empty() {
            Vec::new()
        } else {
            let highlighter = Highlighter::new(&self.fields, &plan);
            found
                .into_iter()
                .map(|(score, event)| Hit {
                    title_highlight: highlighter.title(&event.title),
                    description_snippet: highlighter.description(&event.description),
                    event,
                    score,
                })
                .collect()
        };
        let end = request.offset + request.page_size;
        Ok(SearchPage {
            more: total > end && end <= crate::domain::MAX_OFFSET,
            hits,
            total,
        })
    }

    /// Completions of `query` (what the buyer has typed so far), at most `limit`.
    pub fn suggest(&self, query: &str, limit: usize) -> Vec<Suggestion> {
        let Ok(docs) = self.docs.read() else {
            return Vec::new();
        };
        self.suggester.suggest(query, limit, &docs)
    }

    fn filtered(&self, request: &SearchRequest, text: Box<dyn Query>) -> Box<dyn Query> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text)];
        let f = &self.fields;
        if let Some(category) = &request.category {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.category_key, category),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if request.from.is_some() || request.to.is_some() {
            let lower = request.from.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(f.starts_at, t.timestamp()))
            });
            let upper = request.to.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(f.starts_at, t.timestamp()))
            });
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        if let Some(now) = request.bookable_at {
            let now = now.timestamp();
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Unbounded,
                    Bound::Included(Term::from_field_i64(f.sale_starts_at, now)),
                )),
            ));
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Excluded(Term::from_field_i64(f.sale_ends_at, now)),
                    Bound::Unbounded,
                )),
            ));
        }
        if clauses.len() == 1 {
            clauses.swap_remove(0).1
        } else {
            Box::new(BooleanQuery::new(clauses))
        }
    }
}

fn stored_id(
    searcher: &tantivy::Searcher,
    fields: &Fields,
    address: DocAddress,
) -> Result<Option<String>, SearchError> {
    let doc: TantivyDocument = searcher.doc(address)?;
    Ok(doc
        .get_first(fields.id)
        .and_then(|v| v.as_str())
        .map(str::to_owned))
}

fn document(f: &Fields, e: &EventDoc) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(f.id, &e.id);
    doc.add_text(f.title, &e.title);
    doc.add_text(f.title_compact, korean::compact(&e.title));
    doc.add_text(f.description, &e.description);
    doc.add_text(f.venue, &e.venue);
    doc.add_text(f.category_text, &e.category);
    doc.add_text(f.category_key, e.category.trim().to_lowercase());
    doc.add_text(f.chosung, &e.title);
    doc.add_i64(f.starts_at, e.starts_at.timestamp());
    doc.add_i64(f.sale_starts_at, e.sale_starts_at.timestamp());
    doc.add_i64(f.sale_ends_at, e.sale_ends_at.timestamp());
    doc
}

/// A query's words, each with its alternatives (itself and its synonyms) analysed.
struct QueryPlan {
    fields: Fields,
    words: Vec<WordPlan>,
}

struct WordPlan {
    /// All consonants: matched against the title's initials only.
    chosung: Option<Vec<String>>,
    /// (tokens, weight, may be fuzzy) per alternative.
    alternatives: Vec<(Vec<String>, f32, bool)>,
}

impl QueryPlan {
    fn new(fields: &Fields, request: &SearchRequest, synonyms: &Synonyms) -> Self {
        let mut words = Vec::new();
        for word in request.query.words() {
            if korean::is_chosung_query(word) {
                let tokens = token_texts(Mode::Chosung, word);
                if !tokens.is_empty() {
                    words.push(WordPlan {
                        chosung: Some(tokens),
                        alternatives: Vec::new(),
                    });
                }
                continue;
            }
            let mut alternatives: Vec<(Vec<String>, f32, bool)> = Vec::new();
            let mut add = |text: &str, weight: f32, fuzzy: bool| {
                let tokens = token_texts(Mode::Text, text);
                if !tokens.is_empty() && !alternatives.iter().any(|(t, _, _)| *t == tokens) {
                    alternatives.push((tokens, weight, fuzzy));
                }
            };
            add(word, 1.0, true);
            for synonym in synonyms.of(word).unwrap_or_default() {
                add(synonym, SYNONYM_WEIGHT, false);
            }
            // People type particles (아이유의, 잠실에서): the word without one is a
            // weaker alternative, never a replacement.
            for stem in korean::particle_stems(word) {
                add(stem, PARTICLE_WEIGHT, true);
                for synonym in synonyms.of(stem).unwrap_or_default() {
                    add(synonym, PARTICLE_WEIGHT * SYNONYM_WEIGHT, false);
                }
            }
            if alternatives.is_empty() {
                continue;
            }
            words.push(WordPlan {
                chosung: None,
                alternatives,
            });
        }
        Self {
            fields: *fields,
            words,
        }
    }

    /// The query over every word, each word required (`Must`) or optional (`Should`).
    fn text_query(&self, occur: Occur) -> Option<Box<dyn Query>> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = self
            .words
            .iter()
            .map(|w| (occur, self.word_query(w)))
            .collect();
        match clauses.len() {
            0 => None,
            _ => Some(Box::new(BooleanQuery::new(clauses))),
        }
    }

    fn word_query(&self, word: &WordPlan) -> Box<dyn Query> {
        let f = &self.fields;
        if let Some(tokens) = &word.chosung {
            return boost(sequence(f.chosung, tokens), CHOSUNG_BOOST);
        }
        // The best alternative (the word or one of its synonyms) counts, so that a
        // word with many synonyms does not outscore one typed exactly.
        let mut best: Vec<Box<dyn Query>> = Vec::new();
        for (tokens, weight, fuzzy) in &word.alternatives {
            let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, field_boost) in [
                (f.title, TITLE_BOOST),
                (f.venue, VENUE_BOOST),
                (f.category_text, CATEGORY_BOOST),
                (f.description, DESCRIPTION_BOOST),
            ] {
                // A phrase scores the sum of its terms: average it so that a long
                // Hangul word (many bigrams) does not outweigh a short Latin one.
                let per_token = 1.0 / tokens.len() as f32;
                let by = field_boost * weight * per_token;
                let exact = boost(sequence(field, tokens), by);
                if field == f.title && tokens.len() > 1 {
                    // A title typed without its spaces (서울재즈페스티벌) matches the
                    // compact title; the better of the two counts.
                    let compact =
                        boost(sequence(f.title_compact, tokens), by * COMPACT_TITLE_WEIGHT);
                    any.push((
                        Occur::Should,
                        Box::new(DisjunctionMaxQuery::new(vec![exact, compact])),
                    ));
                } else {
                    any.push((Occur::Should, exact));
                }
                let typo_tolerant = *fuzzy
                    && tokens.len() == 1
                    && tokens[0].chars().count() >= FUZZY_MIN_CHARS
                    && tokens[0].chars().all(|c| c.is_ascii_alphabetic());
                if typo_tolerant && field != f.category_text {
                    let term = Term::from_field_text(field, &tokens[0]);
                    any.push((
                        Occur::Should,
                        boost(
                            Box::new(FuzzyTermQuery::new(term, 1, true)),
                            field_boost * weight * FUZZY_WEIGHT,
                        ),
                    ));
                }
            }
            best.push(Box::new(BooleanQuery::new(any)));
        }
        Box::new(DisjunctionMaxQuery::with_tie_breaker(
            best,
            ALTERNATIVE_TIE_BREAKER,
        ))
    }

    /// Every token text the query may match in a text field (for highlighting).
    fn text_tokens(&self) -> HashSet<&str> {
        self.words
            .iter()
            .flat_map(|w| w.alternatives.iter())
            .flat_map(|(tokens, _, _)| tokens.iter().map(String::as_str))
            .collect()
    }
}

fn boost(query: Box<dyn Query>, by: f32) -> Box<dyn Query> {
    Box::new(BoostQuery::new(query, by))
}

/// One token: a term query; several: a phrase (consecutive positions).
fn sequence(field: Field, tokens: &[String]) -> Box<dyn Query> {
    let terms: Vec<Term> = tokens
        .iter()
        .map(|t| Term::from_field_text(field, t))
        .collect();
    if terms.len() == 1 {
        Box::new(TermQuery::new(
            terms[0].clone(),
            IndexRecordOption::WithFreqs,
        ))
    } else {
        Box::new(PhraseQuery::new(terms))
    }
}

fn token_texts(mode: Mode, text: &str) -> Vec<String> {
    analysis::analyze(mode, text)
        .into_iter()
        .map(|t| t.text)
        .collect()
}

/// Wraps the query's tokens in `<em>` in a title and a description fragment.
struct Highlighter {
    title: SnippetGenerator,
    description: SnippetGenerator,
}

impl Highlighter {
    fn new(fields: &Fields, plan: &QueryPlan) -> Self {
        let terms: BTreeMap<String, f32> = plan
            .text_tokens()
            .into_iter()
            .map(|t| (t.to_owned(), 1.0))
            .collect();
        let analyzer = || TextAnalyzer::from(KoreanTokenizer::new(Mode::Text));
        Self {
            title: SnippetGenerator::new(terms.clone(), analyzer(), fields.title, 500),
            description: SnippetGenerator::new(
                terms,
                analyzer(),
                fields.description,
                DESCRIPTION_SNIPPET_CHARS,
            ),
        }
    }

    fn title(&self, title: &str) -> String {
        let mut snippet = self.title.snippet(title);
        if snippet.highlighted().is_empty() {
            escape_html(title)
        } else {
            snippet.set_snippet_prefix_postfix(HIGHLIGHT_OPEN, HIGHLIGHT_CLOSE);
            snippet.to_html()
        }
    }

    fn description(&self, description: &str) -> String {
        let mut snippet = self.description.snippet(description);
        snippet.set_snippet_prefix_postfix(HIGHLIGHT_OPEN, HIGHLIGHT_CLOSE);
        if snippet.highlighted().is_empty() {
            let cut: String = description
                .chars()
                .take(DESCRIPTION_SNIPPET_CHARS)
                .collect();
            escape_html(&cut)
        } else {
            snippet.to_html()
        }
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A suggestion candidate: a title read from one of its first words on.
#[derive(Debug)]
struct Entry {
    key: Box<str>,
    word: u8,
    doc: Arc<EventDoc>,
}

/// Prefix tables over title keystrokes (for mid-typing input) and title initials (for
/// consonant-only input), sorted for binary search. Events upserted after the build
/// go to a small unsorted list that is scanned.
struct Suggester {
    keys: Vec<Entry>,
    initials: Vec<Entry>,
    recent: RwLock<(Vec<Entry>, Vec<Entry>)>,
}

fn entries(doc: &Arc<EventDoc>, keys: &mut Vec<Entry>, initials: &mut Vec<Entry>) {
    for (n, (start, _, word)) in korean::words(&doc.title)
        .into_iter()
        .take(SUGGEST_WORD_STARTS)
        .enumerate()
    {
        let rest = &doc.title[start..];
        let word_index = u8::try_from(n).unwrap_or(u8::MAX);
        let key: String = korean::keys(rest).chars().take(SUGGEST_KEY_CHARS).collect();
        keys.push(Entry {
            key: key.into(),
            word: word_index,
            doc: doc.clone(),
        });
        if word.chars().next().is_some_and(korean::is_syllable) {
            let key: String = rest
                .chars()
                .filter_map(korean::initial)
                .take(SUGGEST_KEY_CHARS)
                .collect();
            initials.push(Entry {
                key: key.into(),
                word: word_index,
                doc: doc.clone(),
            });
        }
    }
}

impl Suggester {
    fn build(docs: impl Iterator<Item = Arc<EventDoc>>) -> Self {
        let (mut keys, mut initials) = (Vec::new(), Vec::new());
        for doc in docs {
            entries(&doc, &mut keys, &mut initials);
        }
        keys.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        initials.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Self {
            keys,
            initials,
            recent: RwLock::new((Vec::new(), Vec::new())),
        }
    }

    fn add(&self, docs: &[Arc<EventDoc>]) {
        if let Ok(mut recent) = self.recent.write() {
            let (keys, initials) = &mut *recent;
            for doc in docs {
                entries(doc, keys, initials);
            }
        }
    }

    fn suggest(
        &self,
        query: &str,
        limit: usize,
        docs: &HashMap<String, Arc<EventDoc>>,
    ) -> Vec<Suggestion> {
        let compact: String = query.chars().filter(|c| !c.is_whitespace()).collect();
        let (table, key, initials) = if korean::is_chosung_query(&compact) {
            (&self.initials, compact, true)
        } else {
            (&self.keys, korean::keys(query), false)
        };
        if key.is_empty() {
            return Vec::new();
        }
        let key: String = key.chars().take(SUGGEST_KEY_CHARS).collect();
        let current = |e: &Entry| docs.get(&e.doc.id).is_some_and(|d| Arc::ptr_eq(d, &e.doc));
        let start = table.partition_point(|e| *e.key < *key);
        let mut found: Vec<&Entry> = table[start..]
            .iter()
            .take_while(|e| e.key.starts_with(&key))
            .filter(|e| current(e))
            .take(SUGGEST_SCAN)
            .collect();
        let recent = self.recent.read();
        if let Ok(recent) = &recent {
            let list = if initials { &recent.1 } else { &recent.0 };
            found.extend(
                list.iter()
                    .filter(|e| e.key.starts_with(&key) && current(e)),
            );
        }
        // Titles that start with the input first, then shorter (closer) titles.
        found.sort_by(|a, b| {
            (a.word, a.doc.title.chars().count(), &a.doc.title).cmp(&(
                b.word,
                b.doc.title.chars().count(),
                &b.doc.title,
            ))
        });
        let mut seen = HashSet::new();
        found
            .into_iter()
            .filter(|e| seen.insert(e.doc.title.to_lowercase()))
            .take(limit)
            .map(|e| Suggestion {
                text: e.doc.title.clone(),
                event_id: e.doc.id.clone(),
            })
            .collect()
    }
}

/// Records that the serving index changed, searchable from now on.
fn mark_updated() {
    // Unix time of the last catalog change applied to the serving index, or rebuild swapped in.
    metrics::gauge!("search_index_last_update_timestamp_seconds")
        .set(Utc::now().timestamp_millis() as f64 / 1000.0);
}

/// The index search-svc serves: the current version, swapped whole by a rebuild.
pub struct SearchIndex {
    current: ArcSwap<IndexVersion>,
    /// `Some(journal)` while a rebuild runs: the upserts the new version must replay.
    rebuild: Mutex<Option<Vec<EventDoc>>>,
    synonyms: Synonyms,
    versions: AtomicU64,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("version", &self.current.load().name)
            .finish_non_exhaustive()
    }
}

/// A rebuild in progress; dropping it without [`SearchIndex::finish_rebuild`] abandons it.
#[derive(Debug)]
pub struct RebuildTicket {
    index: Arc<SearchIndex>,
    finished: bool,
}

impl Drop for RebuildTicket {
    fn drop(&mut self) {
        if !self.finished
            && let Ok(mut rebuild) = self.index.rebuild.lock()
        {
            *rebuild = None;
        }
    }
}

impl SearchIndex {
    /// An empty index (version `v0`) with `synonyms`.
    pub fn new(synonyms: Synonyms) -> Result<Self, SearchError> {
        let empty = IndexVersion::build("v0".into(), Vec::new())?;
        Ok(Self {
            current: ArcSwap::from_pointee(empty),
            rebuild: Mutex::new(None),
            synonyms,
            versions: AtomicU64::new(0),
        })
    }

    /// Whether a rebuild has swapped in a version yet (before that the empty `v0` is
    /// served, and search-svc reports NOT_SERVING).
    pub fn is_built(&self) -> bool {
        self.current.load().name != "v0"
    }

    /// The version serving queries now.
    pub fn current(&self) -> Arc<IndexVersion> {
        self.current.load_full()
    }

    pub fn search(&self, request: &SearchRequest) -> Result<SearchPage, SearchError> {
        self.current.load().search(request, &self.synonyms)
    }

    pub fn suggest(&self, query: &str, limit: usize) -> Vec<Suggestion> {
        self.current.load().suggest(query, limit)
    }

    pub fn get(&self, id: &str) -> Option<Arc<EventDoc>> {
        self.current.load().get(id)
    }

    /// Adds or replaces events in the serving version (and journals them for a running
    /// rebuild). Blocking: call it off the async threads.
    pub fn upsert(&self, events: &[EventDoc]) -> Result<(), SearchError> {
        let mut rebuild = self.rebuild.lock().map_err(lock_poisoned)?;
        self.current.load().upsert(events)?;
        if let Some(journal) = rebuild.as_mut() {
            journal.extend_from_slice(events);
        }
        metrics::gauge!("search_index_events").set(self.current.load().len() as f64);
        if !events.is_empty() {
            mark_updated();
        }
        Ok(())
    }

    /// Starts a rebuild; refused while another one runs.
    pub fn begin_rebuild(self: &Arc<Self>) -> Result<RebuildTicket, SearchError> {
        let mut rebuild = self.rebuild.lock().map_err(lock_poisoned)?;
        if rebuild.is_some() {
            return Err(SearchError::RebuildRunning);
        }
        *rebuild = Some(Vec::new());
        Ok(RebuildTicket {
            index: self.clone(),
            finished: false,
        })
    }

    /// Builds a new version from `events` (blocking), replays the upserts that arrived
    /// meanwhile, and swaps it in. Returns the new version's name and size.
    pub fn finish_rebuild(
        &self,
        mut ticket: RebuildTicket,
        events: Vec<EventDoc>,
    ) -> Result<(String, usize), SearchError> {
        let n = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("v{n}-{}", Utc::now().format("%Y%m%dT%H%M%S"));
        let version = IndexVersion::build(name.clone(), events)?;
        let mut rebuild = self.rebuild.lock().map_err(lock_poisoned)?;
        let journal = rebuild.take().unwrap_or_default();
        version.upsert(&journal)?;
        let size = version.len();
        self.current.store(Arc::new(version));
        ticket.finished = true;
        drop(rebuild);
        metrics::gauge!("search_index_events").set(size as f64);
        metrics::counter!("search_index_rebuilds_total").increment(1);
        mark_updated();
        tracing::info!(version = %name, events = size, replayed = journal.len(), "index swapped");
        Ok((name, size))
    }

    /// Rebuilds from `events` at once (blocking): [`Self::begin_rebuild`] then
    /// [`Self::finish_rebuild`].
    pub fn rebuild_from(
        self: &Arc<Self>,
        events: Vec<EventDoc>,
    ) -> Result<(String, usize), SearchError> {
        let ticket = self.begin_rebuild()?;
        self.finish_rebuild(ticket, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Query;

    fn event(id: &str, title: &str, venue: &str) -> EventDoc {
        let at = chrono::DateTime::UNIX_EPOCH;
        EventDoc {
            id: id.into(),
            title: title.into(),
            category: "CONCERT".into(),
            description: String::new(),
            venue: venue.into(),
            starts_at: at,
            sale_starts_at: at,
            sale_ends_at: at,
        }
    }

    fn catalog(events: Vec<EventDoc>) -> IndexVersion {
        IndexVersion::build("test".into(), events).expect("index built")
    }

    fn search(index: &IndexVersion, q: &str) -> SearchPage {
        let request = SearchRequest {
            query: Query::parse("q", q).expect("query"),
            category: None,
            from: None,
            to: None,
            bookable_at: None,
            page_size: 20,
            offset: 0,
        };
        index
            .search(&request, &Synonyms::default())
            .expect("search")
    }

    fn ids(index: &IndexVersion, q: &str) -> Vec<String> {
        search(index, q)
            .hits
            .into_iter()
            .map(|h| h.event.id.clone())
            .collect()
    }

    fn sample() -> IndexVersion {
        catalog(vec![
            event("iu", "아이유 콘서트 HEREH", "KSPO DOME"),
            event("baseball", "LG 트윈스 vs 두산 베어스", "잠실야구장"),
            event("musical", "뮤지컬 레미제라블", "블루스퀘어"),
            event("jazz", "서울 재즈 페스티벌 2026", "올림픽공원"),
            event("fireworks", "부산 불꽃축제", "광안리 해수욕장"),
        ])
    }

    #[test]
    fn a_word_with_a_particle_finds_the_event_without_it() {
        let index = sample();
        assert_eq!(ids(&index, "아이유의"), ["iu"]);
        assert_eq!(ids(&index, "잠실에서"), ["baseball"]);
        assert_eq!(ids(&index, "뮤지컬을"), ["musical"]);
        assert_eq!(ids(&index, "불꽃축제에"), ["fireworks"]);
        assert_eq!(ids(&index, "아이유의 콘서트를"), ["iu"]);
    }

    #[test]
    fn a_title_typed_without_its_spaces_is_found() {
        let index = sample();
        assert_eq!(ids(&index, "서울재즈페스티벌"), ["jazz"]);
        assert_eq!(ids(&index, "서울 재즈 페스티벌"), ["jazz"]);
        assert_eq!(ids(&index, "두산베어스"), ["baseball"]);
        assert_eq!(ids(&index, "재즈페스티벌에서"), ["jazz"]);
        let page = search(&index, "서울재즈페스티벌");
        let title = page.hits.first().map(|h| h.title_highlight.as_str());
        assert_eq!(
            title,
            Some("<em>서울</em> <em>재즈</em> <em>페스티벌</em> 2026"),
            "the words of the title are highlighted"
        );
        // A title written without spaces is found with them too.
        let compact = catalog(vec![event("jazz", "서울재즈페스티벌 2026", "")]);
        assert_eq!(ids(&compact, "서울 재즈 페스티벌"), ["jazz"]);
        assert_eq!(ids(&compact, "서울재즈페스티벌"), ["jazz"]);
    }

    #[test]
    fn the_stripped_word_never_outranks_or_drops_the_exact_one() {
        let index = catalog(vec![
            event("concert", "아이유 콘서트", ""),
            event("palette", "아이유의 팔레트 토크", ""),
            event("venue", "잠실 단독 공연", "잠실실내체육관"),
            event("meet", "잠실에서 만나요", ""),
            event("kids", "어린이 뮤지컬 피터팬", ""),
        ]);
        assert_eq!(ids(&index, "아이유의"), ["palette", "concert"]);
        assert_eq!(ids(&index, "잠실에서"), ["meet", "venue"]);
        // A word that only looks like it ends in a particle still matches itself first.
        assert_eq!(
            ids(&index, "어린이").first().map(String::as_str),
            Some("kids")
        );
        // And the word without the particle still finds both.
        let mut iu = ids(&index, "아이유");
        iu.sort();
        assert_eq!(iu, ["concert", "palette"]);
    }
}
