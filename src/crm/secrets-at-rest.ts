import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { ConfigError, readOptionalString, type Env } from '../core/config.js';

/** What a key must be, and how to make one, for error messages. */
const KEY_FORMS =
  'use 32 random bytes as base64 (44 characters) or hex (64 characters); make one with `openssl rand -base64 32`';

/** One key of `SECRETS_KEY` or `SECRETS_PREVIOUS_KEYS`. */
export interface SecretsKey {
  /** The first 8 hex digits of the key's SHA-256: names the key in stored values and messages. */
  id: string;
  key: Buffer;
}

/** The key `text` holds (256 bits as base64 or hex), or undefined if it holds none. */
export function parseSecretsKey(text: string): SecretsKey | undefined {
  let key: Buffer;
  if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
  // 43 characters and one `=` are exactly 32 bytes.
  else if (/^[A-Za-z0-9+/]{43}=$/.test(text)) key = Buffer.from(text, 'base64');
  else return undefined;
  return { id: createHash('sha256').update(key).digest('hex').slice(0, 8), key };
}

/** Why a stored secret cannot be read; the message says which key or setting is missing. */
export class StoredSecretError extends Error {
  override name = 'StoredSecretError';
}

/** `v1:<key id>:<12-byte IV>:<ciphertext and 16-byte GCM tag>`, both base64url. */
const SEALED = /^v1:([0-9a-f]{8}):([A-Za-z0-9_-]{16}):([A-Za-z0-9_-]{22,})$/;
const TAG_BYTES = 16;

/**
 * The keys that encrypt webhook signing secrets at rest (AES-256-GCM). Each value is bound to its
 * row (the endpoint id is the additional authenticated data), so it cannot be moved to another
 * row, and names its key, so a value under a key the CRM lacks is reported, never misread.
 */
export class SecretsKeyring {
  private readonly keys: Map<string, Buffer>;

  /** `current` seals (none: secrets are stored in clear); every key opens. */
  constructor(
    readonly current: SecretsKey | undefined,
    previous: readonly SecretsKey[] = [],
  ) {
    this.keys = new Map([...previous, ...(current ? [current] : [])].map((k) => [k.id, k.key]));
  }

  /** `secret` as stored in `rowId`'s row: sealed under the current key, or as is without one. */
  seal(secret: string, rowId: string): string {
    if (!this.current) return secret;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.current.key, iv, {
      authTagLength: TAG_BYTES,
    });
    cipher.setAAD(Buffer.from(rowId));
    const sealed = Buffer.concat([cipher.update(secret), cipher.final(), cipher.getAuthTag()]);
    return `v1:${this.current.id}:${iv.toString('base64url')}:${sealed.toString('base64url')}`;
  }

  /** The secret a stored value holds: opened with its key, or as is if it was stored in clear. */
  open(stored: string, rowId: string): string {
    // Secrets are `whsec_…`: a value not starting with `v1:` was written before SECRETS_KEY.
    if (!stored.startsWith('v1:')) return stored;
    const [, keyId, iv, sealed] = SEALED.exec(stored) ?? [];
    if (!keyId || !iv || !sealed) {
      throw new StoredSecretError(
        `The stored webhook secret of endpoint ${rowId} is not a value the CRM writes (v1:<key id>:<iv>:<ciphertext>); it was altered. Rotate the endpoint's secret.`,
      );
    }
    const key = this.keys.get(keyId);
    if (!key) {
      throw new StoredSecretError(
        `A webhook secret in the database (endpoint ${rowId}) is encrypted with key ${keyId}, which this CRM does not have: set SECRETS_KEY to that key, or add it to SECRETS_PREVIOUS_KEYS (a key's id is the first 8 hex digits of the SHA-256 of its 32 bytes).`,
      );
    }
    const bytes = Buffer.from(sealed, 'base64url');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(Buffer.from(rowId));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      const ciphertext = bytes.subarray(0, bytes.length - TAG_BYTES);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    } catch {
      throw new StoredSecretError(
        `The stored webhook secret of endpoint ${rowId} does not decrypt with key ${keyId}: it was altered or copied from another endpoint's row. Rotate the endpoint's secret.`,
      );
    }
  }

  /** True when `stored` is as `seal` writes now: under the current key, or in clear without one. */
  isCurrent(stored: string): boolean {
    return this.current ? stored.startsWith(`v1:${this.current.id}:`) : !stored.startsWith('v1:');
  }
}

/** `SECRETS_KEY` and `SECRETS_PREVIOUS_KEYS`; no key shown in errors, only its length. */
export function readSecretsKeys(env: Env): SecretsKeyring {
  const currentText = readOptionalString(env, 'SECRETS_KEY');
  const previousTexts = (readOptionalString(env, 'SECRETS_PREVIOUS_KEYS') ?? '')
    .split(',')
    .map((text) => text.trim())
    .filter((text) => text !== '');
  const current = currentText === undefined ? undefined : parseSecretsKey(currentText);
  if (currentText !== undefined && !current) {
    throw new ConfigError(
      'SECRETS_KEY',
      `<${currentText.length} characters, not shown>`,
      KEY_FORMS,
    );
  }
  const previous = previousTexts.map((text, index) => {
    const key = parseSecretsKey(text);
    if (key) return key;
    throw new ConfigError(
      'SECRETS_PREVIOUS_KEYS',
      `<key ${index + 1} of ${previousTexts.length}: ${text.length} characters, not shown>`,
      `${KEY_FORMS}, and separate keys with commas`,
    );
  });
  if (previous.length > 0 && !current) {
    throw new ConfigError(
      'SECRETS_PREVIOUS_KEYS',
      `<${previous.length} key(s), not shown>`,
      'previous keys only read secrets while the CRM rewrites them under SECRETS_KEY: set SECRETS_KEY too',
    );
  }
  return new SecretsKeyring(current, previous);
}
