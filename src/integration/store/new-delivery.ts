/** A customer some source reported, about to become a delivery. */
export interface NewDelivery {
  customerId: string;
  customerName: string;
  /** When the CRM created the customer, ms since the epoch (for end-to-end lag). */
  customerCreatedAt: number;
  eventId: string;
  /** `poll`, `reconcile`, `webhook` or `amqp`. */
  source: string;
  /** W3C trace context of the CRM request that created the customer, when known. */
  traceparent?: string | undefined;
}

export interface CustomerCreated {
  type: string;
  data: { id: string; name: string; created_at: string };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Reads the parts of a pushed event we rely on (webhook payload or AMQP message body: both carry
 * `type` and the customer as `data`); undefined when they are missing or malformed.
 */
export function readCustomerCreated(payload: unknown): CustomerCreated | undefined {
  const candidate = payload as { type?: unknown; data?: Record<string, unknown> } | null;
  const data = candidate?.data;
  if (
    typeof candidate?.type !== 'string' ||
    typeof data?.id !== 'string' ||
    !UUID.test(data.id) ||
    typeof data.name !== 'string' ||
    typeof data.created_at !== 'string' ||
    Number.isNaN(Date.parse(data.created_at))
  ) {
    return undefined;
  }
  return {
    type: candidate.type,
    data: { id: data.id, name: data.name, created_at: data.created_at },
  };
}

/** A delivery for a customer.created event's data, from any source. */
export function customerCreatedToDelivery(
  customer: { id: string; name: string; created_at: string },
  eventId: string,
  source: string,
  traceparent?: unknown,
): NewDelivery {
  return {
    customerId: customer.id,
    customerName: customer.name,
    customerCreatedAt: Date.parse(customer.created_at),
    eventId,
    source,
    traceparent:
      typeof traceparent === 'string' && traceparent.length <= 128 ? traceparent : undefined,
  };
}
