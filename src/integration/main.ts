import { runService } from '../core/service.js';
import { integrationService } from './service.js';

await runService(integrationService);
