// The dashboard polls /api/dashboard every two seconds and redraws; no build step, no framework.
import {
  $,
  ago,
  cell,
  customerCell,
  formatMs,
  operationText,
  post,
  setStateLabels,
  stateBadge,
  toast,
} from './common.js';
import { customerOfAddress, renderCustomer, wireCustomerPage } from './customer.js';

const REFRESH_MS = 2000;

function text(selector, value) {
  $(selector).textContent = value;
}

function pill(textContent, tone, title) {
  const span = document.createElement('span');
  span.className = `pill ${tone}`;
  span.textContent = textContent;
  if (title) span.title = title;
  return span;
}

/** The feed's pill: time since its last read, warning after an error, bad when stalled. */
function feedPill(name, poll) {
  const label = name === 'reconcile' ? 'reconciliation' : 'poll';
  if (poll.stalled) return pill(`${label} stalled · last ok ${ago(poll.last_success_at)}`, 'bad');
  const failedSince =
    poll.last_error_at && Date.parse(poll.last_error_at) > Date.parse(poll.last_success_at ?? 0);
  return pill(
    `last ${label} ${ago(poll.last_success_at)}`,
    failedSince ? 'warn' : 'good',
    poll.last_error ?? 'Time since the last successful read of the CRM feed',
  );
}

/** One pill per source the mode runs, as /api/status lists them. */
function sourcePill(source) {
  const { name, details } = source;
  if (!source.ready) return pill(`${name}: ${source.problem}`, 'bad');
  if (name === 'poll' || name === 'reconcile') return feedPill(name, details);
  if (name === 'webhook') {
    return details.registered
      ? pill('webhook registered', 'good', details.url)
      : pill('webhook not registered yet', 'warn', details.last_error);
  }
  if (name === 'amqp') {
    if (!details.subscribed) {
      return pill(details.connected ? 'amqp not subscribed yet' : 'amqp disconnected', 'warn');
    }
    return details.dead_lettered
      ? pill(
          `amqp consuming · ${details.dead_lettered} in RabbitMQ's dead-letter queue`,
          'warn',
          'Messages RabbitMQ dead-lettered: not customer events, or refused for hours',
        )
      : pill('amqp consuming', 'good');
  }
  return pill(`${name} ok`, 'good');
}

function drawChart(points) {
  const svg = $('#chart');
  const width = 600;
  const height = 120;
  const max = Math.max(1, ...points.map((p) => p.delivered));
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const coords = points.map((p, i) => [i * step, height - 6 - (p.delivered / max) * (height - 12)]);
  const line = coords
    .map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${x.toFixed(1)},${y.toFixed(1)}`)
    .join(' ');
  const area = `${line} L${width},${height} L0,${height} Z`;
  svg.innerHTML = `<path class="area" d="${area}"></path><path class="line" d="${line}"></path>`;
  svg.setAttribute('aria-label', `Deliveries per 10 s, peak ${max}`);
}

/** True when the caller's token may replay (`access` is `read` for API_READ_TOKEN). */
let canReplay = false;

function renderDeadLetters(letters) {
  const body = $('#dead-table tbody');
  body.replaceChildren(
    ...letters.map((letter) => {
      const row = document.createElement('tr');
      const button = document.createElement('button');
      button.textContent = 'Replay';
      button.dataset.customerId = letter.customer_id;
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          await post(`/api/dead-letters/${letter.customer_id}/replay`);
          toast(`Replaying ${letter.customer_name || letter.customer_id}`);
        } catch (error) {
          toast(`Replay failed: ${error.message}`);
        }
        refresh();
      });
      row.append(
        cell(customerCell(letter)),
        cell(operationText(letter)),
        cell(String(letter.attempts)),
        cell(letter.last_error ?? '', 'error'),
        cell(ago(letter.failing_since)),
        cell(canReplay ? button : ''),
      );
      return row;
    }),
  );
  $('#dead-table').hidden = letters.length === 0;
  $('#dead-empty').hidden = letters.length > 0;
  $('#replay-all').disabled = letters.length === 0;
  $('#replay-all').hidden = !canReplay;
}

function renderRecent(deliveries) {
  $('#recent-table tbody').replaceChildren(
    ...deliveries.map((delivery) => {
      const row = document.createElement('tr');
      row.dataset.customerId = delivery.customer_id;
      row.append(
        cell(customerCell(delivery)),
        cell(stateBadge(delivery.state)),
        cell(operationText(delivery)),
        cell(String(delivery.attempts)),
        cell(delivery.source),
        cell(delivery.last_error ?? '', 'error'),
        cell(ago(delivery.updated_at)),
      );
      return row;
    }),
  );
}

function render(data) {
  const { status, lag, throughput } = data;
  setStateLabels(data.states);
  canReplay = data.access === 'admin';
  $('#read-only').hidden = canReplay;
  const counts = status.deliveries;
  const seen = Object.values(counts).reduce((a, b) => a + b, 0);
  text('#count-seen', seen);
  text('#count-delivered', counts.delivered);
  text('#count-pending', counts.pending + counts.delivering);
  text('#count-retrying', counts.retrying);
  text('#count-dead', counts.dead);
  text('#lag-p50', formatMs(lag.p50_ms));
  text('#lag-p99', formatMs(lag.p99_ms));
  text('#window', `last ${lag.window_minutes} minutes · ${lag.count} deliveries`);

  text('#mode', `mode ${status.mode}`);
  const circuit = $('#circuit');
  circuit.textContent = `circuit ${status.circuit.replace('_', '-')}`;
  circuit.className = `pill ${status.circuit === 'closed' ? 'good' : status.circuit === 'open' ? 'bad' : 'warn'}`;
  $('#sources').replaceChildren(...status.sources.map(sourcePill));
  // While paused nothing is sent: say since when, and how much waits.
  const paused = $('#paused');
  paused.hidden = status.paused === null;
  if (status.paused) {
    paused.textContent = `delivery paused · ${status.backlog} waiting`;
    paused.title = `Paused by ${status.paused.by ?? 'unknown'} since ${status.paused.since}`;
  }
  const toggle = $('#pause-toggle');
  toggle.hidden = !canReplay;
  toggle.textContent = status.paused ? 'Resume delivery' : 'Pause delivery';
  toggle.dataset.action = status.paused ? 'resume' : 'pause';
  drawChart(throughput);
  renderDeadLetters(data.dead_letters);
  renderRecent(data.recent);
  const updated = $('#updated');
  updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  updated.className = 'pill muted';
}

let timer;
async function refresh() {
  clearTimeout(timer);
  // The address says which page shows: the overview, or one customer's (#/customers/<id>).
  const customerId = customerOfAddress();
  $('#overview').hidden = customerId !== undefined;
  $('#customer-page').hidden = customerId === undefined;
  try {
    const response = await fetch('/api/dashboard');
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    if (customerId !== undefined) await renderCustomer(customerId, canReplay);
  } catch (error) {
    const updated = $('#updated');
    updated.textContent = `cannot reach the service (${error.message})`;
    updated.className = 'pill bad';
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

$('#replay-all').addEventListener('click', async () => {
  $('#replay-all').disabled = true;
  try {
    const { replayed } = await post('/api/dead-letters/replay');
    toast(`Replaying ${replayed} dead letter(s)`);
  } catch (error) {
    toast(`Replay failed: ${error.message}`);
  }
  refresh();
});

$('#pause-toggle').addEventListener('click', async () => {
  const toggle = $('#pause-toggle');
  toggle.disabled = true;
  try {
    const { paused, backlog } = await post(`/api/delivery/${toggle.dataset.action}`);
    toast(
      paused ? `Delivery paused (${backlog} waiting)` : `Delivery resumed (${backlog} waiting)`,
    );
  } catch (error) {
    toast(`Could not change it: ${error.message}`);
  }
  toggle.disabled = false;
  refresh();
});

wireCustomerPage(refresh);
refresh();
