// Marquee's reference seat-map page. Plain JS, no build step, no third-party code.
//
// Flow: pick an event (?event=<id>, else the list from GET /v1/events) → the seat map is
// drawn as SVG from each seat's x/y and kept live by EventSource on
// /v1/events/{id}/seats:watch (a `snapshot` event replaces every status, a `changes`
// event applies its changes in version order) → log in → click available seats to
// select them → "Hold selected seats" (POST holds) → choose wallet or a test card → "Check out"
// (POST /v1/bookings with an Idempotency-Key) → the booking's status is watched over
// /v1/bookings/{id}:watch until it is CONFIRMED or CANCELLED.
'use strict';

const TOKEN_KEY = 'marquee.token';
const SVG_NS = 'http://www.w3.org/2000/svg';
const SEAT_GAP = 24; // the smallest distance between two seats of a row, in SVG units
const PAD = 20;
const STAGE = 40;
const TIER_COLOURS = ['#e4572e', '#f3a712', '#29a19c', '#4c6ef5', '#a23b72', '#3bb273', '#7768ae', '#d1495b'];
const RECONNECT_MS = 2000;

const $ = (selector) => document.querySelector(selector);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  eventId: null,
  event: null,
  maxSeats: 4,
  /** seatId → { seat, el, status } */
  seats: new Map(),
  version: null,
  seatStream: null,
  selected: new Set(),
  /** seats of a hold request in flight: their HELD change is ours, not someone else's */
  holding: new Set(),
  /** { holdId, seatIds: Set, expiresAt: Date, total, idempotencyKey } */
  hold: null,
  booking: null,
  bookingStream: null,
  busy: false,
};

// ---------------------------------------------------------------- helpers

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
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

function seatLabel(seat) {
  return `${seat.section} ${seat.row}-${seat.number}`;
}

function svg(name, attrs = {}) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// ---------------------------------------------------------------- account

async function login(email, password) {
  state.token = null;
  const session = await api('POST', '/v1/sessions', { email, password });
  state.token = session.accessToken;
  sessionStorage.setItem(TOKEN_KEY, state.token);
  await loadMe();
}

function logout() {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  closeBookingStream();
  renderAccount();
  renderCart();
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
  const list = $('#event-list');
  const body = await api('GET', '/v1/events');
  const events = (body && body.events) || [];
  list.replaceChildren();
  if (events.length === 0) {
    list.append(Object.assign(document.createElement('li'), { textContent: 'No events yet.' }));
    return;
  }
  for (const event of events) {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = `/?event=${encodeURIComponent(event.eventId)}`;
    a.textContent = event.title;
    a.dataset.eventId = event.eventId;
    const when = event.startsAt ? new Date(event.startsAt).toLocaleString() : '';
    li.append(a, ` — ${event.venue || ''} ${when}`);
    list.append(li);
  }
}

async function showEvent(eventId) {
  state.eventId = eventId;
  $('#event').hidden = false;
  const [event, seats] = await Promise.all([
    api('GET', `/v1/events/${encodeURIComponent(eventId)}`),
    api('GET', `/v1/events/${encodeURIComponent(eventId)}/seats`),
  ]);
  state.event = event;
  if (event.maxSeatsPerBuyer > 0) state.maxSeats = event.maxSeatsPerBuyer;
  document.title = `${event.title} — Marquee`;
  $('#event-title').textContent = event.title;
  const when = event.startsAt ? new Date(event.startsAt).toLocaleString() : '';
  $('#event-meta').textContent = `${event.venue || ''} · ${when} · up to ${state.maxSeats} seats per buyer`;
  drawSeatMap((seats && seats.seats) || []);
  openSeatStream();
  renderCart();
}

// ---------------------------------------------------------------- seat map

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
    const data = parseData(e);
    if (!data || !data.snapshot) return;
    for (const s of data.snapshot.seats || []) setStatus(s.seatId, s.status);
    state.version = Number(data.version);
    setLive(true, 'live');
    renderCart();
  });
  stream.addEventListener('changes', (e) => {
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
  $('[data-testid="selection"]').textContent = selected.length
    ? `Selected: ${selected.map((e) => seatLabel(e.seat)).join(', ')} (${money({ amountMinor: sum, currency })})`
    : state.me ? 'Click available seats to select them.' : 'Log in, then click available seats to select them.';
  $('#hold').disabled = state.busy || !state.me || selected.length === 0 || Boolean(state.hold);
  $('#hold-box').hidden = !state.hold;
  $('#checkout').disabled = state.busy || !state.hold || Boolean(state.booking && !isTerminal(state.booking.status));
  $('#release').disabled = state.busy || !state.hold;
  renderHoldInfo();
}

function renderHoldInfo() {
  if (!state.hold) return;
  const left = Math.max(0, Math.round((state.hold.expiresAt - Date.now()) / 1000));
  const labels = [...state.hold.seatIds].map((id) => seatLabel(state.seats.get(id).seat));
  $('[data-testid="hold-info"]').textContent =
    `Held: ${labels.join(', ')} · ${money(state.hold.total)} · expires in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
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
    if (seatIds.length === 0) return;
    clearMessage();
    state.holding = new Set(seatIds);
    try {
      const hold = await api('POST', `/v1/events/${encodeURIComponent(state.eventId)}/holds`, { seatIds });
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
    const booking = await api('POST', '/v1/bookings', body, {
      'Idempotency-Key': state.hold.idempotencyKey,
    });
    showBooking(booking);
    watchBooking(booking.bookingId);
  });
}

function isTerminal(status) {
  return status === 'CONFIRMED' || status === 'CANCELLED';
}

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
    const data = parseData(e);
    if (data && data.booking && data.booking.bookingId === bookingId) showBooking(data.booking);
  };
  stream.onerror = () => {
    if (stream.readyState !== EventSource.CLOSED || state.bookingStream !== stream) return;
    // Refused (e.g. the token expired): read the booking once and try again later.
    state.bookingStream = null;
    api('GET', `/v1/bookings/${encodeURIComponent(bookingId)}`)
      .then((booking) => {
        showBooking(booking);
        if (!isTerminal(booking.status)) setTimeout(() => watchBooking(bookingId), RECONNECT_MS);
      })
      .catch((error) => showMessage(`Lost the booking's progress: ${error.message}`));
  };
}

// ---------------------------------------------------------------- start

function start() {
  $('#login').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    clearMessage();
    login(String(form.get('email')), String(form.get('password'))).catch((error) => {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showMessage(`Log-in failed: ${error.message}`);
    });
  });
  $('#logout').addEventListener('click', logout);
  $('#seatmap').addEventListener('click', onSeatClick);
  $('#hold').addEventListener('click', holdSelected);
  $('#release').addEventListener('click', releaseHold);
  $('#checkout').addEventListener('click', checkout);
  setInterval(tickHold, 1000);

  loadMe().catch((error) => showMessage(error.message));
  const eventId = new URLSearchParams(location.search).get('event');
  const shown = eventId ? showEvent(eventId) : showEventList();
  shown.catch((error) => showMessage(error.message));
}

start();
