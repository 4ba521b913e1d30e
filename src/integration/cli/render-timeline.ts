import type { Timeline, TimelineEntry } from '../../contracts/timeline.js';
import { oneLine } from './render.js';

/** What one entry says, in words: the event, the attempt or the action, and what became of it. */
function describeEntry(entry: TimelineEntry): string {
  const version = entry.version === null ? '' : ` v${entry.version}`;
  if (entry.kind === 'event') {
    const via = [entry.source, entry.message_id && `message ${entry.message_id}`]
      .filter(Boolean)
      .join(', ');
    return `received ${entry.event_type ?? 'event'}${version} (${via}): ${entry.result}`;
  }
  if (entry.kind === 'action') {
    return `${entry.action ?? 'action'} by ${entry.source ?? 'an operator'} on ${entry.instance ?? '?'}`;
  }
  const what = entry.operation ? `${entry.operation}${version}` : `nothing to ask${version}`;
  const result =
    entry.result === 'delivered' && entry.outcome ? `delivered (${entry.outcome})` : entry.result;
  const failure = entry.error
    ? ` — ${entry.status === null ? '' : `${entry.status} `}${oneLine(entry.error)}`
    : '';
  const details = [
    entry.duration_ms === null ? undefined : `${entry.duration_ms} ms`,
    entry.trace_id && `trace ${entry.trace_id}`,
    entry.instance && `on ${entry.instance}`,
  ].filter(Boolean);
  return `attempt ${what}: ${result}${failure}${details.length > 0 ? ` (${details.join(', ')})` : ''}`;
}

/** `mip trace`: where the customer stands, then its timeline, one line per entry. */
export function formatTimeline(timeline: Timeline): string {
  const { delivery } = timeline;
  const lines = [`Customer ${timeline.customer_id}`];
  if (delivery) {
    const who = delivery.customer_deleted ? '(deleted)' : oneLine(delivery.customer_name);
    const done = delivery.outcome ? ` (${delivery.outcome})` : '';
    lines.push(
      `  ${who}, version ${delivery.customer_version}: ${delivery.state}${done}` +
        (delivery.package_request_id ? `, package request ${delivery.package_request_id}` : ''),
    );
    if (delivery.last_error) lines.push(`  last error: ${oneLine(delivery.last_error)}`);
  } else {
    lines.push('  no delivery recorded');
  }
  if (timeline.entries.length === 0) {
    lines.push('No timeline entries (older ones are swept after the retention period).');
    return lines.join('\n');
  }
  for (const entry of timeline.entries) lines.push(`${entry.at}  ${describeEntry(entry)}`);
  return lines.join('\n');
}
