import { runServices } from '../core/run-services.js';
import { crmService } from './service.js';

await runServices([crmService]);
