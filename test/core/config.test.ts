import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  readCommonConfig,
  readDatabaseUrl,
  readPort,
  readChoice,
} from '../../src/core/config.js';

const messageOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('configuration from the environment', () => {
  it('uses the documented defaults when nothing is set', () => {
    const config = readCommonConfig({});
    expect(config.host).toBe('127.0.0.1');
    expect(config.dataDir).toMatch(/[/\\]data$/);
    expect(config.logLevel).toBe('info');
    expect(config.apiToken).toBeUndefined();
    expect(config.rateLimit).toEqual({ max: 1000, windowMs: 1000 });
    expect(readPort({}, 'CRM_PORT', 8000)).toBe(8000);
    expect(readDatabaseUrl({}, 'CRM_DATABASE_URL')).toBeUndefined();
  });

  it('names the variable, the value and what is allowed in one line', () => {
    for (const bad of ['abc', '70000', '-1', '80.5', '8000x']) {
      const message = messageOf(() => readPort({ CRM_PORT: bad }, 'CRM_PORT', 8000));
      expect(message).toContain('CRM_PORT');
      expect(message).toContain(JSON.stringify(bad));
      expect(message).toContain('0 to 65535');
      expect(message).not.toContain('\n');
    }
    const url = messageOf(() =>
      readDatabaseUrl({ CRM_DATABASE_URL: 'mysql://x' }, 'CRM_DATABASE_URL'),
    );
    expect(url).toContain('CRM_DATABASE_URL');
    expect(url).toContain('postgres://');
    const level = messageOf(() => readCommonConfig({ LOG_LEVEL: 'loud' }));
    expect(level).toContain('LOG_LEVEL');
    expect(level).toContain('debug');
    expect(messageOf(() => readChoice({ X: 'c' }, 'X', 'a', ['a', 'b']))).toContain('a, b');
    expect(messageOf(() => readCommonConfig({ RATE_LIMIT_MAX: 'lots' }))).toContain(
      'RATE_LIMIT_MAX="lots"',
    );
    expect(messageOf(() => readCommonConfig({ RATE_LIMIT_WINDOW_MS: '5' }))).toContain(
      'from 100 to 3600000',
    );
    expect(readCommonConfig({ RATE_LIMIT_MAX: '0' }).rateLimit.max).toBe(0);
  });

  it('refuses to listen beyond loopback without API_TOKEN, and never echoes the token', () => {
    expect(messageOf(() => readCommonConfig({ HOST: '0.0.0.0' }))).toContain('API_TOKEN');
    expect(readCommonConfig({ HOST: '0.0.0.0', API_TOKEN: 'a'.repeat(32) }).apiToken).toBe(
      'a'.repeat(32),
    );
    expect(readCommonConfig({ HOST: '::1' }).host).toBe('::1');
    expect(readCommonConfig({ HOST: 'localhost' }).host).toBe('localhost');
    const short = messageOf(() => readCommonConfig({ API_TOKEN: 'hunter2' }));
    expect(short).toContain('API_TOKEN');
    expect(short).not.toContain('hunter2');
  });
});
