import { runService } from '../core/service.js';
import { crmService } from './service.js';

await runService(crmService);
