import { runServices } from '../core/run-services.js';
import { integrationService } from './service.js';

await runServices([integrationService]);
