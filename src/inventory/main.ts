import { runService } from '../core/service.js';
import { inventoryService } from './service.js';

await runService(inventoryService);
