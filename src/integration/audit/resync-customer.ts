import type { CustomerResync } from '../../contracts/audit.js';
import { notFound } from '../../core/errors.js';
import type { CrmClient } from '../crm-client.js';
import type { InventoryClient } from '../inventory-client.js';
import type { AuditsRepository } from '../store/audits.js';
import type { Actor } from '../store/read-models.js';

export interface ResyncCustomerOptions {
  crm: Pick<CrmClient, 'customerState'>;
  inventory: Pick<InventoryClient, 'welcomeRequestsOf'>;
  audits: Pick<AuditsRepository, 'resend'>;
}

/**
 * Sends one customer through the pipeline again from what the CRM and Inventory hold now: its
 * delivery wants the CRM's state, with the request Inventory has (the open one, else the newest),
 * as a new change. Throws 404 for a customer the CRM never had.
 */
export async function resyncCustomer(
  customerId: string,
  by: Actor,
  { crm, inventory, audits }: ResyncCustomerOptions,
): Promise<CustomerResync> {
  const state = await crm.customerState(customerId);
  if (!state) {
    throw notFound(`The CRM has never had a customer with id ${customerId}; nothing to resync.`);
  }
  const requests = await inventory.welcomeRequestsOf(customerId);
  const request = requests.find((r) => r.status !== 'cancelled') ?? requests.at(-1);
  const packageRequestId = request?.id ?? null;
  const sent = await audits.resend([{ state, packageRequestId, reason: 'resync' }], by);
  return {
    customer_id: state.id,
    version: state.version,
    deleted: state.deleted_at !== null,
    package_request_id: packageRequestId,
    sent: sent === 1,
  };
}
