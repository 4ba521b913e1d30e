import { readOptionalString, type Env } from '../../core/config.js';

const REQUEST_TIMEOUT_MS = 10_000;

/** A failure worth one `mip: …` line on stderr and exit code 1. */
export class CliFailure extends Error {}

/** The exit code of a usage error (a wrong option or argument): the caller's to fix. */
export const USAGE_ERROR = 2;

/** The service could not be reached at all (refused, unknown host, no answer in time). */
export class Unreachable extends CliFailure {}

/** A compiled contract of an answer (a TypeBox `Compile(...)`): what `request` checks replies with. */
export interface AnswerShape<T> {
  Check(value: unknown): value is T;
  Errors(value: unknown): { instancePath: string; message: string }[];
}

/** A service the CLI talks to: how messages name it and where it is by default. */
export interface Service {
  /** e.g. "the integration service" */
  name: string;
  /** The global option that gives its base URL, and the key commander stores it under. */
  urlOption: string;
  urlKey: 'url' | 'crmUrl';
  /** Else this environment variable, else loopback on `$portVariable` or `defaultPort`. */
  urlVariable: string;
  portVariable: string;
  defaultPort: number;
}

export const INTEGRATION: Service = {
  name: 'the integration service',
  urlOption: '--url',
  urlKey: 'url',
  urlVariable: 'MIP_URL',
  portVariable: 'INTEGRATION_PORT',
  defaultPort: 8002,
};

export const CRM: Service = {
  name: 'the CRM',
  urlOption: '--crm-url',
  urlKey: 'crmUrl',
  urlVariable: 'MIP_CRM_URL',
  portVariable: 'CRM_PORT',
  defaultPort: 8000,
};

/** `service`'s base URL when no option names it: its variable, else loopback on its port. */
export function defaultUrl(env: Env, service: Service): string {
  return (
    readOptionalString(env, service.urlVariable) ??
    `http://127.0.0.1:${readOptionalString(env, service.portVariable) ?? service.defaultPort}`
  );
}

/** Talks JSON to one of the platform's HTTP APIs; every failure becomes a CliFailure. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    private readonly service: Service,
  ) {}

  /**
   * Sends the request and answers the JSON reply; with `shape` (a compiled contract), a reply
   * that does not match it is refused as coming from something else than `service`.
   */
  async request<T>(
    method: 'GET' | 'POST',
    path: string,
    options: { body?: unknown; shape?: AnswerShape<T> } = {},
  ): Promise<T> {
    const { body, shape } = options;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      throw this.unreachable(error);
    }
    const text = await response.text();
    const answer = parseJson(text);
    if (response.ok && answer !== undefined) {
      if (!shape || shape.Check(answer)) return answer as T;
      const [first] = shape.Errors(answer);
      throw new CliFailure(
        `${method} ${this.baseUrl}${path} answered JSON that mip does not understand (${first?.instancePath || '/'} ${first?.message ?? 'is unexpected'}); is ${this.service.urlOption} pointing at ${this.service.name}, and are both the same version?`,
      );
    }
    const detail = (answer as { detail?: unknown } | undefined)?.detail;
    if (typeof detail === 'string') throw new CliFailure(detail);
    throw new CliFailure(
      `${method} ${this.baseUrl}${path} answered ${response.status} ${response.statusText}` +
        (response.ok
          ? ` without JSON; is ${this.service.urlOption} pointing at ${this.service.name}?`
          : ''),
    );
  }

  private unreachable(error: unknown): Unreachable {
    const { name, urlOption, urlVariable } = this.service;
    if ((error as Error | undefined)?.name === 'TimeoutError') {
      return new Unreachable(
        `${name} at ${this.baseUrl} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s.`,
      );
    }
    return new Unreachable(
      `cannot reach ${name} at ${this.baseUrl} (${networkErrorCode(error)}); is it running? Set ${urlOption} or ${urlVariable}.`,
    );
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** fetch hides the socket error (ECONNREFUSED, ENOTFOUND…) in its cause, sometimes one level deeper. */
function networkErrorCode(error: unknown): string {
  const cause = (error as { cause?: unknown } | undefined)?.cause as
    { code?: string; message?: string; errors?: { code?: string }[] } | undefined;
  return (
    cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (error as Error).message ?? 'error'
  );
}
