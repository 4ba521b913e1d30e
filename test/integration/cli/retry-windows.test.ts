import { describe, expect, it } from 'vitest';
import { retryDelayMs, retryWindowMs } from '../../../src/core/backoff.js';
import { runCli } from '../../../src/integration/cli.js';
import { formatDuration, retryWindows } from '../../../src/integration/cli/retry-windows.js';

/** Runs mip in this process with `env`; answers its exit code and what it printed. */
async function mip(argv: string[], env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env,
  });
  return { code, stdout, stderr };
}

describe('retryWindowMs', () => {
  it('is the sum of the jitter ceilings: what the waits add up to when every pick is the largest', () => {
    const policy = { baseMs: 1_000, maxDelayMs: 3_600_000 };
    let total = 0;
    for (let retry = 1; retry < 20; retry += 1) total += retryDelayMs(retry, policy, 0, () => 1);
    expect(retryWindowMs(20, policy)).toEqual({ longestMs: total, meanMs: total / 2 });
    expect(retryWindowMs(1, policy)).toEqual({ longestMs: 0, meanMs: 0 });
  });
});

describe('mip retry-windows', () => {
  it('prints the windows the default settings give: the CRM keeps at a webhook for at most 8 h 8 min 15 s', async () => {
    const [deliveries, webhooks] = retryWindows({});
    // 1 s, 2 s, … 2,048 s, then seven waits of one hour.
    expect(webhooks).toMatchObject({ attempts: 20, longest_ms: 29_295_000, mean_ms: 14_647_500 });
    // The integration service dead-letters only after an hour of failing as well.
    expect(deliveries).toMatchObject({ attempts: 20, longest_ms: 3_600_000, mean_ms: 3_600_000 });
    const printed = await mip(['retry-windows']);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain(
      '20 attempts over at most 8 h 8 min 15 s (about 4 h 4 min 8 s on average)',
    );
    expect(printed.stdout).toContain('20 attempts over at most 1 h (about 1 h on average)');
  });

  it('follows the settings in the environment, and prints JSON for scripts', async () => {
    const printed = await mip(['--json', 'retry-windows'], {
      WEBHOOK_MAX_ATTEMPTS: '3',
      WEBHOOK_RETRY_BASE_MS: '1000',
    });
    const [, webhooks] = JSON.parse(printed.stdout);
    expect(webhooks).toMatchObject({ attempts: 3, longest_ms: 3_000 });
  });

  it('says which setting is wrong, as the services do', async () => {
    const refused = await mip(['retry-windows'], { WEBHOOK_MAX_ATTEMPTS: 'many' });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/WEBHOOK_MAX_ATTEMPTS="many" is not allowed/);
  });

  it('formats durations as people read them', () => {
    expect(formatDuration(0)).toBe('0 s');
    expect(formatDuration(45_000)).toBe('45 s');
    expect(formatDuration(29_295_000)).toBe('8 h 8 min 15 s');
  });
});
