// The reference seat-map page in headless Debian chromium, driven by playwright-core.
// Run by e2e/tests/browser.rs, which starts the system and passes (env):
//   BASE_URL, EVENT_ID, SEAT_COUNT, SEAT_ID, SEAT_ID_2, SEAT_PRICE, WALLET_START,
//   BUYER_A_EMAIL/PASSWORD, BUYER_B_EMAIL/PASSWORD, CHROMIUM (default /usr/bin/chromium),
//   SELLER_EMAIL/PASSWORD/SECRET/AFTER_STEP (a seller with two-factor sign-in: its TOTP
//   secret, base32, and the last step whose code was used), and optionally SCREENSHOT_DIR;
// and for the waiting room (issue 11; run first, as the other buyers' admissions run),
//   WAITING_ROOMS: a JSON array of rooms, each {name, eventId (its waiting room admits
//   one shopper at a time), seatCount, seat (the page's buyer buys it), otherSeat,
//   otherToken and otherAdmission (the bearer and admission tokens of the buyer holding
//   the one admission, who buys otherSeat through REST), email, password (the page's
//   buyer), stream: "live" (the ticket must be followed over its SSE stream) or
//   "refused" (the page's stream request is answered 501, as by a gateway whose upstream
//   is UNIMPLEMENTED: polling must carry the page)};
// and for the event list and the search box (issue 13; run last),
//   CATALOG: {eventCount (events in the system, more than a page), events ([{eventId,
//   title}] with Korean titles, all searchable), iu and musical (two of them: "아이유
//   콘서트", whose description has "<HEREH>" in it, and "뮤지컬 레미제라블")}.
// Hangul must render with a font that has it (scripts/ensure-browser.sh installs one).
// Exits 0 when every check passed, 1 with the reason otherwise. Every wait is bounded.
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env('BASE_URL');
const EVENT = env('EVENT_ID');
const SEAT = env('SEAT_ID');
const SEAT2 = env('SEAT_ID_2');
const SEAT_COUNT = Number(env('SEAT_COUNT'));
const PRICE = Number(env('SEAT_PRICE'));
const WALLET = Number(env('WALLET_START'));
const WAITING_ROOMS = JSON.parse(env('WAITING_ROOMS'));
const CATALOG = JSON.parse(env('CATALOG'));
const PAGE_SIZE = 20; // the page's event list page (app.js PAGE_SIZE)
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 10_000; // default bound of every wait
const CONFIRM_MS = 20_000; // the payment saga runs through RabbitMQ
const LIVE_MS = 1_000; // the bound: the other page shows a hold within a second
// From the checkout that frees the admission to the next buyer's page enabling holds:
// the waiting room's tick, then its stream (or, without one, a poll each second).
const ADMIT_MS = 5_000;
const WATCHDOG_MS = 150_000;
// Optional: a directory for screenshots of both pages at the end (or at a failure).
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR;

const watchdog = setTimeout(() => {
  console.error(`seatmap.mjs: still running after ${WATCHDOG_MS} ms, giving up`);
  process.exit(2);
}, WATCHDOG_MS);

const started = Date.now();
const log = (...args) => console.log(`[${String(Date.now() - started).padStart(5)} ms]`, ...args);
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}
const seat = (id) => `[data-seat-id="${id}"]`;
const won = (n) => n.toLocaleString('en-US');

/**
 * Arms a MutationObserver in the page; the returned function resolves with the
 * browser's Date.now() when `selector` first matched (bounded by `timeout`). Arming is
 * awaited, so nothing that happens afterwards can be missed or timed late.
 */
async function arm(page, selector, timeout) {
  const key = `__seen_${Math.random().toString(36).slice(2)}`;
  await page.evaluate(
    ([key, selector, timeout]) => {
      window[key] = new Promise((resolve, reject) => {
        if (document.querySelector(selector)) return resolve(Date.now());
        const observer = new MutationObserver(() => {
          if (document.querySelector(selector)) {
            observer.disconnect();
            clearTimeout(timer);
            resolve(Date.now());
          }
        });
        const timer = setTimeout(() => {
          observer.disconnect();
          reject(new Error(`${selector} not seen within ${timeout} ms`));
        }, timeout);
        observer.observe(document.body, { subtree: true, attributes: true, childList: true });
      });
    },
    [key, selector, timeout],
  );
  return () => page.evaluate((key) => window[key], key);
}

/** Resolves with the browser's Date.now() when `selector` matches (bounded). */
async function whenSeen(page, selector, timeout) {
  return (await arm(page, selector, timeout))();
}

/** A new page at `path`, its uncaught errors and CSP refusals kept in `problems`. */
async function newPage(browser, name, problems, path, locale = 'en-US') {
  const context = await browser.newContext({ locale, timezoneId: 'Asia/Seoul' });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error.message}`));
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(text)) {
      problems.push(`${name}: ${text}`);
    }
  });
  const response = await page.goto(`${BASE}${path}`);
  check(response && response.status() === 200, `${name}: GET ${path} answered ${response && response.status()}`);
  const csp = response.headers()['content-security-policy'] || '';
  check(csp.includes("default-src 'self'"), `${name}: CSP header is "${csp}"`);
  return page;
}

async function openPage(browser, name, problems, event = EVENT, seatCount = SEAT_COUNT) {
  const page = await newPage(browser, name, problems, `/?event=${encodeURIComponent(event)}`);
  await page.waitForSelector('#live[data-live="on"]');
  const seats = await page.locator('#seatmap [data-seat-id]').count();
  check(seats === seatCount, `${name}: ${seats} seats drawn, expected ${seatCount}`);
  log(`${name}: seat map drawn (${seats} seats) and live`);
  return page;
}

async function logIn(page, name, email, password) {
  await page.fill('[data-testid="email"]', email);
  await page.fill('[data-testid="password"]', password);
  await page.click('[data-testid="login"]');
  await page.waitForSelector('[data-testid="balance"]:visible');
  await page.waitForFunction(
    (text) => document.querySelector('[data-testid="balance"]').textContent.includes(text),
    won(WALLET),
    { timeout: STEP_MS },
  );
  log(`${name}: logged in, wallet ${await page.textContent('[data-testid="balance"]')}`);
}

/** The 6-digit TOTP code (RFC 6238: HMAC-SHA1) of `secret` (base32) for time step `step`. */
function totp(secret, step) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bytes = [];
  let bits = 0;
  let value = 0;
  for (const c of secret.replace(/=+$/, '')) {
    value = ((value << 5) | alphabet.indexOf(c)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const digest = createHmac('sha1', Buffer.from(bytes)).update(counter).digest();
  const offset = digest[digest.length - 1] & 0x0f;
  return String((digest.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** The seller's code for a step after the last used one (the current step, or the next). */
function sellerCode() {
  const now = Math.floor(Date.now() / 30_000);
  const step = Math.max(now, Number(env('SELLER_AFTER_STEP')) + 1);
  check(step <= now + 1, `seller: step ${step} is beyond the server's skew at ${now}`);
  return totp(env('SELLER_SECRET'), step);
}

/** A REST call as another buyer, outside the browser (bounded): { status, body }. */
async function rest(method, path, token, body, headers = {}) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: response.status, body: json };
}

/**
 * The waiting room (issue 11): the room's event admits one shopper at a time and another
 * buyer holds that admission. The page's buyer joins and waits first in line; the other
 * buyer checks out (which ends its admission); the page moves on by itself, holds with
 * its admission token and checks out.
 */
async function waitingRoom(browser, problems, pages, WR) {
  const name = WR.name;
  const w = await openPage(browser, name, problems, WR.eventId, WR.seatCount);
  pages[name] = w;
  if (WR.stream === 'refused') {
    await w.route('**/v1/queue/*:watch*', (route) =>
      route.fulfill({ status: 501, contentType: 'application/json', body: '{"code":"UNIMPLEMENTED","message":"not served"}' }),
    );
  }

  // Logged out: the queue panel asks for a log-in, and there is nothing to join.
  await w.waitForSelector('[data-testid="queue"]:visible');
  const loggedOut = await w.textContent('[data-testid="queue-intro"]');
  check(/Log in/.test(loggedOut), `${name}: the logged-out queue panel says "${loggedOut}"`);
  check(!(await w.isVisible('[data-testid="join-queue"]')), `${name}: join button shown while logged out`);
  await logIn(w, name, WR.email, WR.password);
  await w.waitForSelector('[data-testid="join-queue"]:visible');
  // Seats may be picked meanwhile, not held.
  await w.click(seat(WR.seat));
  await w.waitForSelector(`${seat(WR.seat)}.selected`);
  check(await w.isDisabled('[data-testid="hold"]'), `${name}: hold enabled before joining the queue`);

  const joinAnswer = w.waitForResponse((r) => r.url().endsWith(`/v1/events/${WR.eventId}/queue`) && r.request().method() === 'POST');
  await w.click('[data-testid="join-queue"]');
  const joined = await joinAnswer;
  const ticket = await joined.json();
  check(joined.status() === 201, `${name}: join answered ${joined.status()} ${JSON.stringify(ticket)}`);
  const waiting = '[data-testid="queue-state"][data-state="WAITING"]';
  await w.waitForSelector(waiting);
  const readLine = async () => ({
    position: await w.getAttribute('[data-testid="queue-position"]', 'data-position'),
    eta: Number(await w.getAttribute('[data-testid="queue-eta"]', 'data-eta-seconds')),
    etaText: await w.textContent('[data-testid="queue-eta"]'),
    state: await w.textContent('[data-testid="queue-state"]'),
  });
  let line = await readLine();
  check(line.position === '0', `${name}: position ${line.position}, expected 0 (next in line)`);
  check(line.eta > 0 && /about/.test(line.etaText), `${name}: ETA ${line.eta} s shown as "${line.etaText}"`);
  check(await w.isDisabled('[data-testid="hold"]'), `${name}: hold enabled while waiting`);
  log(`${name}: joined ${ticket.ticketId}: "${line.state}", position ${line.position}, ETA "${line.etaText}"`);

  // A reload resumes the same ticket (kept in sessionStorage).
  await w.reload();
  await w.waitForSelector('#live[data-live="on"]');
  await w.waitForSelector(waiting);
  const stored = await w.evaluate(() =>
    Object.keys(sessionStorage)
      .filter((k) => k.startsWith('marquee.queue.'))
      .map((k) => sessionStorage.getItem(k)),
  );
  check(stored.includes(ticket.ticketId), `${name}: sessionStorage holds ${JSON.stringify(stored)}, not ${ticket.ticketId}`);
  line = await readLine();
  check(line.position === '0' && line.eta > 0, `${name}: after the reload ${JSON.stringify(line)}`);
  log(`${name}: reloaded, still waiting (${line.etaText})`);
  await w.click(seat(WR.seat));
  await w.waitForSelector(`${seat(WR.seat)}.selected`);
  check(await w.isDisabled('[data-testid="hold"]'), `${name}: hold enabled while waiting (after the reload)`);
  // From here on the page must move on by itself: a reload would drop this marker.
  await w.evaluate(() => {
    window.__sameDocument = true;
  });

  // The other buyer holds a seat and checks out with its admission token: that ends
  // its admission, and the page's buyer, next in line, is admitted.
  const admittedSeen = await arm(w, '[data-testid="hold"]:enabled', ADMIT_MS);
  const held = await rest('POST', `/v1/events/${WR.eventId}/holds`, WR.otherToken, { seatIds: [WR.otherSeat] }, {
    'X-Admission-Token': WR.otherAdmission,
  });
  check(held.status === 201, `other buyer: hold answered ${held.status} ${JSON.stringify(held.body)}`);
  const bought = await rest('POST', '/v1/bookings', WR.otherToken, { holdId: held.body.holdId, paymentMethod: 'WALLET' }, {
    'Idempotency-Key': `wr-${Date.now()}`,
    'X-Admission-Token': WR.otherAdmission,
  });
  check(bought.status === 202, `other buyer: checkout answered ${bought.status} ${JSON.stringify(bought.body)}`);
  const checkedOut = Date.now();
  const admittedAt = await admittedSeen();
  const via = await w.getAttribute('[data-testid="queue"]', 'data-via');
  const expected = WR.stream === 'refused' ? 'poll' : 'stream';
  check(via === expected, `${name}: the ticket was followed by ${via}, expected ${expected}`);
  log(`${name}: hold enabled ${admittedAt - checkedOut} ms after the other buyer's checkout (ticket followed by ${via})`);
  console.log(`ADMITTED_AFTER_CHECKOUT_MS_${via.toUpperCase()}=${admittedAt - checkedOut}`);
  check(await w.evaluate(() => window.__sameDocument === true), `${name}: the page was reloaded`);
  check(!(await w.isVisible('[data-testid="queue"]')), `${name}: the queue panel is still shown after the admission`);
  await w.waitForSelector('[data-testid="admission"]:visible');
  const admission = await w.textContent('[data-testid="admission"]');
  check(/left to hold/.test(admission), `${name}: admission shown as "${admission}"`);
  log(`${name}: "${admission}"`);

  // The page holds with the admission token and checks out with it.
  const holdAnswer = w.waitForResponse((r) => r.url().endsWith(`/v1/events/${WR.eventId}/holds`) && r.request().method() === 'POST');
  await w.click('[data-testid="hold"]');
  const hold = await holdAnswer;
  check(hold.status() === 201, `${name}: hold answered ${hold.status()} ${await hold.text()}`);
  check(Boolean(hold.request().headers()['x-admission-token']), `${name}: the hold sent no X-Admission-Token`);
  await w.waitForSelector(`${seat(WR.seat)}[data-mine="true"]`);
  const bookingAnswer = w.waitForResponse((r) => r.url().endsWith('/v1/bookings') && r.request().method() === 'POST');
  await w.click('[data-testid="checkout"]');
  const booked = await bookingAnswer;
  const bookedBody = await booked.json();
  check(booked.status() === 202, `${name}: checkout answered ${booked.status()} ${JSON.stringify(bookedBody)}`);
  const sent = booked.request().headers();
  check(Boolean(sent['x-admission-token']) && Boolean(sent['idempotency-key']), `${name}: checkout headers ${JSON.stringify(Object.keys(sent))}`);
  await whenSeen(w, '[data-testid="booking-status"][data-status="CONFIRMED"]', CONFIRM_MS);
  await whenSeen(w, `${seat(WR.seat)}[data-status="SOLD"]`, STEP_MS);
  await whenSeen(w, `${seat(WR.otherSeat)}[data-status="SOLD"]`, STEP_MS);
  // The checkout used the admission: the queue panel is back, saying so.
  await w.waitForSelector('[data-testid="queue-state"][data-state="USED"]:visible');
  check(await w.isDisabled('[data-testid="hold"]'), `${name}: hold enabled after the admission was used`);
  log(`${name}: booking ${bookedBody.bookingId} CONFIRMED; the queue panel shows the admission used`);
}

/**
 * Whether each of `chars` renders as a glyph of its own in `element`'s font (canvas
 * pixels): without a font that has them, every Hangul syllable is the same empty box
 * (tofu), the box drawn for a code point no font has (U+10FFFD).
 */
async function ownGlyphs(page, element, chars) {
  return page.evaluate(
    ([selector, chars]) => {
      const family = getComputedStyle(document.querySelector(selector)).fontFamily;
      const draw = (text) => {
        const canvas = document.createElement('canvas');
        canvas.width = 64;
        canvas.height = 64;
        const ctx = canvas.getContext('2d');
        ctx.font = `40px ${family}`;
        ctx.textBaseline = 'top';
        ctx.fillText(text, 4, 4);
        return Array.from(ctx.getImageData(0, 0, 64, 64).data).join();
      };
      const tofu = draw('\u{10FFFD}');
      const glyphs = [...chars].map(draw);
      return { family, chars: new Set(chars).size, distinct: new Set(glyphs).size, tofu: glyphs.filter((g) => g === tofu).length };
    },
    [element, chars],
  );
}

/**
 * The event list and the search box (issue 13), in a Korean browser: the list shows a
 * page of events and "More events" the rest; Hangul renders with a real font; typing
 * part of a title (partial syllables, chosung) suggests it, choosing a suggestion (by
 * keyboard or click) or submitting shows it in the results, highlighted; clearing the
 * box brings the list back; a result opens the event's seat map.
 */
async function catalog(browser, problems, pages) {
  const name = 'Catalog';
  const c = await newPage(browser, name, problems, '/', 'ko-KR');
  pages.catalog = c;
  const suggestRequests = [];
  c.on('request', (r) => {
    if (r.url().includes('/v1/search/suggestions')) suggestRequests.push(new URL(r.url()).searchParams.get('q'));
  });
  const links = '[data-testid="event-list"] a[data-event-id]';
  const count = (selector) => c.locator(selector).count();
  const listed = async () => c.$$eval(links, (as) => as.map((a) => a.dataset.eventId));

  // A page of events, then "More events" until there are no more.
  await c.waitForFunction(([s, n]) => document.querySelectorAll(s).length === n, [links, PAGE_SIZE], { timeout: STEP_MS });
  await c.waitForSelector('[data-testid="more-events"]:visible');
  log(`${name}: the list shows ${PAGE_SIZE} of ${CATALOG.eventCount} events and "More events"`);
  for (let pageNo = 2; await c.isVisible('[data-testid="more-events"]'); pageNo++) {
    check(pageNo <= Math.ceil(CATALOG.eventCount / PAGE_SIZE), `${name}: "More events" still shown on page ${pageNo}`);
    const before = await count(links);
    await c.click('[data-testid="more-events"]');
    await c.waitForFunction(([s, n]) => document.querySelectorAll(s).length > n, [links, before], { timeout: STEP_MS });
  }
  const ids = await listed();
  check(ids.length === CATALOG.eventCount, `${name}: ${ids.length} events listed, expected ${CATALOG.eventCount}`);
  check(new Set(ids).size === ids.length, `${name}: an event is listed twice`);
  const missing = CATALOG.events.filter((e) => !ids.includes(e.eventId));
  check(missing.length === 0, `${name}: not listed: ${JSON.stringify(missing)}`);
  log(`${name}: "More events" showed all ${ids.length} events`);

  // Hangul renders with a font that has it, not as boxes.
  const iuLink = `${links}[data-event-id="${CATALOG.iu.eventId}"]`;
  check((await c.textContent(iuLink)) === CATALOG.iu.title, `${name}: the list shows "${await c.textContent(iuLink)}"`);
  const glyphs = await ownGlyphs(c, iuLink, '아이유콘서트뮤');
  check(glyphs.distinct === glyphs.chars && glyphs.tofu === 0, `${name}: Hangul renders as boxes in "${glyphs.family}" (${JSON.stringify(glyphs)}): is a CJK font installed (scripts/ensure-browser.sh)?`);
  log(`${name}: Hangul has glyphs of its own (${JSON.stringify(glyphs)})`);

  // Half-typed Hangul suggests the title: typing 아이 through an IME shows 아, then 앙 (its
  // ㅇ not yet moved on to the next syllable). Down arrows and Enter pick it: the results.
  const box = '[data-testid="search"]';
  const option = (event) => `#suggestions:not([hidden]) [data-testid="suggestion"][data-event-id="${event.eventId}"]`;
  const result = (event) => `#results:not([hidden]) [data-testid="search-results"] a[data-event-id="${event.eventId}"]`;
  await c.click(box);
  await c.keyboard.type('아');
  await c.fill(box, '앙');
  await c.waitForSelector(option(CATALOG.iu));
  check((await c.textContent(option(CATALOG.iu))) === CATALOG.iu.title, `${name}: suggestion "${await c.textContent(option(CATALOG.iu))}"`);
  const options = await count('[data-testid="suggestion"]');
  for (let i = 0; i < options && (await c.getAttribute(option(CATALOG.iu), 'aria-selected')) !== 'true'; i++) {
    await c.keyboard.press('ArrowDown');
  }
  if (SCREENSHOT_DIR) await c.screenshot({ path: `${SCREENSHOT_DIR}/search-suggestions.png` });
  check((await c.getAttribute(option(CATALOG.iu), 'aria-selected')) === 'true', `${name}: the arrows never reached the suggestion`);
  log(`${name}: "앙" suggested ${options} (${suggestRequests.length} suggestion requests for ${JSON.stringify(suggestRequests)})`);
  await c.keyboard.press('Enter');
  await c.waitForSelector(result(CATALOG.iu));
  check(!(await c.isVisible('[data-testid="suggestions"]')), `${name}: suggestions still shown with the results`);
  check(!(await c.isVisible('[data-testid="event-list"]')), `${name}: the event list is shown with the results`);
  check((await c.inputValue(box)) === CATALOG.iu.title, `${name}: the box says "${await c.inputValue(box)}"`);
  const first = await c.getAttribute('[data-testid="search-results"] a[data-event-id] >> nth=0', 'data-event-id');
  check(first === CATALOG.iu.eventId, `${name}: the best result is ${first}, not ${CATALOG.iu.eventId}`);
  const href = await c.getAttribute(result(CATALOG.iu), 'href');
  check(href === `/?event=${CATALOG.iu.eventId}`, `${name}: the result links to ${href}`);
  const em = await c.$$eval(`${result(CATALOG.iu)} em`, (els) => els.map((e) => e.textContent));
  check(em.length > 0 && em.join('').length > 0, `${name}: no highlight in the result's title: ${JSON.stringify(em)}`);
  // The server's text is shown as text: its escaped "<HEREH>" is no element.
  const iuResult = `[data-testid="search-result"]:has(a[data-event-id="${CATALOG.iu.eventId}"])`;
  const snippet = await c.textContent(`${iuResult} .snippet`);
  check(snippet.includes('<HEREH>') && snippet.includes('&'), `${name}: the description reads "${snippet}"`);
  check((await count('[data-testid="search-results"] hereh')) === 0, `${name}: server text became an element`);
  log(`${name}: picked by keyboard; results show "${await c.textContent(result(CATALOG.iu))}" (highlighted ${JSON.stringify(em)}), "${snippet}"`);
  if (SCREENSHOT_DIR) await c.screenshot({ path: `${SCREENSHOT_DIR}/search-results.png`, fullPage: true });

  // Clearing the box shows the list again, as it was.
  await c.fill(box, '');
  await c.waitForSelector('[data-testid="event-list"]:visible');
  check(!(await c.isVisible('[data-testid="search-results"]')), `${name}: results still shown after clearing the box`);
  check((await count(links)) === CATALOG.eventCount, `${name}: ${await count(links)} events listed after clearing the box`);
  log(`${name}: clearing the box shows the list again`);

  // Chosung suggest the title too; a click picks it.
  await c.click(box);
  await c.keyboard.type('ㅁㅈㅋ', { delay: 40 });
  await c.click(option(CATALOG.musical));
  await c.waitForSelector(result(CATALOG.musical));
  check(!(await c.isVisible('[data-testid="event-list"]')), `${name}: the event list is shown with the results`);
  log(`${name}: "ㅁㅈㅋ" suggested "${CATALOG.musical.title}"; clicked, it is in the results`);

  // A word and the Search button, no suggestion picked.
  await c.fill(box, '레미제라블');
  await c.click('[data-testid="search-submit"]');
  await c.waitForFunction(
    (text) =>
      /match.*“레미제라블”/.test(document.querySelector('[data-testid="search-summary"]').textContent) &&
      [...document.querySelectorAll('[data-testid="search-results"] em')].some((e) => e.textContent === text),
    '레미제라블',
    { timeout: STEP_MS },
  );
  await c.waitForSelector(result(CATALOG.musical));
  const summary = await c.textContent('[data-testid="search-summary"]');
  log(`${name}: "레미제라블" searched with the button: "${summary}"`);

  // A result opens the event's seat map.
  await c.click(result(CATALOG.musical));
  await c.waitForURL(`${BASE}/?event=${CATALOG.musical.eventId}`);
  await c.waitForFunction((title) => document.querySelector('[data-testid="event-title"]').textContent === title, CATALOG.musical.title, { timeout: STEP_MS });
  await c.waitForSelector('#live[data-live="on"]');
  const titleGlyphs = await ownGlyphs(c, '[data-testid="event-title"]', '뮤지컬레미제라블');
  check(titleGlyphs.distinct === titleGlyphs.chars && titleGlyphs.tofu === 0, `${name}: the title's Hangul renders as boxes: ${JSON.stringify(titleGlyphs)}`);
  log(`${name}: the result opened "${CATALOG.musical.title}"`);
}

async function main() {
  const problems = [];
  const browser = await chromium.launch({
    executablePath: EXECUTABLE,
    headless: true,
    timeout: 30_000,
    // Root in a container: no user namespaces for the sandbox; /dev/shm may be tiny.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  const pages = {};
  try {
    log(`chromium ${browser.version()}`);
    for (const room of WAITING_ROOMS) await waitingRoom(browser, problems, pages, room);

    const a = await openPage(browser, 'A', problems);
    const b = await openPage(browser, 'B', problems);
    Object.assign(pages, { a, b });

    // B first mistypes the password: the API's 401 is shown on the page.
    await b.fill('[data-testid="email"]', env('BUYER_B_EMAIL'));
    await b.fill('[data-testid="password"]', 'not the password');
    await b.click('[data-testid="login"]');
    await b.waitForSelector('[data-testid="message"]:visible');
    const failed = await b.textContent('[data-testid="message"]');
    check(/Log-in failed: 401/.test(failed), `B: log-in error shown as "${failed}"`);
    log(`B: wrong password shows "${failed}"`);

    // A seller with two-factor sign-in: the password alone makes the page ask for the
    // code; with the code it logs in. Then the page logs out for B.
    const code = b.locator('[data-testid="code"]');
    check(await code.isHidden(), 'B: the code field is shown before the server asked for it');
    await b.fill('[data-testid="email"]', env('SELLER_EMAIL'));
    await b.fill('[data-testid="password"]', env('SELLER_PASSWORD'));
    await b.click('[data-testid="login"]');
    await b.waitForSelector('[data-testid="code"]:visible', { timeout: STEP_MS });
    const asked = await b.textContent('[data-testid="message"]');
    check(/two-factor/.test(asked), `seller: the page asks "${asked}"`);
    await b.fill('[data-testid="code"]', sellerCode());
    await logIn(b, 'seller (with a two-factor code)', env('SELLER_EMAIL'), env('SELLER_PASSWORD'));
    check(await code.isHidden(), 'B: the code field stays after the log-in');
    await b.click('[data-testid="logout"]');
    await b.waitForSelector('[data-testid="login-form"]:visible', { timeout: STEP_MS });
    await logIn(b, 'B', env('BUYER_B_EMAIL'), env('BUYER_B_PASSWORD'));
    await logIn(a, 'A', env('BUYER_A_EMAIL'), env('BUYER_A_PASSWORD'));

    // A selects a seat and holds it; B must show it held within a second of A's answer.
    check((await b.getAttribute(seat(SEAT), 'data-status')) === 'AVAILABLE', 'B: seat starts AVAILABLE');
    await a.click(seat(SEAT));
    await a.waitForSelector(`${seat(SEAT)}.selected`);
    const seenOnB = await arm(b, `${seat(SEAT)}[data-status="HELD"]`, STEP_MS);
    const holdAnswer = a.waitForResponse((r) => r.url().endsWith(`/v1/events/${EVENT}/holds`) && r.request().method() === 'POST');
    const clicked = Date.now();
    await a.click('[data-testid="hold"]');
    const answer = await holdAnswer;
    const answered = Date.now();
    check(answer.status() === 201, `A: hold answered ${answer.status()} ${await answer.text()}`);
    const seen = await seenOnB();
    const latency = Math.max(0, seen - answered);
    log(`hold: A's answer ${answered - clicked} ms after the click; B showed HELD ${seen - answered} ms after A's answer`);
    console.log(`HOLD_TO_OTHER_PAGE_MS=${latency}`);
    check(latency <= LIVE_MS, `B showed the hold ${latency} ms after A's answer (limit ${LIVE_MS} ms)`);
    await a.waitForSelector(`${seat(SEAT)}[data-status="HELD"][data-mine="true"]`);
    if (SCREENSHOT_DIR) {
      await a.screenshot({ path: `${SCREENSHOT_DIR}/seatmap-a-held.png` });
      await b.screenshot({ path: `${SCREENSHOT_DIR}/seatmap-b-held.png` });
    }
    check((await b.getAttribute(seat(SEAT), 'data-mine')) === null, 'B: the seat is not marked as B\'s');

    // A held seat cannot be picked on B.
    await b.click(seat(SEAT), { force: true });
    check((await b.locator(`${seat(SEAT)}.selected`).count()) === 0, 'B: a held seat got selected');

    // A checks out with the wallet and watches the booking go PENDING_PAYMENT → CONFIRMED.
    await a.evaluate((timeout) => {
      window.__statuses = new Promise((resolve, reject) => {
          const el = document.querySelector('[data-testid="booking-status"]');
          const seen = [];
          const observer = new MutationObserver(() => {
            const text = el.textContent;
            if (text && seen[seen.length - 1] !== text) seen.push(text);
            if (text === 'CONFIRMED' || text === 'CANCELLED') {
              observer.disconnect();
              clearTimeout(timer);
              resolve(seen);
            }
          });
          const timer = setTimeout(() => {
            observer.disconnect();
            reject(new Error(`booking status stuck: ${JSON.stringify(seen)}`));
          }, timeout);
          observer.observe(el, { subtree: true, childList: true, characterData: true });
      });
    }, CONFIRM_MS);
    const bookingAnswer = a.waitForResponse((r) => r.url().endsWith('/v1/bookings') && r.request().method() === 'POST');
    await a.click('[data-testid="checkout"]');
    const booked = await bookingAnswer;
    const bookedBody = await booked.json();
    check(booked.status() === 202, `A: checkout answered ${booked.status()} ${JSON.stringify(bookedBody)}`);
    check(bookedBody.status === 'PENDING_PAYMENT', `A: checkout answered ${bookedBody.status}`);
    check(Boolean(booked.request().headers()['idempotency-key']), 'A: checkout sent no Idempotency-Key');
    const sequence = await a.evaluate(() => window.__statuses);
    log(`A: booking ${bookedBody.bookingId} went ${sequence.join(' → ')}`);
    check(sequence[0] === 'PENDING_PAYMENT', `A: first status shown ${sequence[0]}`);
    check(sequence[sequence.length - 1] === 'CONFIRMED', `A: booking ended ${sequence[sequence.length - 1]}`);
    check(await a.isVisible('[data-testid="booking-status"]'), 'A: booking status is not visible');

    // B sees the seat sold; A's wallet shows the charge.
    await whenSeen(b, `${seat(SEAT)}[data-status="SOLD"]`, STEP_MS);
    await whenSeen(a, `${seat(SEAT)}[data-status="SOLD"]`, STEP_MS);
    log('B: seat SOLD');
    await a.waitForFunction(
      (text) => document.querySelector('[data-testid="balance"]').textContent.includes(text),
      won(WALLET - PRICE),
      { timeout: STEP_MS },
    );
    log(`A: wallet now ${await a.textContent('[data-testid="balance"]')}`);

    // A selects a second seat, B holds it first: A's selection drops it with a message.
    await a.click(seat(SEAT2));
    await a.waitForSelector(`${seat(SEAT2)}.selected`);
    await b.click(seat(SEAT2));
    await b.waitForSelector(`${seat(SEAT2)}.selected`);
    await b.click('[data-testid="hold"]');
    await b.waitForSelector(`${seat(SEAT2)}[data-mine="true"]`);
    await whenSeen(a, `${seat(SEAT2)}[data-status="HELD"]:not(.selected)`, LIVE_MS * 2);
    const taken = await a.textContent('[data-testid="message"]');
    check(/just taken/.test(taken) && (await a.isVisible('[data-testid="message"]')), `A: message "${taken}"`);
    check(await a.isDisabled('[data-testid="hold"]'), 'A: hold button enabled with nothing selected');
    log(`A: "${taken}"`);
    // B releases it; A sees it free again.
    await b.click('[data-testid="release"]');
    await whenSeen(a, `${seat(SEAT2)}[data-status="AVAILABLE"]`, LIVE_MS * 2);
    log('B released the second seat; A shows it AVAILABLE');

    // B buys it with the sandbox's approving test card: the booking confirms, A sees the
    // seat sold, and B's wallet is untouched.
    await b.click(seat(SEAT2));
    await b.waitForSelector(`${seat(SEAT2)}.selected`);
    await b.click('[data-testid="hold"]');
    await b.waitForSelector(`${seat(SEAT2)}[data-mine="true"]`);
    await b.selectOption('[data-testid="payment"]', 'tok_approve');
    const cardAnswer = b.waitForResponse((r) => r.url().endsWith('/v1/bookings') && r.request().method() === 'POST');
    await b.click('[data-testid="checkout"]');
    const carded = await cardAnswer;
    const cardBody = await carded.json();
    check(carded.status() === 202 && cardBody.paymentMethod === 'CARD', `B: card checkout answered ${carded.status()} ${JSON.stringify(cardBody)}`);
    check(carded.request().postDataJSON().cardToken === 'tok_approve', 'B: the card token was not sent');
    await whenSeen(b, '[data-testid="booking-status"][data-status="CONFIRMED"]', CONFIRM_MS);
    await whenSeen(a, `${seat(SEAT2)}[data-status="SOLD"]`, LIVE_MS * 2);
    const paid = await b.textContent('[data-testid="message"]');
    check(/paid by card/.test(paid), `B: message "${paid}"`);
    check((await b.textContent('[data-testid="balance"]')).includes(won(WALLET)), 'B: the wallet was charged for a card payment');
    log(`B: paid by card; "${paid}"`);

    await catalog(browser, problems, pages);

    check(problems.length === 0, `page problems:\n${problems.join('\n')}`);
  } finally {
    if (SCREENSHOT_DIR) {
      for (const [name, page] of Object.entries(pages)) {
        await page.screenshot({ path: `${SCREENSHOT_DIR}/seatmap-${name}.png`, fullPage: true, timeout: STEP_MS }).catch(() => {});
      }
    }
    await browser.close().catch(() => {});
  }
}

main()
  .then(() => {
    clearTimeout(watchdog);
    log('ok');
    process.exit(0);
  })
  .catch((error) => {
    console.error(error && error.stack ? error.stack : String(error));
    process.exit(1);
  });
