import type { Command } from 'commander';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import {
  AlertEndpointSchema,
  NewAlertEndpointAnswerSchema,
  type AlertEndpoint,
  type NewAlertEndpointAnswer,
} from '../../contracts/alerts.js';
import type { ApiClient } from './api-client.js';

/** What a command needs from mip: a client of the integration service and how to print. */
export type IntegrationContext = (command: Command) => {
  client: ApiClient;
  show: <T>(answer: T, human: (answer: T) => string) => void;
};

const formatEndpoints = (endpoints: AlertEndpoint[]) =>
  endpoints.length === 0
    ? 'No alert endpoint: add one with `mip alerts add <url>`, or set ALERT_WEBHOOK_URLS.'
    : endpoints
        .map(
          (endpoint) =>
            `${endpoint.id}  ${endpoint.url}  (${endpoint.origin}, since ${endpoint.created_at})`,
        )
        .join('\n');

const formatAdded = (endpoint: NewAlertEndpointAnswer) =>
  [
    `Alert endpoint ${endpoint.id} added: ${endpoint.url}`,
    `Signing secret (shown only now; verify each alert's webhook-signature with it): ${endpoint.secret}`,
  ].join('\n');

/** `mip alerts add <url>` and `mip alerts list`: where operational alerts go. */
export function addAlertCommands(program: Command, context: IntegrationContext): void {
  const alerts = program.command('alerts').description('register where operational alerts go');

  alerts
    .command('add')
    .argument('<url>', 'http(s) URL to POST signed alerts to')
    .description('send operational alerts (dead letters, circuit, backlog, stalled feed) to a URL')
    .action(async (url: string, _options, command: Command) => {
      const { client, show } = context(command);
      const answer = await client.request('POST', '/api/alert-endpoints', {
        body: { url },
        shape: Compile(NewAlertEndpointAnswerSchema),
      });
      show(answer, formatAdded);
    });

  alerts
    .command('list')
    .description('list the alert endpoints (their secrets are not shown)')
    .action(async (_options, command: Command) => {
      const { client, show } = context(command);
      const answer = await client.request('GET', '/api/alert-endpoints', {
        shape: Compile(Type.Array(AlertEndpointSchema)),
      });
      show(answer, formatEndpoints);
    });
}
