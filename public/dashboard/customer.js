// The customer page: where one customer stands and its timeline (GET /api/customers/{id}/timeline).
import { $, call, cell, customerHref, operationText, post, stateBadge, toast } from './common.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The customer id the address shows, or undefined on the overview. */
export function customerOfAddress() {
  const match = /^#\/customers\/([^/]+)$/.exec(location.hash);
  return match && UUID.test(match[1]) ? match[1].toLowerCase() : undefined;
}

/** The step an entry records, in words. */
function stepOf(entry) {
  const version = entry.version === null ? '' : ` v${entry.version}`;
  if (entry.kind === 'event') return `received ${entry.event_type}${version}`;
  if (entry.kind === 'action') return `${entry.action} by ${entry.source ?? 'an operator'}`;
  return entry.operation ? `${entry.operation}${version}` : `nothing to ask${version}`;
}

function detailsOf(entry) {
  if (entry.kind === 'event') {
    return [entry.source, entry.message_id && `message ${entry.message_id}`]
      .filter(Boolean)
      .join(' · ');
  }
  return [
    entry.error && `${entry.status ?? ''} ${entry.error}`.trim(),
    entry.duration_ms !== null && `${entry.duration_ms} ms`,
    entry.trace_id && `trace ${entry.trace_id}`,
    entry.instance && `on ${entry.instance}`,
  ]
    .filter(Boolean)
    .join(' · ');
}

function resultOf(entry) {
  const span = document.createElement('span');
  span.className = `result ${entry.result}`;
  span.textContent =
    entry.result === 'delivered' && entry.outcome
      ? `delivered · ${entry.outcome.replace('_', ' ')}`
      : entry.result;
  return span;
}

/** Reads every page of the customer's timeline. */
async function readTimeline(customerId) {
  const path = `/api/customers/${customerId}/timeline?limit=1000`;
  const timeline = await call(path);
  for (let page = timeline; page.next_after !== null;) {
    page = await call(`${path}&after=${page.next_after}`);
    timeline.entries.push(...page.entries);
  }
  return timeline;
}

/** Draws the customer page for `customerId`; `canReplay` shows the Replay button of a dead letter. */
export async function renderCustomer(customerId, canReplay) {
  $('#customer-title').textContent = `Customer ${customerId}`;
  let timeline;
  try {
    timeline = await readTimeline(customerId);
  } catch (error) {
    $('#customer-summary').replaceChildren(error.message);
    $('#timeline-table').hidden = true;
    $('#customer-replay').hidden = true;
    return;
  }
  const { delivery, entries } = timeline;
  const summary = [];
  if (delivery) {
    const name = delivery.customer_deleted ? '(deleted customer)' : delivery.customer_name;
    summary.push(`${name} · `, stateBadge(delivery.state), ` · ${operationText(delivery)}`);
    if (delivery.package_request_id) summary.push(` · package ${delivery.package_request_id}`);
    if (delivery.last_error) summary.push(` · last error: ${delivery.last_error}`);
  } else {
    summary.push('No delivery recorded.');
  }
  $('#customer-summary').replaceChildren(...summary);
  const replay = $('#customer-replay');
  replay.hidden = !(canReplay && delivery?.state === 'dead');
  replay.dataset.customerId = customerId;
  $('#timeline-table').hidden = false;
  $('#timeline-table tbody').replaceChildren(
    ...entries.map((entry) => {
      const row = document.createElement('tr');
      row.className = entry.kind;
      row.append(
        cell(new Date(entry.at).toLocaleString()),
        cell(stepOf(entry)),
        cell(resultOf(entry)),
        cell(detailsOf(entry), entry.error ? 'error' : undefined),
      );
      return row;
    }),
  );
}

/** Wires the search box (an id opens its page; an email is looked up first) and Replay. */
export function wireCustomerPage(onChange) {
  $('#search').addEventListener('submit', async (event) => {
    event.preventDefault();
    const query = $('#search-input').value.trim();
    try {
      if (UUID.test(query)) location.hash = customerHref(query.toLowerCase());
      else if (query.includes('@')) {
        const { customer_id } = await call(
          `/api/customers/lookup?email=${encodeURIComponent(query)}`,
        );
        location.hash = customerHref(customer_id);
      } else toast('Enter a customer id or an email address.');
    } catch (error) {
      toast(error.message);
    }
  });
  $('#customer-replay').addEventListener('click', async () => {
    const button = $('#customer-replay');
    button.disabled = true;
    try {
      await post(`/api/dead-letters/${button.dataset.customerId}/replay`);
      toast('Replaying');
    } catch (error) {
      toast(`Replay failed: ${error.message}`);
    }
    button.disabled = false;
    onChange();
  });
  addEventListener('hashchange', onChange);
}
