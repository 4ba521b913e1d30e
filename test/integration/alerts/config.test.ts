import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/config.js';
import { readIntegrationConfig } from '../../../src/integration/config.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

const refusal = (env: Record<string, string>) => {
  try {
    readIntegrationConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
};

describe('alert settings', () => {
  it('default to no endpoints, ALERT_BACKLOG 1000 and ALERT_FOR_MS 5 min', () => {
    const config = readIntegrationConfig({});
    expect(config).toMatchObject({
      alertWebhookUrls: [],
      alertWebhookSecret: undefined,
      alertBacklog: 1000,
      alertForMs: 300_000,
      alertGiveUpAfterMs: 86_400_000,
    });
  });

  it('read ALERT_WEBHOOK_URLS as comma-separated URLs signed with ALERT_WEBHOOK_SECRET', () => {
    const config = readIntegrationConfig({
      ALERT_WEBHOOK_URLS: ' https://ops.example.com/hook ,http://10.0.0.5:9000/a,',
      ALERT_WEBHOOK_SECRET: SECRET,
    });
    expect(config.alertWebhookUrls).toEqual([
      'https://ops.example.com/hook',
      'http://10.0.0.5:9000/a',
    ]);
    expect(config.alertWebhookSecret).toBe(SECRET);
  });

  it('refuse ALERT_WEBHOOK_URLS without ALERT_WEBHOOK_SECRET, naming the secret and how to make one', () => {
    const error = refusal({ ALERT_WEBHOOK_URLS: 'https://ops.example.com/hook' });
    expect(error.variable).toBe('ALERT_WEBHOOK_SECRET');
    expect(error.message).toContain('whsec_');
  });

  it('refuse a secret not in the whsec_ form, without printing it', () => {
    const error = refusal({ ALERT_WEBHOOK_SECRET: 'hunter2-is-my-password' });
    expect(error.variable).toBe('ALERT_WEBHOOK_SECRET');
    expect(error.message).not.toContain('hunter2');
  });

  it('refuse an entry that is not an http(s) URL, or holds credentials, naming it', () => {
    const notUrl = refusal({
      ALERT_WEBHOOK_URLS: 'https://ok.example.com/,ops-pager',
      ALERT_WEBHOOK_SECRET: SECRET,
    });
    expect(notUrl.variable).toBe('ALERT_WEBHOOK_URLS');
    expect(notUrl.message).toContain('"ops-pager" is not an http:// or https:// URL');
    const credentials = refusal({
      ALERT_WEBHOOK_URLS: 'https://me:secret@ops.example.com/',
      ALERT_WEBHOOK_SECRET: SECRET,
    });
    expect(credentials.message).toContain('must not contain credentials');
    expect(credentials.message).not.toContain('me:secret');
  });

  it('refuse an ALERT_BACKLOG or ALERT_FOR_MS that is not a whole number in range', () => {
    expect(refusal({ ALERT_BACKLOG: '0' }).variable).toBe('ALERT_BACKLOG');
    expect(refusal({ ALERT_FOR_MS: '5m' }).message).toContain('default 300000');
  });
});
