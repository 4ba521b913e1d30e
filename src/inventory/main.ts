import { runServices } from '../core/run-services.js';
import { inventoryService } from './service.js';

await runServices([inventoryService]);
