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
