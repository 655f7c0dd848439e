// @ts-check
// Marquee's reference seat-map page. Plain JS, no build step, no third-party code.
//
// Events: without ?event=<id> the page lists events from GET /v1/events, a page at a time
// ("More events" follows nextPageToken until there is none). The search box above the
// list suggests as you type (GET /v1/search/suggestions, debounced; mid-syllable Hangul
// and chosung such as "ㅇㅇㅇ" complete too; up/down/enter or a click picks one) and,
// on Enter or "Search", shows GET /v1/search/events best first, the matches the server
// marks <em>…</em> emphasised (built as DOM nodes: server text is never parsed as
// HTML). Clearing the box shows the list again.
//
// Flow: pick an event (?event=<id>, else the list or a search) → the seat map is
// drawn as SVG from each seat's x/y and kept live by EventSource on
// /v1/events/{id}/seats:watch (a `snapshot` event replaces every status, a `changes`
// event applies its changes in version order) → log in → click available seats to
// select them → "Hold selected seats" (POST holds) → choose wallet or a test card → "Check out"
// (POST /v1/bookings with an Idempotency-Key) → the booking's status is watched over
// /v1/bookings/{id}:watch until it is CONFIRMED or CANCELLED.
//
// Waiting room: when the event has a `waitingRoom`, holding waits for an admission. The
// queue panel takes the hold's place (logged out, it says to log in): "Join the queue"
// (POST /v1/events/{id}/queue; the ticket id is kept in sessionStorage per account and
// event, so a reload resumes) → the ticket's state, place in line and ETA ("opens at …"
// before the opening) are followed over /v1/queue/{ticketId}:watch, or, when that
// stream is refused or drops, by reading GET /v1/queue/{ticketId} every second (and
// trying the stream again now and then) → once ADMITTED the panel hides by itself, the
// admission's time left shows, and its token goes with every hold and checkout as
// X-Admission-Token. The checkout ends the admission; its expiry, or a hold or checkout
// refused (403) over the admission, shows why and brings the queue panel back.
//
// Auctions (issue 14): when the event has seats up for auction (GET
// /v1/events/{id}/auctions), a panel shows the newest auction: its state and time left
// to the close, the seats, the cut-off, the bidders and the ranking (the caller's own
// row, found by the pseudonym of `myBid`, marked "you"), the caller's bid and
// submissions left (GET /v1/auctions/{id} with the session), and a Bid form (POST
// …/bids; a refusal shows the server's reason). It is followed over
// /v1/auctions/{id}:watch (public), or, when that stream is refused or drops, by reading
// the auction every 2 s (and trying the stream again now and then). After the close the
// caller's award shows with its pay-by time, and Pay (wallet, POST …/award:pay with an
// Idempotency-Key; the booking then shows as a checkout's) and Decline while it awaits
// payment.
'use strict';

// Types: the API's bodies are typed by api.d.ts, generated from the gateway's OpenAPI
// document by openapi-typescript; `make test` type-checks this file against it
// (scripts/check-frontend-types.sh, gateway/static/tsconfig.json).
/** @typedef {import('./api').components['schemas']} Schemas */
/** @typedef {Schemas['marquee.type.v1.Money']} Money */
/** @typedef {Schemas['marquee.booking.v1.Session']} Session */
/** @typedef {Schemas['marquee.booking.v1.Me']} Me */
/** @typedef {Schemas['marquee.booking.v1.Event']} EventInfo */
/** @typedef {Schemas['marquee.booking.v1.ListEventsResponse']} ListEventsResponse */
/** @typedef {Schemas['marquee.booking.v1.Seat']} Seat */
/** @typedef {Schemas['marquee.booking.v1.ListSeatsResponse']} ListSeatsResponse */
/** @typedef {Schemas['marquee.booking.v1.Hold']} Hold */
/** @typedef {Schemas['marquee.booking.v1.Booking']} Booking */
/** @typedef {Schemas['marquee.booking.v1.QueueTicket']} QueueTicket */
/** @typedef {Schemas['marquee.search.v1.SearchEventsResponse']} SearchEventsResponse */
/** @typedef {Schemas['marquee.search.v1.SuggestResponse']} SuggestResponse */
/** @typedef {Schemas['marquee.search.v1.Suggestion']} Suggestion */
/** @typedef {Schemas['marquee.realtime.v1.SeatUpdate']} SeatUpdate */
/** @typedef {Schemas['marquee.realtime.v1.BookingUpdate']} BookingUpdate */
/** @typedef {Schemas['marquee.realtime.v1.QueueTicketUpdate']} QueueTicketUpdate */
/** @typedef {Schemas['marquee.booking.v1.Auction']} Auction */
/** @typedef {Schemas['marquee.booking.v1.AuctionSeat']} AuctionSeat */
/** @typedef {Schemas['marquee.booking.v1.RankedBid']} RankedBid */
/** @typedef {Schemas['marquee.booking.v1.Award']} Award */
/** @typedef {Schemas['marquee.booking.v1.ListAuctionsResponse']} ListAuctionsResponse */
/** @typedef {Schemas['marquee.booking.v1.GetAuctionResponse']} GetAuctionResponse */
/** @typedef {Schemas['marquee.booking.v1.PlaceBidResponse']} PlaceBidResponse */
/** @typedef {Schemas['marquee.booking.v1.PayAwardResponse']} PayAwardResponse */
/** @typedef {Schemas['marquee.booking.v1.DeclineAwardResponse']} DeclineAwardResponse */
/** @typedef {Schemas['marquee.realtime.v1.AuctionUpdate']} AuctionUpdate */
/**
 * The caller's own side of the shown auction, from the reads made with the session
 * (the live stream shows the auction as anyone sees it, without the `my` fields).
 * @typedef {{ bid: RankedBid | null, submissionsLeft: number, award: Award | null }} AuctionMine
 */
/** @typedef {Seat['status']} SeatStatus */
/**
 * A ticket as the page keeps it: the server's, or only its id (state '') while it is read.
 * @typedef {Omit<QueueTicket, 'state'> & { state?: QueueTicket['state'] | '' }} PageTicket
 */
/** @typedef {{ seat: Seat, el: SVGElement, status: SeatStatus }} SeatEntry */
/** @typedef {{ holdId: string, seatIds: Set<string>, expiresAt: number, total: Money, idempotencyKey: string }} PageHold */

const TOKEN_KEY = 'marquee.token';
const SVG_NS = 'http://www.w3.org/2000/svg';
const SEAT_GAP = 24; // the smallest distance between two seats of a row, in SVG units
const PAD = 20;
const STAGE = 40;
const TIER_COLOURS = ['#e4572e', '#f3a712', '#29a19c', '#4c6ef5', '#a23b72', '#3bb273', '#7768ae', '#d1495b'];
const RECONNECT_MS = 2000;
const QUEUE_KEY = 'marquee.queue'; // + `.<accountId>.<eventId>`: the ticket id joined with
const POLL_MS = 1000; // reading the queue ticket, while its stream is refused or dropped
const STREAM_RETRY_MS = 15_000; // while polling, how often the ticket's stream is tried again
/** Ticket states in which the buyer is still in line ('' while the ticket is being read). */
const IN_LINE = new Set(['', 'BEFORE_OPENING', 'WAITING']);
const AUCTION_POLL_MS = 2000; // reading the auction, while its stream is refused or dropped
const AUCTION_STATES = {
  AUCTION_STATE_UNSPECIFIED: '…',
  AUCTION_STATE_OPEN: 'Open',
  AUCTION_STATE_CLOSED: 'Closed',
};
const AWARD_STATES = {
  AWARD_STATE_UNSPECIFIED: '…',
  AWARD_STATE_AWAITING_PAYMENT: 'awaiting your payment',
  AWARD_STATE_PAYING: 'payment in progress',
  AWARD_STATE_PAID: 'paid',
  AWARD_STATE_LAPSED: 'lapsed (not paid in time): the seat passed on',
  AWARD_STATE_DECLINED: 'declined: the seat passed on',
  AWARD_STATE_CANCELLED: 'cancelled: the seat passed on',
};
const QUEUE_STATES = {
  '': 'Finding your place…',
  BEFORE_OPENING: 'Waiting for the opening',
  WAITING: 'Waiting in line',
  ADMITTED: 'Admitted',
  EXPIRED: 'Admission expired',
  USED: 'Admission used',
};

const PAGE_SIZE = 20; // events per page of the list, and search results per page
const SUGGEST_MS = 150; // typing pause before suggestions are asked for
const SUGGESTIONS = 8;
const ENTITIES = { '&lt;': '<', '&gt;': '>', '&amp;': '&', '&quot;': '"', '&#39;': "'", '&#x27;': "'", '&apos;': "'" };

/** An element of index.html (left untyped: the page knows which kind each one is). */
const $ = (/** @type {string} */ selector) => /** @type {any} */ (document.querySelector(selector));

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: /** @type {Me | null} */ (null),
  eventId: /** @type {string | null} */ (null),
  event: /** @type {EventInfo | null} */ (null),
  maxSeats: 4,
  /** seatId → { seat, el, status } */
  seats: /** @type {Map<string, SeatEntry>} */ (new Map()),
  version: null,
  seatStream: null,
  selected: new Set(),
  /** seats of a hold request in flight: their HELD change is ours, not someone else's */
  holding: new Set(),
  /** the held seats (a PageHold: expiresAt in ms since the epoch), while held */
  hold: /** @type {PageHold | null} */ (null),
  booking: /** @type {Booking | null} */ (null),
  bookingStream: null,
  /** the shown event's waiting-room ticket (a QueueTicket), once joined */
  ticket: /** @type {PageTicket | null} */ (null),
  /** the sessionStorage key `ticket` is kept under (account and event) */
  ticketKey: null,
  /** Date.now() of the ticket's last reading: its ETA counts down from there */
  ticketAt: 0,
  queueStream: null,
  /** timer of the next poll of the ticket, while its stream is refused or dropped */
  queuePoll: null,
  queueStreamFailedAt: 0,
  /** { token, expiresAt } while the waiting room admits this buyer to the shown event */
  admission: /** @type {{ token: string, expiresAt: number } | null} */ (null),
  /** the shown event's newest auction, as of its highest version seen */
  auction: /** @type {Auction | null} */ (null),
  /** the caller's bid, submissions left and award in it (null signed out or until read) */
  auctionMine: /** @type {AuctionMine | null} */ (null),
  auctionStream: null,
  /** timer of the next poll of the auction, while its stream is refused or dropped */
  auctionPoll: null,
  auctionStreamFailedAt: 0,
  /** the Idempotency-Key of paying the caller's award (one per award: a retry reuses it) */
  awardKey: /** @type {{ award: string, key: string } | null} */ (null),
  auctionBusy: false,
  busy: false,
  /** nextPageToken of the event list ('' once it is all shown) */
  listToken: '',
  /** the query shown in the search results, and their nextPageToken */
  query: '',
  queryToken: '',
  /** bumped by every search and every clear: answers to older ones are dropped */
  searchSeq: 0,
  /** the suggestions shown, the highlighted one (-1: none) and the debounce timer */
  suggestions: /** @type {Suggestion[]} */ ([]),
  activeSuggestion: -1,
  suggestTimer: null,
  /** bumped by every keystroke: answers to older suggestion requests are dropped */
  suggestSeq: 0,
};

// ---------------------------------------------------------------- helpers

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {Record<string, string>} [headers]
 * @returns {Promise<any>} the JSON body (null when empty): typed where it is used
 */
async function api(method, path, body, headers = {}) {
  const init = /** @type {RequestInit & { headers: Record<string, string> }} */ ({ method, headers: { ...headers } });
  if (state.token) init.headers.authorization = `Bearer ${state.token}`;
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `network error: ${error.message}`, null);
  }
  const text = await response.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const message = (json && json.message) || text || response.statusText;
    throw new ApiError(response.status, `${response.status}: ${message}`, json);
  }
  return json;
}

function showMessage(text, kind = 'error') {
  const el = $('#message');
  el.textContent = text;
  el.className = kind;
  el.dataset.kind = kind;
  el.hidden = false;
}

function clearMessage() {
  $('#message').hidden = true;
}

function randomKey() {
  // crypto.randomUUID needs a secure context; getRandomValues works everywhere.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {Money | { amountMinor: number, currency: string }} m */
function money(m) {
  if (!m) return '';
  const currency = m.currency || 'KRW';
  try {
    const format = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    const digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(Number(m.amountMinor || 0) / 10 ** digits);
  } catch {
    return `${m.amountMinor} ${currency}`;
  }
}

/** Seconds as m:ss. */
function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** An ETA in words. */
function roughly(seconds) {
  if (seconds <= 0) return 'any moment now';
  if (seconds < 60) return `about ${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  return `about ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** @param {Seat} seat */
function seatLabel(seat) {
  return `${seat.section} ${seat.row}-${seat.number}`;
}

function svg(name, attrs = {}) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// ---------------------------------------------------------------- account

/**
 * The `reason` of an API error's ErrorInfo detail, or ''.
 * @param {ApiError} error
 */
function errorReason(error) {
  const details = (error.body && Array.isArray(error.body.details)) ? error.body.details : [];
  const info = details.find((d) => d && typeof d.reason === 'string');
  return info ? info.reason : '';
}

/**
 * Logs in with the password and, for an account with two-factor sign-in, the code
 * from its authenticator app (`code`, 6 digits; '' when the page has not asked yet).
 * When the server answers TWO_FACTOR_REQUIRED the code field is shown and the form is
 * sent again with it.
 */
async function login(email, password, code = '') {
  state.token = null;
  /** @type {Schemas['marquee.booking.v1.LogInRequest']} */
  const request = { email, password };
  if (code) request.code = code;
  /** @type {Session} */
  const session = await api('POST', '/v1/sessions', request);
  state.token = session.accessToken;
  sessionStorage.setItem(TOKEN_KEY, state.token);
  showCodeField(false);
  await loadMe();
}

/** Shows (and requires) or hides the log-in form's two-factor code field. */
function showCodeField(shown) {
  const field = /** @type {HTMLInputElement} */ ($('[data-testid="code"]'));
  field.hidden = !shown;
  field.required = shown;
  if (!shown) field.value = '';
  else field.focus();
}

function logout() {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  closeBookingStream();
  stopQueue();
  state.auctionMine = null;
  renderAccount();
  renderCart();
  renderAuction();
}

async function loadMe() {
  if (!state.token) return renderAccount();
  try {
    state.me = await api('GET', '/v1/me');
  } catch (error) {
    if (error.status === 401) {
      logout();
      return;
    }
    throw error;
  }
  renderAccount();
  renderCart();
  resumeQueue();
  // The caller's own bid and award in the shown auction.
  if (state.auction) refreshAuction().catch((error) => showMessage(`Reading the auction failed: ${error.message}`));
}

function renderAccount() {
  const me = state.me;
  $('#login').hidden = Boolean(me);
  $('#who').hidden = !me;
  if (!me) return;
  const account = me.account || {};
  $('[data-testid="who"]').textContent = account.displayName || account.email || account.accountId;
  $('[data-testid="balance"]').textContent = money(me.walletBalance);
}

// ---------------------------------------------------------------- events

async function showEventList() {
  $('#events').hidden = false;
  $('#event-list').replaceChildren();
  state.listToken = '';
  await loadEvents();
}

/** Appends the next page of the event list ("More events"). */
async function loadEvents() {
  const more = $('#more-events');
  more.disabled = true;
  const list = $('#event-list');
  const query = new URLSearchParams({ pageSize: String(PAGE_SIZE) });
  if (state.listToken) query.set('pageToken', state.listToken);
  try {
    /** @type {ListEventsResponse} */
    const body = await api('GET', `/v1/events?${query}`);
    const events = (body && body.events) || [];
    state.listToken = (body && body.nextPageToken) || '';
    if (events.length === 0 && list.childElementCount === 0) {
      list.append(Object.assign(document.createElement('li'), { textContent: 'No events yet.' }));
    }
    for (const event of events) {
      const li = document.createElement('li');
      li.append(eventLink(event.eventId, [event.title]), ` — ${event.venue || ''} ${when(event.startsAt)}`);
      list.append(li);
    }
  } finally {
    more.disabled = false;
    more.hidden = !state.listToken;
  }
}

/** A link to an event's seat map, its text made of `nodes` (strings and elements). */
function eventLink(eventId, nodes) {
  const a = document.createElement('a');
  a.href = `/?event=${encodeURIComponent(eventId)}`;
  a.append(...nodes);
  a.dataset.eventId = eventId;
  return a;
}

function when(startsAt) {
  return startsAt ? new Date(startsAt).toLocaleString() : '';
}

// ---------------------------------------------------------------- search

/**
 * Search text with its matches marked `<em>…</em>` (and the rest HTML-escaped by the
 * server) as text nodes and <em> elements: split on the markers, never parsed as HTML.
 */
function highlighted(marked) {
  const nodes = [];
  let emphasised = false;
  for (const part of String(marked || '').split(/(<\/?em>)/)) {
    if (part === '<em>') emphasised = true;
    else if (part === '</em>') emphasised = false;
    else if (part) {
      const text = part.replace(/&(?:lt|gt|amp|quot|apos|#39|#x27);/g, (entity) => ENTITIES[entity]);
      nodes.push(emphasised ? Object.assign(document.createElement('em'), { textContent: text }) : text);
    }
  }
  return nodes;
}

/** The search box's input: suggestions after a pause; an empty box shows the list again. */
function onSearchInput() {
  clearTimeout(state.suggestTimer);
  state.suggestSeq += 1;
  const q = $('#search').value.trim();
  if (!q) {
    hideSuggestions();
    if (state.query) clearSearch();
    return;
  }
  const seq = state.suggestSeq;
  state.suggestTimer = setTimeout(() => {
    suggest(q, seq).catch((error) => showMessage(`Suggestions failed: ${error.message}`));
  }, SUGGEST_MS);
}

async function suggest(q, seq) {
  const query = new URLSearchParams({ q, limit: String(SUGGESTIONS) });
  /** @type {SuggestResponse} */
  const body = await api('GET', `/v1/search/suggestions?${query}`);
  // A later keystroke (or a search) made this answer stale.
  if (seq !== state.suggestSeq) return;
  showSuggestions((body && body.suggestions) || []);
}

/** @param {Suggestion[]} suggestions */
function showSuggestions(suggestions) {
  state.suggestions = suggestions;
  state.activeSuggestion = -1;
  const box = $('#suggestions');
  box.replaceChildren();
  suggestions.forEach((suggestion, i) => {
    const li = document.createElement('li');
    li.id = `suggestion-${i}`;
    li.setAttribute('role', 'option');
    li.setAttribute('aria-selected', 'false');
    li.dataset.testid = 'suggestion';
    li.dataset.eventId = suggestion.eventId || '';
    li.textContent = suggestion.text;
    box.append(li);
  });
  box.hidden = suggestions.length === 0;
  const input = $('#search');
  input.setAttribute('aria-expanded', String(!box.hidden));
  input.removeAttribute('aria-activedescendant');
}

function hideSuggestions() {
  clearTimeout(state.suggestTimer);
  state.suggestSeq += 1;
  showSuggestions([]);
}

/** Highlights suggestion `i` (-1: none), as up/down move through them. */
function activateSuggestion(i) {
  const options = $('#suggestions').children;
  state.activeSuggestion = i;
  for (let k = 0; k < options.length; k++) options[k].setAttribute('aria-selected', String(k === i));
  const input = $('#search');
  if (i >= 0 && options[i]) {
    input.setAttribute('aria-activedescendant', options[i].id);
    options[i].scrollIntoView({ block: 'nearest' });
  } else {
    input.removeAttribute('aria-activedescendant');
  }
}

function chooseSuggestion(i) {
  const suggestion = state.suggestions[i];
  if (!suggestion) return;
  $('#search').value = suggestion.text;
  search(suggestion.text).catch((error) => showMessage(`Search failed: ${error.message}`));
}

function onSearchKey(e) {
  // Keys that end an IME composition (Hangul is typed through one) are the IME's.
  if (e.isComposing || e.keyCode === 229) return;
  const count = state.suggestions.length;
  const open = !$('#suggestions').hidden && count > 0;
  if (e.key === 'ArrowDown' && open) {
    e.preventDefault();
    activateSuggestion((state.activeSuggestion + 1) % count);
  } else if (e.key === 'ArrowUp' && open) {
    e.preventDefault();
    activateSuggestion(state.activeSuggestion <= 0 ? count - 1 : state.activeSuggestion - 1);
  } else if (e.key === 'Enter' && open && state.activeSuggestion >= 0) {
    e.preventDefault();
    chooseSuggestion(state.activeSuggestion);
  } else if (e.key === 'Escape' && open) {
    e.preventDefault();
    hideSuggestions();
  }
}

/** Shows the first page of results for `q` in place of the event list. */
async function search(q) {
  hideSuggestions();
  q = q.trim();
  if (!q) {
    clearSearch();
    return;
  }
  clearMessage();
  state.query = q;
  state.queryToken = '';
  state.searchSeq += 1;
  $('#search-results').replaceChildren();
  $('#results-summary').textContent = `Searching for “${q}”…`;
  $('#results').hidden = false;
  $('#listing').hidden = true;
  await loadResults();
}

/** Appends the next page of search results ("More results"). */
async function loadResults() {
  const seq = state.searchSeq;
  const more = $('#more-results');
  more.disabled = true;
  const query = new URLSearchParams({ q: state.query, pageSize: String(PAGE_SIZE) });
  if (state.queryToken) query.set('pageToken', state.queryToken);
  try {
    /** @type {SearchEventsResponse} */
    const body = await api('GET', `/v1/search/events?${query}`);
    if (seq !== state.searchSeq) return;
    const hits = (body && body.hits) || [];
    state.queryToken = (body && body.nextPageToken) || '';
    const list = $('#search-results');
    for (const hit of hits) {
      const li = document.createElement('li');
      li.dataset.testid = 'search-result';
      const title = hit.titleHighlight ? highlighted(hit.titleHighlight) : [hit.title];
      li.append(eventLink(hit.eventId, title), ` — ${hit.venue || ''} ${when(hit.startsAt)}`);
      if (hit.descriptionSnippet) {
        const snippet = document.createElement('p');
        snippet.className = 'snippet';
        snippet.append(...highlighted(hit.descriptionSnippet));
        li.append(snippet);
      }
      list.append(li);
    }
    const total = Number((body && body.total) || 0);
    $('#results-summary').textContent = list.childElementCount === 0
      ? `No events match “${state.query}”.`
      : `${total.toLocaleString()} ${total === 1 ? 'event matches' : 'events match'} “${state.query}”.`;
  } finally {
    if (seq === state.searchSeq) {
      more.disabled = false;
      more.hidden = !state.queryToken;
    }
  }
}

/** Back from the search results to the paged event list, as it was. */
function clearSearch() {
  state.query = '';
  state.queryToken = '';
  state.searchSeq += 1;
  $('#search-results').replaceChildren();
  $('#results').hidden = true;
  $('#listing').hidden = false;
}

async function showEvent(eventId) {
  state.eventId = eventId;
  $('#event').hidden = false;
  /** @type {[EventInfo, ListSeatsResponse]} */
  const [event, seats] = await Promise.all([
    api('GET', `/v1/events/${encodeURIComponent(eventId)}`),
    api('GET', `/v1/events/${encodeURIComponent(eventId)}/seats`),
  ]);
  state.event = event;
  if (event.maxSeatsPerBuyer > 0) state.maxSeats = event.maxSeatsPerBuyer;
  document.title = `${event.title} — Marquee`;
  $('#event-title').textContent = event.title;
  $('#event-meta').textContent = `${event.venue || ''} · ${when(event.startsAt)} · up to ${state.maxSeats} seats per buyer`;
  drawSeatMap((seats && seats.seats) || []);
  openSeatStream();
  renderCart();
  resumeQueue();
  // Seats of the event may be up for auction: the newest auction's panel, live.
  loadAuction().catch((error) => showMessage(`Reading the event's auctions failed: ${error.message}`));
}

// ---------------------------------------------------------------- seat map

/** @param {Seat[]} seats */
function drawSeatMap(seats) {
  const map = $('#seatmap');
  map.replaceChildren();
  state.seats.clear();
  if (seats.length === 0) {
    map.setAttribute('viewBox', '0 0 200 40');
    return;
  }

  // Price tiers: sections by price, dearest first, each with its colour.
  const sections = new Map();
  for (const seat of seats) {
    if (!sections.has(seat.sectionId)) {
      sections.set(seat.sectionId, { name: seat.section, price: seat.price, amount: Number(seat.price?.amountMinor || 0) });
    }
  }
  const tiers = [...sections.entries()].sort((a, b) => b[1].amount - a[1].amount);
  const colour = new Map(tiers.map(([id], i) => [id, TIER_COLOURS[i % TIER_COLOURS.length]]));
  renderLegend(tiers, colour);

  // Scale so the tightest row spacing is SEAT_GAP units, whatever the venue's units.
  const xs = seats.map((s) => Number(s.x) || 0);
  const ys = seats.map((s) => Number(s.y) || 0);
  const minX = Math.min(...xs);
  const maxX = Math.max(...xs);
  const minY = Math.min(...ys);
  const maxY = Math.max(...ys);
  const rows = new Map();
  seats.forEach((s, i) => {
    const key = ys[i];
    if (!rows.has(key)) rows.set(key, []);
    rows.get(key).push(xs[i]);
  });
  let gap = Infinity;
  for (const row of rows.values()) {
    row.sort((a, b) => a - b);
    for (let i = 1; i < row.length; i++) {
      const d = row[i] - row[i - 1];
      if (d > 0 && d < gap) gap = d;
    }
  }
  if (!Number.isFinite(gap)) gap = Math.max(maxX - minX, maxY - minY, 1) / 10;
  const scale = SEAT_GAP / gap;
  const radius = SEAT_GAP * 0.4;
  const width = (maxX - minX) * scale + 2 * PAD;
  const height = (maxY - minY) * scale + 2 * PAD + STAGE;
  map.setAttribute('viewBox', `0 0 ${width} ${height}`);

  const defs = svg('defs');
  const hatch = svg('pattern', { id: 'hatch', patternUnits: 'userSpaceOnUse', width: 5, height: 5, patternTransform: 'rotate(45)' });
  hatch.append(svg('rect', { width: 5, height: 5, fill: '#e6e6e6' }), svg('line', { x1: 0, y1: 0, x2: 0, y2: 5, stroke: '#9a9a9a', 'stroke-width': 2.5 }));
  defs.append(hatch);
  map.append(defs);

  const stageWidth = Math.max(width * 0.5, 60);
  map.append(svg('rect', { class: 'stage', x: (width - stageWidth) / 2, y: 4, width: stageWidth, height: STAGE - 16, rx: 6 }));
  const label = svg('text', { class: 'stage-label', x: width / 2, y: 4 + (STAGE - 16) / 2 });
  label.textContent = 'STAGE';
  map.append(label);

  const group = svg('g', { class: 'seats' });
  seats.forEach((seat, i) => {
    const el = svg('circle', {
      class: 'seat',
      cx: ((xs[i] - minX) * scale + PAD).toFixed(1),
      cy: ((ys[i] - minY) * scale + PAD + STAGE).toFixed(1),
      r: radius,
      fill: colour.get(seat.sectionId),
      'data-seat-id': seat.seatId,
      'data-section-id': seat.sectionId,
      'data-status': seat.status || 'AVAILABLE',
    });
    el.append(svg('title'));
    group.append(el);
    const entry = { seat, el, status: seat.status || 'AVAILABLE' };
    state.seats.set(seat.seatId, entry);
    paintSeat(entry);
  });
  map.append(group);
}

function renderLegend(tiers, colour) {
  const legend = $('#legend');
  legend.replaceChildren();
  const item = (cls, fill, text) => {
    const li = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = `swatch ${cls}`;
    // CSSOM writes are allowed by the page's CSP; inline style attributes are not.
    if (fill) swatch.style.background = fill;
    li.append(swatch, text);
    legend.append(li);
  };
  for (const [id, tier] of tiers) item('tier', colour.get(id), `${tier.name} ${money(tier.price)}`);
  item('held', null, 'held');
  item('sold', null, 'sold');
  item('mine', null, 'held by you');
}

/** @param {SeatEntry} entry */
function paintSeat(entry) {
  const { el, seat, status } = entry;
  const id = seat.seatId;
  el.dataset.status = status;
  const mine = Boolean(state.hold && state.hold.seatIds.has(id));
  el.classList.toggle('mine', mine);
  el.classList.toggle('selected', state.selected.has(id));
  if (mine) el.dataset.mine = 'true';
  else delete el.dataset.mine;
  el.firstChild.textContent = `${seatLabel(seat)} · ${money(seat.price)} · ${mine ? 'held by you' : status.toLowerCase()}`;
}

/** Applies one seat's new status from the stream (or from our own hold). */
/**
 * @param {string} seatId
 * @param {SeatStatus} status
 */
function setStatus(seatId, status) {
  const entry = state.seats.get(seatId);
  if (!entry) return;
  entry.status = status;
  if (status !== 'AVAILABLE' && state.selected.delete(seatId) && !state.holding.has(seatId)) {
    showMessage(`${seatLabel(entry.seat)} was just taken by someone else.`);
  }
  if (status === 'AVAILABLE' && state.hold && state.hold.seatIds.delete(seatId) && state.hold.seatIds.size === 0) {
    state.hold = null; // released or expired
  }
  paintSeat(entry);
}

function repaintAll() {
  for (const entry of state.seats.values()) paintSeat(entry);
  renderCart();
}

function setLive(on, text) {
  const live = $('#live');
  live.dataset.live = on ? 'on' : 'off';
  live.dataset.version = state.version === null ? '' : String(state.version);
  live.textContent = text;
}

function openSeatStream() {
  if (state.seatStream) state.seatStream.close();
  const stream = new EventSource(`/v1/events/${encodeURIComponent(state.eventId)}/seats:watch`);
  state.seatStream = stream;
  stream.addEventListener('snapshot', (e) => {
    /** @type {SeatUpdate | null} */
    const data = parseData(e);
    if (!data || !data.snapshot) return;
    for (const s of data.snapshot.seats || []) setStatus(s.seatId, s.status);
    state.version = Number(data.version);
    setLive(true, 'live');
    renderCart();
  });
  stream.addEventListener('changes', (e) => {
    /** @type {SeatUpdate | null} */
    const data = parseData(e);
    if (!data || !data.changes) return;
    for (const change of data.changes.items || []) {
      const version = Number(change.version);
      if (state.version !== null && version <= state.version) continue; // already applied
      for (const id of change.seatIds || []) setStatus(id, change.status);
      state.version = version;
    }
    setLive(true, 'live');
    renderCart();
  });
  stream.onerror = () => {
    // EventSource retries by itself (with Last-Event-ID) unless the server refused it.
    setLive(false, 'reconnecting…');
    if (stream.readyState === EventSource.CLOSED && state.seatStream === stream) {
      setTimeout(() => {
        if (state.seatStream === stream) openSeatStream();
      }, RECONNECT_MS);
    }
  };
}

/**
 * @param {MessageEvent} e
 * @returns {any} the event's JSON data (null when it is not JSON): typed where it is used
 */
function parseData(e) {
  try {
    return JSON.parse(e.data);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- cart

function onSeatClick(e) {
  const el = e.target.closest('.seat');
  if (!el) return;
  const id = el.dataset.seatId;
  const entry = state.seats.get(id);
  if (!entry || entry.status !== 'AVAILABLE') return;
  if (state.hold) {
    showMessage('Check out or release your held seats first.', 'info');
    return;
  }
  if (state.selected.has(id)) {
    state.selected.delete(id);
  } else if (state.selected.size >= state.maxSeats) {
    showMessage(`You can pick up to ${state.maxSeats} seats.`, 'info');
    return;
  } else {
    state.selected.add(id);
  }
  clearMessage();
  paintSeat(entry);
  renderCart();
}

function renderCart() {
  const selected = [...state.selected].map((id) => state.seats.get(id)).filter(Boolean);
  const sum = selected.reduce((n, e) => n + Number(e.seat.price?.amountMinor || 0), 0);
  const currency = selected[0]?.seat.price?.currency || 'KRW';
  let hint = 'Click available seats to select them.';
  if (!state.me) hint = 'Log in, then click available seats to select them.';
  else if (!mayHold()) hint = 'You can hold seats once the waiting room admits you; pick them meanwhile.';
  $('[data-testid="selection"]').textContent = selected.length
    ? `Selected: ${selected.map((e) => seatLabel(e.seat)).join(', ')} (${money({ amountMinor: sum, currency })})`
    : hint;
  $('#hold').disabled = state.busy || !state.me || !mayHold() || selected.length === 0 || Boolean(state.hold);
  $('#hold-box').hidden = !state.hold;
  $('#checkout').disabled = state.busy || !state.hold || Boolean(state.booking && !isTerminal(state.booking.status));
  $('#release').disabled = state.busy || !state.hold;
  renderHoldInfo();
  renderQueue();
}

function renderHoldInfo() {
  if (!state.hold) return;
  const left = (state.hold.expiresAt - Date.now()) / 1000;
  const labels = [...state.hold.seatIds].map((id) => seatLabel(state.seats.get(id).seat));
  $('[data-testid="hold-info"]').textContent =
    `Held: ${labels.join(', ')} · ${money(state.hold.total)} · expires in ${clock(left)}`;
}

function tickHold() {
  if (!state.hold) return;
  if (state.hold.expiresAt <= Date.now() && !state.booking) {
    state.hold = null;
    showMessage('Your hold expired; the seats were released.', 'info');
    repaintAll();
    return;
  }
  renderHoldInfo();
}

async function busy(work) {
  if (state.busy) return;
  state.busy = true;
  renderCart();
  try {
    await work();
  } catch (error) {
    showMessage(error.message);
  } finally {
    state.busy = false;
    renderCart();
  }
}

function holdSelected() {
  return busy(async () => {
    const seatIds = [...state.selected];
    if (seatIds.length === 0 || !mayHold()) return;
    clearMessage();
    state.holding = new Set(seatIds);
    try {
      const path = `/v1/events/${encodeURIComponent(state.eventId)}/holds`;
      /** @type {Hold} */
      const hold = await api('POST', path, { seatIds }, admissionHeaders());
      state.selected.clear();
      state.booking = null;
      $('#booking').hidden = true;
      state.hold = {
        holdId: hold.holdId,
        seatIds: new Set(seatIds),
        expiresAt: new Date(hold.expiresAt).getTime(),
        total: hold.total,
        idempotencyKey: randomKey(),
      };
      for (const id of seatIds) setStatus(id, 'HELD');
    } catch (error) {
      if (error.status === 409) {
        showMessage(`Not held: ${error.message}. Pick other seats.`);
        return;
      }
      if (isAdmissionRefusal(error)) {
        await admissionRefused(error);
        return;
      }
      throw error;
    } finally {
      state.holding.clear();
      repaintAll();
    }
  });
}

function releaseHold() {
  return busy(async () => {
    if (!state.hold) return;
    const { holdId, seatIds } = state.hold;
    await api('DELETE', `/v1/holds/${encodeURIComponent(holdId)}`);
    state.hold = null;
    for (const id of seatIds) setStatus(id, 'AVAILABLE');
    repaintAll();
  });
}

function checkout() {
  return busy(async () => {
    if (!state.hold) return;
    clearMessage();
    // The wallet, or a card token: the sandbox provider's test cards pick its behaviour
    // (a real provider's checkout widget would make the token; Marquee never sees a
    // card number).
    const choice = $('#payment').value;
    const body = choice === 'WALLET'
      ? { holdId: state.hold.holdId, paymentMethod: 'WALLET' }
      : { holdId: state.hold.holdId, paymentMethod: 'CARD', cardToken: choice };
    // One key per hold: a retry after a lost answer returns the same booking.
    /** @type {Booking} */
    let booking;
    try {
      booking = await api('POST', '/v1/bookings', body, {
        'Idempotency-Key': state.hold.idempotencyKey,
        ...admissionHeaders(),
      });
    } catch (error) {
      if (isAdmissionRefusal(error)) {
        await admissionRefused(error);
        return;
      }
      throw error;
    }
    // A checkout ends the admission: the waiting room lets the next buyer in.
    if (state.admission) endAdmission('USED');
    showBooking(booking);
    watchBooking(booking.bookingId);
  });
}

/** @param {Booking['status']} status */
function isTerminal(status) {
  return status === 'CONFIRMED' || status === 'CANCELLED';
}

/** @param {Booking} booking */
function showBooking(booking) {
  state.booking = booking;
  $('#booking').hidden = false;
  $('[data-testid="booking-id"]').textContent = booking.bookingId;
  const status = $('[data-testid="booking-status"]');
  status.textContent = booking.status;
  status.dataset.status = booking.status;
  if (booking.status === 'CONFIRMED') {
    closeBookingStream();
    state.hold = null;
    const paidBy = booking.paymentMethod === 'CARD' ? 'by card' : 'from your wallet';
    showMessage(`Booking confirmed: ${money(booking.total)} paid ${paidBy}.`, 'info');
    loadMe().catch((error) => showMessage(error.message));
  } else if (booking.status === 'CANCELLED') {
    closeBookingStream();
    state.hold = null;
    showMessage(`Booking cancelled${booking.cancelReason ? `: ${booking.cancelReason}` : ''}.`);
  }
  // Paying an auction award: the award's state follows the booking's.
  const award = state.auctionMine && state.auctionMine.award;
  if (isTerminal(booking.status) && award && award.bookingId === booking.bookingId) {
    refreshAuction().catch((error) => showMessage(`Reading the auction failed: ${error.message}`));
  }
  repaintAll();
}

function closeBookingStream() {
  if (state.bookingStream) state.bookingStream.close();
  state.bookingStream = null;
}

function watchBooking(bookingId) {
  closeBookingStream();
  if (!state.token) return;
  const url = `/v1/bookings/${encodeURIComponent(bookingId)}:watch?access_token=${encodeURIComponent(state.token)}`;
  const stream = new EventSource(url);
  state.bookingStream = stream;
  stream.onmessage = (e) => {
    /** @type {BookingUpdate | null} */
    const data = parseData(e);
    if (data && data.booking && data.booking.bookingId === bookingId) showBooking(data.booking);
  };
  stream.onerror = () => {
    if (stream.readyState !== EventSource.CLOSED || state.bookingStream !== stream) return;
    // Refused (e.g. the token expired): read the booking once and try again later.
    state.bookingStream = null;
    api('GET', `/v1/bookings/${encodeURIComponent(bookingId)}`)
      .then((/** @type {Booking} */ booking) => {
        showBooking(booking);
        if (!isTerminal(booking.status)) setTimeout(() => watchBooking(bookingId), RECONNECT_MS);
      })
      .catch((error) => showMessage(`Lost the booking's progress: ${error.message}`));
  };
}

// ---------------------------------------------------------------- waiting room

function hasWaitingRoom() {
  return Boolean(state.event && state.event.waitingRoom);
}

function isAdmitted() {
  return Boolean(state.admission && state.admission.expiresAt > Date.now());
}

/** Whether this page may hold seats now: no waiting room, or admitted through it. */
function mayHold() {
  return !hasWaitingRoom() || isAdmitted();
}

/** The header holds and checkouts carry while admitted. */
function admissionHeaders() {
  return state.admission ? { 'X-Admission-Token': state.admission.token } : {};
}

function isAdmissionRefusal(error) {
  return error.status === 403 && /admission|waiting room/i.test(error.message);
}

/** @param {PageTicket | null} ticket */
function inLine(ticket) {
  return Boolean(ticket) && IN_LINE.has(ticket.state || '');
}

/** The sessionStorage key of the logged-in account's ticket for the shown event. */
function ticketStorageKey() {
  const accountId = state.me && state.me.account && state.me.account.accountId;
  return accountId && state.eventId ? `${QUEUE_KEY}.${accountId}.${state.eventId}` : null;
}

/**
 * Once both the account and the event are known: picks up the ticket this tab joined
 * with (after a reload, or a log-out and back in), and follows it.
 */
function resumeQueue() {
  const key = ticketStorageKey();
  if (!hasWaitingRoom() || !key || state.ticketKey === key) {
    renderQueue();
    return;
  }
  stopQueue();
  state.ticketKey = key;
  const ticketId = sessionStorage.getItem(key);
  if (ticketId) {
    state.ticket = { ticketId, state: '' };
    watchTicket(ticketId);
  }
  renderCart();
}

function stopWatchingTicket() {
  if (state.queueStream) state.queueStream.close();
  state.queueStream = null;
  clearTimeout(state.queuePoll);
  state.queuePoll = null;
}

/** Leaves the queue to itself (log-out); the stored ticket id stays for the next log-in. */
function stopQueue() {
  stopWatchingTicket();
  state.ticket = null;
  state.ticketKey = null;
  state.admission = null;
}

/** The stored ticket is not this account's (or is gone): back to "Join the queue". */
function forgetTicket() {
  stopWatchingTicket();
  if (state.ticketKey) sessionStorage.removeItem(state.ticketKey);
  state.ticket = null;
  state.admission = null;
  repaintAll();
}

function joinQueue() {
  return busy(async () => {
    const key = ticketStorageKey();
    if (!key) return;
    clearMessage();
    /** @type {QueueTicket} */
    const ticket = await api('POST', `/v1/events/${encodeURIComponent(state.eventId)}/queue`, {});
    sessionStorage.setItem(key, ticket.ticketId);
    stopWatchingTicket();
    state.ticketKey = key;
    state.ticket = { ticketId: ticket.ticketId, state: '' };
    applyTicket(ticket);
    if (inLine(state.ticket)) {
      watchTicket(ticket.ticketId);
    } else if (!isAdmitted()) {
      showMessage(`Your admission to this sale has ended (${QUEUE_STATES[ticket.state] || ticket.state}); the queue gave you no new place.`, 'info');
    }
  });
}

/** Takes a reading of the ticket: from joining, its stream or a poll. */
/** @param {QueueTicket | null} ticket */
function applyTicket(ticket) {
  if (!ticket || !state.ticket || ticket.ticketId !== state.ticket.ticketId) return;
  const wasAdmitted = isAdmitted();
  state.ticket = ticket;
  state.ticketAt = Date.now();
  if (ticket.state === 'ADMITTED' && ticket.admissionToken) {
    stopWatchingTicket();
    state.admission = { token: ticket.admissionToken, expiresAt: new Date(ticket.admissionExpiresAt).getTime() };
    if (!wasAdmitted && isAdmitted()) {
      showMessage('You are in: hold your seats and check out before your admission runs out.', 'info');
    }
  } else if (!inLine(ticket)) {
    // EXPIRED or USED: the admission is over.
    stopWatchingTicket();
    state.admission = null;
  }
  repaintAll();
}

/** Follows the ticket over its SSE stream; the stream ends once the ticket is admitted. */
function watchTicket(ticketId) {
  stopWatchingTicket();
  if (!state.token) return;
  const url = `/v1/queue/${encodeURIComponent(ticketId)}:watch?access_token=${encodeURIComponent(state.token)}`;
  const stream = new EventSource(url);
  state.queueStream = stream;
  stream.onopen = () => {
    $('#queue').dataset.via = 'stream';
  };
  stream.onmessage = (e) => {
    /** @type {QueueTicketUpdate | null} */
    const data = parseData(e);
    if (data && data.ticket) applyTicket(data.ticket);
  };
  stream.onerror = () => {
    if (state.queueStream !== stream) return;
    // Refused (not served, or the token expired) or dropped before the admission: read
    // the ticket every second instead (EventSource would wait seconds between retries).
    stream.close();
    state.queueStream = null;
    state.queueStreamFailedAt = Date.now();
    pollTicket(ticketId, 0);
  };
}

/** The stream's fallback: reads the ticket every POLL_MS while it is in line. */
function pollTicket(ticketId, delay = POLL_MS) {
  clearTimeout(state.queuePoll);
  $('#queue').dataset.via = 'poll';
  const current = () => Boolean(state.ticket && state.ticket.ticketId === ticketId);
  state.queuePoll = setTimeout(async () => {
    state.queuePoll = null;
    if (!current()) return;
    try {
      applyTicket(await api('GET', `/v1/queue/${encodeURIComponent(ticketId)}`));
    } catch (error) {
      if (!current()) return;
      if (error.status === 400 || error.status === 404) {
        forgetTicket();
        return;
      }
      if (error.status === 401) {
        logout();
        showMessage('Your session ended: log in again to keep your place in the queue.');
        return;
      }
      // Anything else may pass: keep asking.
    }
    if (!current() || !inLine(state.ticket) || state.queuePoll || state.queueStream) return;
    if (Date.now() - state.queueStreamFailedAt >= STREAM_RETRY_MS) watchTicket(ticketId);
    else pollTicket(ticketId);
  }, delay);
}

/** The admission is over (`how`: EXPIRED or USED): holding waits for the queue again. */
/** @param {'EXPIRED' | 'USED'} how */
function endAdmission(how) {
  state.admission = null;
  if (state.ticket && state.ticket.state === 'ADMITTED') {
    state.ticket = { ...state.ticket, state: how, admissionToken: '', position: '0', etaSeconds: '0' };
  }
  repaintAll();
}

/** A hold or checkout refused over the admission: says why and shows the queue again. */
async function admissionRefused(error) {
  endAdmission('EXPIRED');
  showMessage(`Not allowed by the waiting room: ${error.message}`);
  if (!hasWaitingRoom()) {
    // The seller turned the waiting room on after this page loaded.
    state.event = await api('GET', `/v1/events/${encodeURIComponent(state.eventId)}`);
    resumeQueue();
    return;
  }
  // The ticket's own word on what became of the admission.
  const ticketId = state.ticket && state.ticket.ticketId;
  if (ticketId) applyTicket(await api('GET', `/v1/queue/${encodeURIComponent(ticketId)}`).catch(() => null));
}

function tickQueue() {
  if (!hasWaitingRoom()) return;
  if (state.admission && state.admission.expiresAt <= Date.now()) {
    endAdmission('EXPIRED');
    showMessage('Your admission expired before a checkout: join the queue again to hold seats.', 'info');
    return;
  }
  renderQueue();
}

function renderQueue() {
  const room = state.event && state.event.waitingRoom;
  const admitted = Boolean(room) && isAdmitted();
  const admission = $('#admission');
  admission.hidden = !admitted;
  if (admitted) {
    admission.dataset.expiresAt = new Date(state.admission.expiresAt).toISOString();
    admission.textContent = `Admitted: ${clock((state.admission.expiresAt - Date.now()) / 1000)} left to hold and check out`;
  }
  $('#queue').hidden = !room || admitted;
  if (!room || admitted) return;

  const ticket = state.me ? state.ticket : null;
  const opensAt = new Date((ticket && ticket.opensAt) || /** @type {{ opensAt?: string | null }} */ (room).opensAt || 0).getTime();
  const opens = $('[data-testid="queue-opens"]');
  opens.hidden = !(opensAt > Date.now());
  if (!opens.hidden) opens.textContent = `The queue opens at ${new Date(opensAt).toLocaleString()}.`;
  let intro = 'This sale has a waiting room: join the queue, and hold seats once you are admitted.';
  if (!state.me) intro = 'This sale has a waiting room. Log in to join the queue.';
  else if (ticket && ticket.state === 'EXPIRED') intro = 'Your admission ran out before a checkout.';
  else if (ticket && ticket.state === 'USED') intro = 'Your admission ended with your checkout.';
  else if (ticket) intro = 'You are in the queue: this page moves on by itself when you are admitted.';
  $('[data-testid="queue-intro"]').textContent = intro;
  const join = $('#join-queue');
  join.hidden = !state.me || inLine(ticket);
  join.disabled = state.busy;
  join.textContent = ticket ? 'Join the queue again' : 'Join the queue';

  $('#queue-line').hidden = !ticket;
  if (!ticket) return;
  const s = ticket.state || '';
  const label = $('[data-testid="queue-state"]');
  label.textContent = QUEUE_STATES[s] || s;
  label.dataset.state = s;
  const ahead = Number(ticket.position || 0);
  const position = $('[data-testid="queue-position"]');
  position.dataset.position = String(ahead);
  position.textContent = {
    '': '…',
    BEFORE_OPENING: 'places are drawn at the opening',
    WAITING: ahead === 0 ? 'nobody: you are next' : `${ahead.toLocaleString()} ${ahead === 1 ? 'buyer' : 'buyers'}`,
  }[s] || '—';
  // The ETA counts down between readings (before the opening: to the opening).
  const left = inLine(ticket) ? Math.max(0, Number(ticket.etaSeconds || 0) - Math.floor((Date.now() - state.ticketAt) / 1000)) : 0;
  const eta = $('[data-testid="queue-eta"]');
  eta.dataset.etaSeconds = String(left);
  eta.textContent = s === '' ? '…' : inLine(ticket) ? roughly(left) : '—';
}

// ---------------------------------------------------------------- auction

/** An auctioned seat as "section row-number". @param {AuctionSeat} seat */
function auctionSeatLabel(seat) {
  return `${seat.section} ${seat.row}-${seat.number}`;
}

/** Time left in words: days and hours, hours and minutes, or m:ss. */
function timeLeft(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${String(minutes).padStart(2, '0')} min`;
  return clock(s);
}

/** How many minor units a major unit of `currency` has, as a power of ten (KRW 0, USD 2). */
function minorDigits(currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 0;
  }
}

/** A typed amount in major units as minor units (null when it is no number). */
function toMinor(text, currency) {
  const value = Number(String(text).trim());
  if (String(text).trim() === '' || !Number.isFinite(value)) return null;
  return Math.round(value * 10 ** minorDigits(currency));
}

function auctionPath(auctionId) {
  return `/v1/auctions/${encodeURIComponent(auctionId)}`;
}

/** Whether the shown auction takes bids now (open, and its close not yet passed). */
function auctionOpen() {
  const auction = state.auction;
  return Boolean(auction) && auction.state === 'AUCTION_STATE_OPEN' && new Date(auction.closesAt).getTime() > Date.now();
}

/** The shown event's newest auction, if it has any: shown, and followed live. */
async function loadAuction() {
  const eventId = state.eventId;
  /** @type {ListAuctionsResponse} */
  const body = await api('GET', `/v1/events/${encodeURIComponent(eventId)}/auctions`);
  const newest = ((body && body.auctions) || [])[0];
  if (!newest || eventId !== state.eventId) return;
  state.auction = newest;
  state.auctionMine = null;
  renderAuction();
  watchAuction(newest.auctionId);
  await refreshAuction();
}

/** Reads the auction (with the session, so with the caller's bid and award). */
async function refreshAuction() {
  const auction = state.auction;
  if (!auction) return;
  const signedIn = Boolean(state.token);
  /** @type {GetAuctionResponse} */
  const body = await api('GET', auctionPath(auction.auctionId));
  applyAuction(body && body.auction, signedIn && Boolean(state.token));
}

/**
 * Takes a reading of the auction: from the list, a read, a decline or its stream. The
 * newest version wins; `withMine` when it was read with the session (its `my` fields
 * are then the caller's; the stream has none).
 * @param {Auction | null | undefined} auction
 * @param {boolean} withMine
 */
function applyAuction(auction, withMine) {
  if (!auction || !state.auction || auction.auctionId !== state.auction.auctionId) return;
  if (withMine) {
    state.auctionMine = {
      bid: auction.myBid || null,
      submissionsLeft: Number(auction.mySubmissionsLeft ?? 0),
      award: auction.myAward || null,
    };
  }
  if (Number(auction.version || 0) >= Number(state.auction.version || 0)) state.auction = auction;
  renderAuction();
}

/** An update from the stream (as anyone sees the auction). */
/** @param {Auction} auction */
function onAuctionUpdate(auction) {
  const before = state.auction;
  if (!before || auction.auctionId !== before.auctionId) return;
  const newer = Number(auction.version || 0) > Number(before.version || 0);
  applyAuction(auction, false);
  // After the close every step is an award's: the caller's own award shows only to a
  // read with the session.
  if (newer && state.token && auction.state === 'AUCTION_STATE_CLOSED') {
    refreshAuction().catch((error) => showMessage(`Reading the auction failed: ${error.message}`));
  }
}

function stopWatchingAuction() {
  if (state.auctionStream) state.auctionStream.close();
  state.auctionStream = null;
  clearTimeout(state.auctionPoll);
  state.auctionPoll = null;
}

/** Follows the auction over its SSE stream (public: no token). */
function watchAuction(auctionId) {
  stopWatchingAuction();
  const stream = new EventSource(`${auctionPath(auctionId)}:watch`);
  state.auctionStream = stream;
  stream.onopen = () => {
    $('#auction').dataset.via = 'stream';
  };
  stream.onmessage = (e) => {
    /** @type {AuctionUpdate | null} */
    const data = parseData(e);
    if (data && data.auction) onAuctionUpdate(data.auction);
  };
  stream.onerror = () => {
    if (state.auctionStream !== stream) return;
    // Refused or dropped: read the auction every AUCTION_POLL_MS instead, and try the
    // stream again now and then (as the queue panel does).
    stream.close();
    state.auctionStream = null;
    state.auctionStreamFailedAt = Date.now();
    pollAuction(auctionId, 0);
  };
}

/** The stream's fallback: reads the auction every AUCTION_POLL_MS. */
function pollAuction(auctionId, delay = AUCTION_POLL_MS) {
  clearTimeout(state.auctionPoll);
  $('#auction').dataset.via = 'poll';
  const current = () => Boolean(state.auction && state.auction.auctionId === auctionId);
  state.auctionPoll = setTimeout(async () => {
    state.auctionPoll = null;
    if (!current()) return;
    try {
      await refreshAuction();
    } catch (error) {
      if (!current()) return;
      if (error.status === 401) {
        logout();
        showMessage('Your session ended: log in again to bid.');
      }
      // Anything else may pass: keep asking.
    }
    if (!current() || state.auctionPoll || state.auctionStream) return;
    if (Date.now() - state.auctionStreamFailedAt >= STREAM_RETRY_MS) watchAuction(auctionId);
    else pollAuction(auctionId);
  }, delay);
}

async function auctionBusy(work) {
  if (state.auctionBusy) return;
  state.auctionBusy = true;
  renderAuction();
  try {
    await work();
  } catch (error) {
    showMessage(error.message);
  } finally {
    state.auctionBusy = false;
    renderAuction();
  }
}

function placeBid() {
  return auctionBusy(async () => {
    const auction = state.auction;
    if (!auction || !state.me || !auctionOpen()) return;
    const currency = (auction.openingPrice && auction.openingPrice.currency) || 'KRW';
    const minor = toMinor($('#bid-amount').value, currency);
    if (minor === null) {
      showMessage('Enter the amount of your bid.', 'info');
      return;
    }
    clearMessage();
    /** @type {PlaceBidResponse} */
    let placed;
    try {
      placed = await api('POST', `${auctionPath(auction.auctionId)}/bids`, {
        amount: { amountMinor: String(minor), currency },
      });
    } catch (error) {
      if (error.status === 401) throw error;
      // The server's reason: too low, too small a raise, no submissions left, closed…
      showMessage(`Bid refused: ${(error.body && error.body.message) || error.message}`);
      return;
    }
    state.auctionMine = {
      award: null,
      ...state.auctionMine,
      bid: placed.bid || null,
      submissionsLeft: Number(placed.submissionsLeft || 0),
    };
    $('#bid-amount').value = '';
    const rank = placed.bid && placed.bid.rank;
    showMessage(`Bid placed: ${money(placed.bid && placed.bid.amount)}${rank ? `, rank ${rank}` : ''}.`, 'info');
    renderAuction();
    // The ranking as of the bid, and the caller's bid with its rank.
    await refreshAuction();
  });
}

/** The key that pays the caller's current award: the same for every retry of it. */
/** @param {Award} award */
function awardKey(award) {
  const id = `${state.auction.auctionId}/${award.seatId}/${award.rank}`;
  if (!state.awardKey || state.awardKey.award !== id) state.awardKey = { award: id, key: randomKey() };
  return state.awardKey.key;
}

function payAward() {
  return auctionBusy(async () => {
    const award = state.auctionMine && state.auctionMine.award;
    if (!state.auction || !award) return;
    clearMessage();
    /** @type {PayAwardResponse} */
    const paid = await api('POST', `${auctionPath(state.auction.auctionId)}/award:pay`, { paymentMethod: 'WALLET' }, {
      'Idempotency-Key': awardKey(award),
    });
    // The booking's progress shows as a checkout's does.
    if (paid && paid.booking) {
      showBooking(paid.booking);
      watchBooking(paid.booking.bookingId);
    }
    await refreshAuction();
  });
}

function declineAward() {
  return auctionBusy(async () => {
    if (!state.auction || !state.auctionMine || !state.auctionMine.award) return;
    if (!confirm('Give up this seat? It passes to the next bid in the ranking.')) return;
    clearMessage();
    /** @type {DeclineAwardResponse} */
    const declined = await api('POST', `${auctionPath(state.auction.auctionId)}/award:decline`, {});
    applyAuction(declined && declined.auction, true);
    showMessage('You gave the seat up: it passed to the next bid.', 'info');
  });
}

/** The ranking last drawn (version and the caller's pseudonym): redrawn only when it changes. */
let rankingDrawn = '';

function renderAuction() {
  const auction = state.auction;
  const panel = $('#auction');
  panel.hidden = !auction;
  if (!auction) return;
  panel.dataset.state = auction.state || '';
  panel.dataset.version = String(auction.version || '0');
  const open = auctionOpen();
  const closesAt = new Date(auction.closesAt).getTime();
  const status = $('[data-testid="auction-status"]');
  if (auction.state === 'AUCTION_STATE_CLOSED') {
    status.textContent = `Closed at ${when(auction.closesAt)}.`;
  } else if (open) {
    status.textContent = `Open: ${timeLeft((closesAt - Date.now()) / 1000)} left to bid (closes at ${when(auction.closesAt)}).`;
  } else {
    status.textContent = 'Closing…';
  }
  status.dataset.state = auction.state || '';

  const seats = auction.seats || [];
  $('[data-testid="auction-seats"]').textContent =
    `${seats.length} ${seats.length === 1 ? 'seat' : 'seats'}, best first: ${seats.map(auctionSeatLabel).join(', ')}`;
  $('[data-testid="auction-opening"]').textContent =
    `${money(auction.openingPrice)} (a raise adds at least ${money(auction.minIncrement)})`;
  let cutoff = auction.cutoff ? money(auction.cutoff) : 'none: fewer bids than seats';
  if (open) cutoff = auction.cutoff ? `${cutoff}: bid more to win a seat now` : 'none yet: fewer bids than seats';
  $('[data-testid="auction-cutoff"]').textContent = cutoff;
  const bidders = Number(auction.bidders || 0);
  $('[data-testid="auction-bidders"]').textContent = bidders.toLocaleString();

  const mine = state.me ? state.auctionMine : null;
  const myBidder = (mine && mine.bid && mine.bid.bidder) || '';
  const ranking = auction.ranking || [];
  const drawn = `${auction.auctionId}/${auction.version}/${myBidder}/${ranking.length}`;
  if (drawn !== rankingDrawn) {
    rankingDrawn = drawn;
    drawRanking(ranking, seats.length, myBidder);
  }

  // The caller's bid, with its rank in the live ranking when it is among the leaders.
  const mineText = $('[data-testid="auction-mine"]');
  const mineRow = myBidder ? ranking.find((b) => b.bidder === myBidder) : null;
  const left = mine ? mine.submissionsLeft : 0;
  const submissions = `${left} ${left === 1 ? 'submission' : 'submissions'} left`;
  if (!state.me) {
    mineText.textContent = open ? 'Log in to bid.' : '';
  } else if (!mine) {
    mineText.textContent = '…';
  } else if (!mine.bid) {
    mineText.textContent = open ? `You have not bid yet (${submissions}).` : 'You did not bid.';
  } else {
    const rank = Number((mineRow || mine.bid).rank || 0);
    const where = mineRow || !open ? `rank ${rank}` : `rank ${rank} when you bid, now below the leaders shown`;
    const winning = open && mineRow && rank <= seats.length ? ': winning a seat now' : '';
    mineText.textContent = `Your bid: ${money(mine.bid.amount)}, ${where}${winning}${open ? ` · ${submissions}` : ''}.`;
  }
  mineText.dataset.rank = mineRow ? String(mineRow.rank) : '';
  mineText.dataset.submissionsLeft = mine ? String(left) : '';

  // The bid form.
  const currency = (auction.openingPrice && auction.openingPrice.currency) || 'KRW';
  const lowest = mine && mine.bid
    ? Number(mine.bid.amount && mine.bid.amount.amountMinor) + Number(auction.minIncrement && auction.minIncrement.amountMinor)
    : Number(auction.openingPrice && auction.openingPrice.amountMinor);
  const input = $('#bid-amount');
  input.placeholder = `at least ${money({ amountMinor: lowest || 0, currency })}`;
  $('[data-testid="bid-currency"]').textContent = `(${currency})`;
  const canBid = Boolean(state.me) && open && Boolean(mine) && mine.submissionsLeft > 0;
  $('#bid').disabled = state.auctionBusy || !canBid;
  input.disabled = !canBid;
  $('#bid-form').hidden = !open && auction.state === 'AUCTION_STATE_CLOSED';

  renderAward(auction, mine);
}

/**
 * @param {RankedBid[]} ranking
 * @param {number} seatCount
 * @param {string} myBidder
 */
function drawRanking(ranking, seatCount, myBidder) {
  const body = $('#auction-ranking tbody');
  body.replaceChildren();
  if (ranking.length === 0) {
    const row = document.createElement('tr');
    const cell = Object.assign(document.createElement('td'), { textContent: 'No bids yet.', colSpan: 3 });
    row.append(cell);
    body.append(row);
    return;
  }
  for (const bid of ranking) {
    const rank = Number(bid.rank || 0);
    const row = document.createElement('tr');
    row.dataset.testid = 'auction-row';
    row.dataset.rank = String(rank);
    row.dataset.bidder = bid.bidder || '';
    row.dataset.winning = String(rank <= seatCount);
    // The first bid in line behind the winners: the cut-off runs above it.
    if (rank === seatCount + 1) row.className = 'cut';
    const who = document.createElement('td');
    who.append(bid.bidder || '');
    if (myBidder && bid.bidder === myBidder) {
      row.classList.add('mine');
      row.dataset.mine = 'true';
      who.append(' ', Object.assign(document.createElement('span'), { className: 'you', textContent: 'you' }));
    }
    row.append(
      Object.assign(document.createElement('td'), { textContent: String(rank) }),
      who,
      Object.assign(document.createElement('td'), { textContent: money(bid.amount) }),
    );
    body.append(row);
  }
}

/**
 * The caller's award after the close: its seat, state and pay-by time; Pay and Decline
 * while it awaits payment.
 * @param {Auction} auction
 * @param {AuctionMine | null} mine
 */
function renderAward(auction, mine) {
  const award = mine && mine.award;
  const box = $('#award');
  box.hidden = !award;
  box.dataset.state = (award && award.state) || '';
  if (!award) {
    if (mine && mine.bid && auction.state === 'AUCTION_STATE_CLOSED') {
      $('[data-testid="auction-mine"]').textContent +=
        ' No seat for you now: your bid stays in line should a winner not pay.';
    }
    return;
  }
  const seat = (auction.seats || []).find((s) => s.seatId === award.seatId);
  const awaiting = award.state === 'AWARD_STATE_AWAITING_PAYMENT';
  const left = (new Date(award.payBy).getTime() - Date.now()) / 1000;
  let text = `You won ${seat ? auctionSeatLabel(seat) : 'a seat'} at ${money(award.amount)} (rank ${award.rank}): ` +
    `${AWARD_STATES[award.state] || award.state}`;
  if (awaiting) text += ` · pay by ${new Date(award.payBy).toLocaleTimeString()} (${clock(left)} left)`;
  $('[data-testid="award-info"]').textContent = `${text}.`;
  $('#award-pay').hidden = !awaiting;
  $('#award-decline').hidden = !awaiting;
  $('#award-pay').disabled = state.auctionBusy || left <= 0;
  $('#award-decline').disabled = state.auctionBusy || left <= 0;
}

function tickAuction() {
  if (state.auction) renderAuction();
}

// ---------------------------------------------------------------- start

function start() {
  $('#login').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    clearMessage();
    login(String(form.get('email')), String(form.get('password')), String(form.get('code') || '').trim()).catch((error) => {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      const reason = error instanceof ApiError ? errorReason(error) : '';
      if (reason === 'TWO_FACTOR_REQUIRED') {
        showCodeField(true);
        showMessage('This account signs in with two-factor: enter the 6-digit code from your authenticator app.', 'info');
        return;
      }
      showMessage(`Log-in failed: ${error.message}`);
    });
  });
  $('#logout').addEventListener('click', logout);
  $('#seatmap').addEventListener('click', onSeatClick);
  $('#hold').addEventListener('click', holdSelected);
  $('#release').addEventListener('click', releaseHold);
  $('#checkout').addEventListener('click', checkout);
  $('#join-queue').addEventListener('click', joinQueue);
  $('#bid-form').addEventListener('submit', (e) => {
    e.preventDefault();
    placeBid();
  });
  $('#award-pay').addEventListener('click', payAward);
  $('#award-decline').addEventListener('click', declineAward);
  $('#more-events').addEventListener('click', () => {
    loadEvents().catch((error) => showMessage(`More events failed: ${error.message}`));
  });
  $('#more-results').addEventListener('click', () => {
    loadResults().catch((error) => showMessage(`More results failed: ${error.message}`));
  });
  const searchBox = $('#search');
  searchBox.addEventListener('input', onSearchInput);
  searchBox.addEventListener('keydown', onSearchKey);
  searchBox.addEventListener('blur', hideSuggestions);
  $('#search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    search(searchBox.value).catch((error) => showMessage(`Search failed: ${error.message}`));
  });
  // mousedown would blur the box (closing the list) before the click lands.
  $('#suggestions').addEventListener('mousedown', (e) => e.preventDefault());
  $('#suggestions').addEventListener('click', (e) => {
    const option = e.target.closest('[role="option"]');
    if (option) chooseSuggestion([...option.parentElement.children].indexOf(option));
  });
  setInterval(() => {
    tickHold();
    tickQueue();
    tickAuction();
  }, 1000);

  loadMe().catch((error) => showMessage(error.message));
  const eventId = new URLSearchParams(location.search).get('event');
  const shown = eventId ? showEvent(eventId) : showEventList();
  shown.catch((error) => showMessage(error.message));
}

start();
