import { expect } from 'vitest';
import type { Route } from './routes.js';

// What every answer of the sweep must be, and how a failure names its request.

export interface Answer {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  json(): unknown;
}

/** What every answer must be, whatever was sent. */
export function expectSafeAnswer(response: Answer, context: string): void {
  expect(response.statusCode, context).toBeLessThan(500);
  expect(response.body, `${context}: stack trace`).not.toContain('    at ');
  if (response.statusCode >= 400) {
    expect(String(response.headers['content-type']), context).toMatch(
      /^application\/problem\+json/,
    );
    const problem = response.json() as Record<string, unknown>;
    for (const field of ['type', 'title', 'status', 'detail']) {
      expect(problem, `${context}: problem lacks ${field}`).toHaveProperty(field);
    }
    expect(problem.status, context).toBe(response.statusCode);
  }
}

export function describeRequest(method: string, url: string, payload?: string | Buffer): string {
  const shown = (text: string) => (text.length > 200 ? `${text.slice(0, 200)}…` : text);
  const body = payload === undefined ? '' : ` (${payload.length} bytes) ${shown(String(payload))}`;
  return `${method} ${shown(url)}${body}`;
}

/** Runs one route's property; a failure names the route. */
export async function sweepRoute(route: Route, property: () => Promise<void>): Promise<void> {
  try {
    await property();
  } catch (error) {
    const message = (error as Error).message;
    throw new Error(`${route.target.label} ${route.method} ${route.path}: ${message}`);
  }
}
