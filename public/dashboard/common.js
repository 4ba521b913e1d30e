// What the overview (dashboard.js) and the customer page (customer.js) both use.
export const $ = (selector) => document.querySelector(selector);

export function formatMs(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

export function ago(iso) {
  if (!iso) return 'never';
  return `${formatMs(Date.now() - Date.parse(iso))} ago`;
}

export function cell(content, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? '';
  return td;
}

/** The address of a customer's page on this dashboard. */
export const customerHref = (customerId) => `#/customers/${customerId}`;

/** A customer's name (or that it was deleted) and id, linking to its page. */
export function customerCell(delivery) {
  const wrapper = document.createElement('a');
  wrapper.href = customerHref(delivery.customer_id);
  wrapper.className = 'customer-link';
  const name = document.createElement('div');
  // A deleted customer's name is erased: say so rather than show nothing.
  name.textContent = delivery.customer_deleted ? '(deleted customer)' : delivery.customer_name;
  const id = document.createElement('div');
  id.className = 'id';
  id.textContent = delivery.customer_id;
  wrapper.append(name, id);
  return wrapper;
}

/** What the latest attempt asked of Inventory, at which customer version, and how it ended. */
export function operationText(delivery) {
  const operation = delivery.operation ?? (delivery.customer_deleted ? 'cancel' : 'create');
  const outcome = delivery.outcome ? ` · ${delivery.outcome.replace('_', ' ')}` : '';
  return `${operation} v${delivery.customer_version}${outcome}`;
}

/** How each delivery state reads, from the service's one list of states. */
let stateLabels = {};
export function setStateLabels(states) {
  stateLabels = Object.fromEntries(states.map(({ state, label }) => [state, label]));
}

export function stateBadge(state) {
  const span = document.createElement('span');
  span.className = `state ${state}`;
  span.textContent = stateLabels[state] ?? state;
  return span;
}

export function toast(message) {
  const element = $('#toast');
  element.textContent = message;
  element.classList.add('show');
  setTimeout(() => element.classList.remove('show'), 2500);
}

/** GETs or POSTs JSON; a refusal throws with the service's own explanation. */
export async function call(path, method = 'GET') {
  const response = await fetch(path, { method });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ?? `HTTP ${response.status}`);
  return body;
}
export const post = (path) => call(path, 'POST');
