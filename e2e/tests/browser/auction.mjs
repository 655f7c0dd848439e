// The reference page's auction panel (issue 14) in headless Debian chromium, driven by
// playwright-core. Run by e2e/tests/browser.rs, which starts the system, makes an event
// whose first two seats a seller auctions (opening ₩10,000, raise ₩1,000, closing in an
// hour) and passes (env):
//   BASE_URL, EVENT_ID, SEAT_COUNT (the event's seats), AUCTION: {auctionId, seats:
//   [{section, row, number}] (the auctioned seats, best first)}, BUYER_EMAIL and
//   BUYER_PASSWORD (the page's buyer), OTHER_TOKEN (another buyer, bidding through
//   REST), WALLET_START, CHROMIUM (default /usr/bin/chromium), optionally SCREENSHOT_DIR.
// The page's buyer bids on the page and sees their bid ranked 1 ("you"); the other
// buyer outbids them through REST and the page, not reloaded and reading nothing,
// shows the new leader over the live stream. A second page, logged out, whose stream
// request is refused (501), shows it too, by reading the auction every 2 s. Then the script prints CLOSE and waits for
// a line on stdin: the test closes the auction (moves its close to now) and answers.
// The page shows the buyer's award (the second seat, at their bid) and pays it from the
// wallet: the booking confirms and the award shows paid.
// Exits 0 when every check passed, 1 with the reason otherwise. Every wait is bounded.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env('BASE_URL');
const EVENT = env('EVENT_ID');
const SEAT_COUNT = Number(env('SEAT_COUNT'));
const AUCTION = JSON.parse(env('AUCTION'));
const EMAIL = env('BUYER_EMAIL');
const PASSWORD = env('BUYER_PASSWORD');
const OTHER_TOKEN = env('OTHER_TOKEN');
const WALLET = Number(env('WALLET_START'));
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR;
const STEP_MS = 10_000; // default bound of every wait
const LIVE_MS = 2_000; // another buyer's bid shows on the page within this, over the stream
const POLL_MS = 2_000; // without its stream the page reads the auction this often (app.js)
const CLOSE_MS = 10_000; // the test moves the close to now: booking-svc closes within a tick
const CONFIRM_MS = 20_000; // the payment saga runs through RabbitMQ
const WATCHDOG_MS = 120_000;

const watchdog = setTimeout(() => {
  console.error(`auction.mjs: still running after ${WATCHDOG_MS} ms, giving up`);
  process.exit(2);
}, WATCHDOG_MS);

const started = Date.now();
const log = (...args) => console.log(`[${String(Date.now() - started).padStart(5)} ms]`, ...args);
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}
const won = (n) => `₩${n.toLocaleString('en-US')}`;
const row = (rank) => `[data-testid="auction-row"][data-rank="${rank}"]`;
/** What `selector` shows (innerText: a table's cells come apart), its spaces collapsed. */
const text = async (page, selector) => ((await page.innerText(selector)) || '').replace(/\s+/g, ' ').trim();

/** A REST call as the other buyer, outside the browser (bounded): { status, body }. */
async function rest(method, path, token, body) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const raw = await response.text();
  let json = null;
  try {
    json = raw ? JSON.parse(raw) : null;
  } catch {
    json = raw;
  }
  return { status: response.status, body: json };
}

/** Waits until `selector`'s text matches `pattern` (bounded); returns the text. */
async function textMatches(page, selector, pattern, timeout = STEP_MS) {
  try {
    await page.waitForFunction(
      ([selector, source, flags]) => {
        const el = document.querySelector(selector);
        return Boolean(el) && new RegExp(source, flags).test(el.innerText.replace(/\s+/g, ' '));
      },
      [selector, pattern.source, pattern.flags],
      { timeout },
    );
  } catch (error) {
    throw new Error(`${selector} never matched ${pattern}: "${await text(page, selector).catch(() => '?')}" (${error.message})`);
  }
  return text(page, selector);
}

/** The next line on stdin (the test's answer), bounded. */
function answer(lines, timeout) {
  return Promise.race([
    lines.next().then((next) => (next.done ? Promise.reject(new Error('stdin closed')) : next.value)),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer on stdin within ${timeout} ms`)), timeout)),
  ]);
}

/** A new page of its own (own session storage), its uncaught errors and CSP refusals kept in `problems`. */
async function newPage(browser, name, problems) {
  const context = await browser.newContext({ locale: 'en-US', timezoneId: 'Asia/Seoul' });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) {
      problems.push(`${name}: ${message.text()}`);
    }
  });
  return page;
}

async function main() {
  const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const browser = await chromium.launch({ executablePath: EXECUTABLE, args: ['--no-sandbox'] });
  const problems = [];
  const pages = {};
  try {
    const page = await newPage(browser, 'buyer', problems);
    pages.buyer = page;
    // Every read of the auction the page makes (its stream aside).
    const reads = [];
    const auctionPath = `/v1/auctions/${AUCTION.auctionId}`;
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.pathname === auctionPath && request.method() === 'GET') reads.push(Date.now());
    });

    const response = await page.goto(`${BASE}/?event=${encodeURIComponent(EVENT)}`);
    check(response && response.status() === 200, `GET /?event= answered ${response && response.status()}`);
    await page.waitForSelector('#live[data-live="on"]');
    const drawn = await page.locator('#seatmap [data-seat-id]').count();
    check(drawn === SEAT_COUNT, `${drawn} seats drawn, expected ${SEAT_COUNT}`);

    // Logged out: the panel shows the auction, and bidding needs a log-in.
    await page.waitForSelector('[data-testid="auction"]:visible');
    await page.waitForSelector('#auction[data-via="stream"]');
    const status = await textMatches(page, '[data-testid="auction-status"]', /^Open: .* left to bid/);
    const seats = await text(page, '[data-testid="auction-seats"]');
    for (const s of AUCTION.seats) {
      const label = `${s.section} ${s.row}-${s.number}`;
      check(seats.includes(label), `the panel's seats "${seats}" miss ${label}`);
    }
    check((await text(page, '[data-testid="auction-opening"]')).startsWith(won(10_000)), 'opening price not shown');
    check(/none yet/.test(await text(page, '[data-testid="auction-cutoff"]')), 'a cut-off shown before any bid');
    check((await text(page, '[data-testid="auction-bidders"]')) === '0', 'bidders shown before any bid');
    check(/No bids yet/.test(await text(page, '#auction-ranking tbody')), 'the ranking is not empty before any bid');
    check(/Log in to bid/.test(await text(page, '[data-testid="auction-mine"]')), 'no "Log in to bid" while logged out');
    check(await page.isDisabled('[data-testid="bid"]'), 'Bid enabled while logged out');
    log(`panel shown: "${status}"; "${seats}"`);

    // Logged in: three submissions, Bid enabled.
    await page.fill('[data-testid="email"]', EMAIL);
    await page.fill('[data-testid="password"]', PASSWORD);
    await page.click('[data-testid="login"]');
    await textMatches(page, '[data-testid="balance"]', new RegExp(won(WALLET)));
    await page.waitForSelector('[data-testid="bid"]:enabled');
    const fresh = await textMatches(page, '[data-testid="auction-mine"]', /not bid yet \(3 submissions left\)/);
    log(`logged in: "${fresh}"`);

    // Below the opening price: the server's reason shows, and the submission does not count.
    await page.fill('[data-testid="bid-amount"]', '5000');
    const refusedAnswer = page.waitForResponse((r) => r.url().endsWith(`${auctionPath}/bids`));
    await page.click('[data-testid="bid"]');
    const refused = await refusedAnswer;
    const refusedBody = await refused.json();
    check(refused.status() === 400, `a bid below the opening price answered ${refused.status()}`);
    const message = await textMatches(page, '[data-testid="message"]', /^Bid refused: /);
    check(message.includes(refusedBody.message), `message "${message}" lacks the server's "${refusedBody.message}"`);
    check(await page.isVisible('[data-testid="message"]'), 'the refusal is not visible');
    check(/3 submissions left/.test(await text(page, '[data-testid="auction-mine"]')), 'a refused bid counted');
    log(`refused: "${message}"`);

    // The page's bid: ranked 1, marked "you".
    await page.fill('[data-testid="bid-amount"]', '15000');
    const bidAnswer = page.waitForResponse((r) => r.url().endsWith(`${auctionPath}/bids`));
    await page.click('[data-testid="bid"]');
    const placed = await bidAnswer;
    const placedBody = await placed.json();
    check(placed.status() === 201, `the page's bid answered ${placed.status()} ${JSON.stringify(placedBody)}`);
    check(placed.request().postDataJSON().amount.amountMinor === '15000', 'the bid sent another amount');
    await page.waitForSelector(`${row(1)}[data-mine="true"]`);
    const first = await text(page, row(1));
    check(/\byou\b/.test(first) && first.includes(won(15_000)), `rank 1 shows "${first}"`);
    const mine = await textMatches(page, '[data-testid="auction-mine"]', /rank 1\b.*2 submissions left/);
    check(mine.includes(won(15_000)), `the buyer's bid shows as "${mine}"`);
    check((await text(page, '[data-testid="auction-bidders"]')) === '1', 'bidders after the first bid');
    const me = placedBody.bid.bidder;
    // The page's read of the auction after its bid is over.
    await page.waitForSelector('[data-testid="bid"]:enabled');
    log(`bid ${won(15_000)}: rank 1 "${first}"; "${mine}"`);

    // A second page, logged out, its stream refused: it polls, and shows the bid.
    const poller = await newPage(browser, 'poller', problems);
    pages.poller = poller;
    await poller.route('**/v1/auctions/*:watch*', (route) =>
      route.fulfill({ status: 501, contentType: 'application/json', body: '{"code":"UNIMPLEMENTED","message":"not served"}' }),
    );
    await poller.goto(`${BASE}/?event=${encodeURIComponent(EVENT)}`);
    await poller.waitForSelector('#auction[data-via="poll"]');
    await textMatches(poller, row(1), new RegExp(`${me}.*${won(15_000)}`));
    check(!(await poller.isVisible('[data-testid="auction-row"][data-mine="true"]')), 'poller: a row marked "you" while logged out');
    log('poller: stream refused, polling; shows the bid at rank 1');

    // Another buyer outbids through REST: the page shows it live, from the stream only.
    await page.evaluate(() => {
      window.__sameDocument = true;
    });
    const readsBefore = reads.length;
    const outbid = await rest('POST', `${auctionPath}/bids`, OTHER_TOKEN, {
      amount: { amountMinor: '20000', currency: 'KRW' },
    });
    check(outbid.status === 201, `the other buyer's bid answered ${outbid.status} ${JSON.stringify(outbid.body)}`);
    const bidAt = Date.now();
    const leader = outbid.body.bid.bidder;
    check(leader !== me, 'the two buyers have the same pseudonym');
    await page.waitForSelector(`${row(2)}[data-mine="true"]`, { timeout: LIVE_MS });
    const shownAfter = Date.now() - bidAt;
    const top = await text(page, row(1));
    const second = await text(page, row(2));
    check(top.includes(leader) && top.includes(won(20_000)) && !/\byou\b/.test(top), `rank 1 shows "${top}"`);
    check(second.includes(me) && /\byou\b/.test(second) && second.includes(won(15_000)), `rank 2 shows "${second}"`);
    check(!(await page.isVisible(`${row(1)}[data-mine="true"]`)), 'rank 1 is still marked as the buyer');
    await textMatches(page, '[data-testid="auction-mine"]', /rank 2\b/);
    check((await text(page, '[data-testid="auction-bidders"]')) === '2', 'bidders after the second bid');
    const cutoff = await text(page, '[data-testid="auction-cutoff"]');
    check(cutoff.startsWith(won(15_000)), `cut-off "${cutoff}" with two bids for two seats`);
    check(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
    check(reads.length === readsBefore, `the page read the auction ${reads.length - readsBefore} times instead of following its stream`);
    check((await page.getAttribute('#auction', 'data-via')) === 'stream', 'the auction was not followed over its stream');
    log(`outbid: shown ${shownAfter} ms after the REST bid: 1 "${top}", 2 "${second}"; cut-off "${cutoff}"`);
    console.log(`OUTBID_SHOWN_AFTER_MS=${shownAfter}`);
    await textMatches(poller, row(1), new RegExp(`${leader}.*${won(20_000)}`), POLL_MS * 2);
    await textMatches(poller, row(2), new RegExp(`${me}.*${won(15_000)}`));
    check((await poller.getAttribute('#auction', 'data-via')) === 'poll', 'poller: the auction was not polled');
    log(`poller: shows the outbid ${Date.now() - bidAt} ms after the REST bid`);

    // The close: the test moves it to now. The buyer, second, wins the second seat.
    console.log('CLOSE');
    check((await answer(stdin, STEP_MS)).trim() === 'closed', 'the test did not close the auction');
    await page.waitForSelector('#auction[data-state="AUCTION_STATE_CLOSED"]', { timeout: CLOSE_MS });
    await textMatches(page, '[data-testid="auction-status"]', /^Closed at /);
    check(await page.isHidden('[data-testid="bid-form"]'), 'the bid form is still shown after the close');
    await page.waitForSelector('#award[data-state="AWARD_STATE_AWAITING_PAYMENT"]', { timeout: CLOSE_MS });
    const second_seat = AUCTION.seats[1];
    const award = await text(page, '[data-testid="award-info"]');
    check(
      award.includes(`${second_seat.section} ${second_seat.row}-${second_seat.number}`) && award.includes(won(15_000)),
      `the award shows as "${award}"`,
    );
    check(/awaiting your payment · pay by .* left/.test(award), `the award's state and pay-by time: "${award}"`);
    check(await page.isVisible('[data-testid="award-decline"]'), 'no Decline button while the award awaits payment');
    log(`closed: "${award}"`);

    // Pay (wallet): the booking confirms and the award shows paid.
    const payAnswer = page.waitForResponse((r) => r.url().endsWith(`${auctionPath}/award:pay`));
    await page.click('[data-testid="award-pay"]');
    const pay = await payAnswer;
    const payBody = await pay.json();
    check(pay.status() === 202, `pay answered ${pay.status()} ${JSON.stringify(payBody)}`);
    check(Boolean(pay.request().headers()['idempotency-key']), 'pay sent no Idempotency-Key');
    await page.waitForSelector('[data-testid="booking-status"][data-status="CONFIRMED"]', { timeout: CONFIRM_MS });
    await page.waitForSelector('#award[data-state="AWARD_STATE_PAID"]', { timeout: STEP_MS });
    check(await page.isHidden('[data-testid="award-pay"]'), 'Pay still shown after the payment');
    await textMatches(page, '[data-testid="balance"]', new RegExp(won(WALLET - 15_000)));
    log(`paid: booking ${payBody.booking.bookingId}; "${await text(page, '[data-testid="award-info"]')}"`);

    check(problems.length === 0, `page problems:\n${problems.join('\n')}`);
  } finally {
    if (SCREENSHOT_DIR) {
      for (const [name, page] of Object.entries(pages)) {
        await page.screenshot({ path: `${SCREENSHOT_DIR}/auction-${name}.png`, fullPage: true, timeout: STEP_MS }).catch(() => {});
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
