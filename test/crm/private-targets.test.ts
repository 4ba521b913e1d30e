import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/config.js';
import { readCrmConfig } from '../../src/crm/config.js';
import type { CrmTables } from '../../src/crm/migrations.js';
import {
  AllowListEntryError,
  PrivateTargetAllowList,
} from '../../src/crm/private-target-allow-list.js';
import { createCrmService } from '../../src/crm/service.js';
import {
  checkWebhookTarget,
  lookupWebhookTarget,
  type ResolveHost,
  type WebhookTargetPolicy,
} from '../../src/crm/webhook-targets.js';
import { createTestApp, expectProblem, type TestApp } from '../support/apps.js';
import { countRows } from '../support/databases.js';
import { waitUntil } from '../support/platform.js';
import { startReceiver } from '../support/webhook-receiver.js';
import { fixedDns, refusal } from '../support/webhook-targets.js';

const NEVER_ALLOWED =
  /a link-local or cloud metadata address; those are never allowed, whatever WEBHOOK_ALLOW_PRIVATE_TARGETS and WEBHOOK_ALLOWED_PRIVATE_TARGETS say/;
const PRIVATE_REFUSED =
  /a private, loopback or reserved address; only public addresses are allowed\. To allow it, add .* to WEBHOOK_ALLOWED_PRIVATE_TARGETS/;

const allowList = (text: string) => PrivateTargetAllowList.parse(text);

/** Names for the tests below, as a cloud's or a container network's DNS would answer them. */
const dns = fixedDns({
  'metadata.google.internal': ['169.254.169.254'],
  'instance-data': ['fd00:ec2::254'],
  'metadata.tencentyun.com': ['169.254.0.23'],
  integration: ['172.18.0.4'],
  'hooks.internal': ['10.1.9.9'],
  'split.internal': ['10.1.9.9', '10.2.0.1'],
  'a.internal': ['10.0.0.1'],
  'b.internal': ['10.0.0.2'],
  'public.example.test': ['93.184.216.34'],
});

/** Every policy there is, most permissive last: none of them admits link-local or metadata. */
const POLICIES: [string, WebhookTargetPolicy][] = [
  ['public only', { allowPrivate: false, resolve: dns }],
  ['WEBHOOK_ALLOW_PRIVATE_TARGETS=true', { allowPrivate: true, resolve: dns }],
  [
    'everything listed',
    {
      allowPrivate: true,
      allowList: allowList(
        '0.0.0.0/0,::/0,169.254.0.0/16,fe80::/10,169.254.169.254,[fd00:ec2::254],metadata.google.internal,instance-data:80',
      ),
      resolve: dns,
    },
  ],
];

describe('link-local and cloud metadata addresses, whatever is allowed', () => {
  it.each([
    ['AWS, GCP, Azure, OpenStack… metadata', 'http://169.254.169.254/latest/meta-data/'],
    ['link-local 169.254/16', 'http://169.254.0.1/x'],
    ['ECS task credentials', 'http://169.254.170.2/v2/credentials'],
    ['decimal', 'http://2852039166/latest/meta-data/'],
    ['hexadecimal', 'http://0xa9fea9fe/'],
    ['octal', 'http://0251.0376.0251.0376/'],
    ['short form', 'http://169.254.43518/'],
    ['IPv4-mapped', 'http://[::ffff:169.254.169.254]/'],
    ['IPv4-mapped, hex', 'http://[::ffff:a9fe:a9fe]/'],
    ['IPv4-compatible', 'http://[::a9fe:a9fe]/'],
    ['IPv4-translated (SIIT)', 'http://[::ffff:0:a9fe:a9fe]/'],
    ['NAT64', 'http://[64:ff9b::a9fe:a9fe]/'],
    ['local NAT64', 'http://[64:ff9b:1::a9fe:a9fe]/'],
    ['6to4', 'http://[2002:a9fe:a9fe::]/'],
    ['Teredo', 'http://[2001:0:4136:e378:8000:63bf:5601:5601]/'],
    ['link-local fe80::/10', 'http://[fe80::1]/x'],
    ['link-local fe80::/10', 'http://[febf::1]/x'],
    ['OpenStack metadata over IPv6', 'http://[fe80::a9fe:a9fe]/openstack'],
    ['AWS metadata over IPv6', 'http://[fd00:ec2::254]/latest/meta-data/'],
    ['AWS EKS Pod Identity over IPv6', 'http://[fd00:ec2::23]/'],
    ['Google Cloud metadata over IPv6', 'http://[fd20:ce::254]/computeMetadata/v1/'],
    ['Scaleway metadata over IPv6', 'http://[fd00:42::42]/'],
    ['Alibaba Cloud metadata', 'http://100.100.100.200/latest/meta-data/'],
    ['Alibaba Cloud metadata, IPv4-mapped', 'http://[::ffff:100.100.100.200]/'],
    ['Oracle Cloud metadata', 'http://192.0.0.192/'],
    ['Azure WireServer', 'http://168.63.129.16/machine?comp=goalstate'],
    ['a name for GCP metadata', 'http://metadata.google.internal/computeMetadata/v1/'],
    ['a name for AWS metadata over IPv6', 'http://instance-data/latest/meta-data/'],
    ['a name for Tencent Cloud metadata', 'http://metadata.tencentyun.com/'],
  ])('refuses %s: %s', async (_kind, url) => {
    for (const [name, policy] of POLICIES) {
      expect(await refusal(url, policy), name).toMatch(NEVER_ALLOWED);
    }
  });
});

describe('WEBHOOK_ALLOWED_PRIVATE_TARGETS', () => {
  const admitted = async (url: string, list: string) =>
    (
      await checkWebhookTarget(url, {
        allowPrivate: false,
        allowList: allowList(list),
        resolve: dns,
      })
    ).href;

  it('admits a listed host on the listed port only, the default ports counting', async () => {
    const list = 'integration:8002,a.internal:80,b.internal:443';
    for (const url of [
      'http://integration:8002/webhooks/crm',
      'http://INTEGRATION:8002/webhooks/crm?token=1',
      'https://integration:8002/x',
      'http://a.internal/x',
      'http://a.internal:80/x',
      'https://b.internal/x',
    ]) {
      expect(await admitted(url, list)).toBe(new URL(url).href);
    }
    for (const [url, entry] of [
      ['http://integration:8003/webhooks/crm', 'integration:8003'],
      ['http://integration/webhooks/crm', 'integration:80'],
      ['https://a.internal/x', 'a.internal:443'],
      ['http://b.internal/x', 'b.internal:80'],
      ['http://hooks.internal/x', 'hooks.internal:80'],
    ] as const) {
      const policy = { allowPrivate: false, allowList: allowList(list), resolve: dns };
      const message = await refusal(url, policy);
      expect(message, url).toMatch(PRIVATE_REFUSED);
      // The message names the entry that would admit the URL.
      expect(message, url).toContain(`add "${entry}" (or a CIDR block holding`);
    }
  });

  it('admits a host listed without a port on any port, and addresses by host', async () => {
    expect(await admitted('http://hooks.internal:1234/x', 'hooks.internal')).toContain(':1234');
    expect(await admitted('https://hooks.internal/x', 'HOOKS.internal.')).toContain('hooks');
    const list = '10.0.0.7:8080,[fd00::7],127.0.0.1';
    expect(await admitted('http://10.0.0.7:8080/x', list)).toContain('10.0.0.7');
    expect(await admitted('http://[fd00:0:0::7]:9/x', list)).toContain('fd00::7');
    expect(await admitted('http://127.0.0.1:9/x', list)).toContain('127.0.0.1');
    // Written another way, 127.0.0.1 is still 127.0.0.1 to the URL parser.
    expect(await admitted('http://2130706433:9/x', list)).toContain('127.0.0.1');
    const policy = { allowPrivate: false, allowList: allowList(list), resolve: dns };
    expect(await refusal('http://10.0.0.7/x', policy)).toMatch(PRIVATE_REFUSED);
    expect(await refusal('http://127.0.0.2/x', policy)).toMatch(PRIVATE_REFUSED);
    expect(await refusal('http://[fd00::8]/x', policy)).toMatch(PRIVATE_REFUSED);
  });

  it('admits private addresses inside a listed CIDR block, for every address a name has', async () => {
    const list = '10.1.0.0/16,fd00:1::/32';
    expect(await admitted('http://10.1.2.3:5/x', list)).toContain('10.1.2.3');
    expect(await admitted('http://[::ffff:10.1.2.3]/x', list)).toContain('a01:203');
    expect(await admitted('http://[fd00:1::5]/x', list)).toContain('fd00:1::5');
    expect(await admitted('http://hooks.internal/x', list)).toContain('hooks.internal');
    const policy = { allowPrivate: false, allowList: allowList(list), resolve: dns };
    expect(await refusal('http://10.2.0.1/x', policy)).toMatch(PRIVATE_REFUSED);
    expect(await refusal('http://split.internal/x', policy)).toMatch(
      /"split.internal" resolves to 10\.2\.0\.1, a private/,
    );
  });

  it('keeps public addresses, and the rest of the rules, as they were', async () => {
    const policy = { allowPrivate: false, allowList: allowList('integration:8002'), resolve: dns };
    expect((await checkWebhookTarget('https://public.example.test/in', policy)).href).toBe(
      'https://public.example.test/in',
    );
    expect(await refusal('http://user:pass@integration:8002/x', policy)).toMatch(/credentials/);
    expect(await refusal('ftp://integration:8002/x', policy)).toMatch(/not ftp/);
    expect(await refusal('http://unknown.internal/x', policy)).toMatch(/does not resolve/);
  });

  it('reads entries separated by commas, with spaces and blanks', () => {
    const list = allowList(
      ' integration:8002 , 10.0.0.0/8,, [fd00::1]:8080, fd00::/8, h_1.local. ',
    );
    expect(list.admitsHost('integration', 8002)).toBe(true);
    expect(list.admitsHost('[fd00::1]', 8080)).toBe(true);
    expect(list.admitsHost('fd00::1', 8080)).toBe(true);
    expect(list.admitsHost('h_1.local', 1)).toBe(true);
    expect(list.admitsAddress('10.255.0.1')).toBe(true);
    expect(list.admitsAddress('fd12::1')).toBe(true);
    expect(list.admitsAddress('11.0.0.1')).toBe(false);
    expect(PrivateTargetAllowList.parse('').admitsHost('integration')).toBe(false);
  });

  it.each([
    ['*.internal'],
    ['fd00::1'],
    ['http://integration:8002'],
    ['integration:8002/webhooks'],
    ['integration:'],
    ['integration:0'],
    ['integration:65536'],
    ['integration:port'],
    ['user@integration'],
    ['in tegration'],
    ['[fd00::1'],
    ['[integration]:80'],
    ['10.0.0.0/33'],
    ['10/8'],
    ['10.0.0.0/'],
    ['fd00::/129'],
    ['integration/8'],
  ])('refuses the entry %s at start-up, naming it and the accepted forms', (entry) => {
    expect(() => allowList(entry)).toThrow(AllowListEntryError);
    const text = `integration:8002, ${entry}`;
    const outcome = (() => {
      try {
        return readCrmConfig({ WEBHOOK_ALLOWED_PRIVATE_TARGETS: text });
      } catch (error) {
        return error;
      }
    })();
    expect(outcome).toBeInstanceOf(ConfigError);
    const message = (outcome as ConfigError).message;
    expect(message).toContain(`WEBHOOK_ALLOWED_PRIVATE_TARGETS=${JSON.stringify(text)}`);
    expect(message).toContain(`${JSON.stringify(entry)} is not an entry`);
    expect(message).toContain('a host name or IP address, optionally with :port');
    expect(message).toContain('a CIDR block');
  });
});

// ---------------------------------------------------------------------------------------------
// The socket lookup, and the CRM itself
// ---------------------------------------------------------------------------------------------

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** POSTs through `agent` to `url`; answers the status, or the error's code and message. */
async function connect(agent: Agent, url: string) {
  try {
    const answer = await request(url, { method: 'POST', dispatcher: agent, body: '{}' });
    await answer.body.dump();
    return { status: answer.statusCode };
  } catch (caught) {
    const error = caught as { code?: string; message?: string };
    return { code: error.code, message: error.message };
  }
}

describe("lookupWebhookTarget (the sender's connections)", () => {
  it('refuses a name rebound to a metadata address even with private targets allowed, and admits listed names on any port', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    const { port } = new URL(receiver.url);
    const agent = (policy: WebhookTargetPolicy) => {
      const created = new Agent({ connect: { lookup: lookupWebhookTarget(policy) } });
      closers.push(() => created.close());
      return created;
    };
    const names = fixedDns({
      'rebound.test': ['169.254.169.254'],
      'mapped.test': ['::ffff:169.254.169.254'],
      'receiver.test': ['127.0.0.1'],
      'other.test': ['127.0.0.1'],
    });
    const permissive = agent({ allowPrivate: true, resolve: names });
    for (const host of ['rebound.test', 'mapped.test']) {
      const refused = await connect(permissive, `http://${host}:${port}/hooks`);
      expect(refused.code, host).toBe('EWEBHOOKTARGET');
      expect(refused.message, host).toMatch(NEVER_ALLOWED);
    }
    // The same permissive guard does connect to a private address: the refusals are about metadata.
    expect(await connect(permissive, `http://receiver.test:${port}/hooks`)).toEqual({
      status: 200,
    });

    const listed = agent({
      allowPrivate: false,
      allowList: allowList('receiver.test:1'),
      resolve: names,
    });
    expect(await connect(listed, `http://receiver.test:${port}/hooks`)).toEqual({ status: 200 });
    const other = await connect(listed, `http://other.test:${port}/hooks`);
    expect(other.code).toBe('EWEBHOOKTARGET');
    expect(other.message).toMatch(/add "other.test" \(or a CIDR block holding 127\.0\.0\.1\)/);
    expect(receiver.calls).toHaveLength(2);
  });
});

const FAST_RETRIES = { WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_RETRY_MAX_DELAY_MS: '50' };

/** The CRM app with `resolveHost` for webhook hosts, on a fresh database, closed after the test. */
async function startCrm(
  env: Record<string, string>,
  resolveHost: ResolveHost,
): Promise<TestApp<CrmTables>> {
  const crm = await createTestApp(createCrmService({ resolveHost }), {
    env: { ...FAST_RETRIES, ...env },
  });
  closers.push(crm.close);
  return crm;
}

const subscribe = (crm: TestApp<CrmTables>, url: string) =>
  crm.app.inject({
    method: 'POST',
    url: '/webhook-endpoints',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ url }),
  });

describe('the CRM with WEBHOOK_ALLOWED_PRIVATE_TARGETS', () => {
  it('subscribes listed private targets only, refusing the rest with 422 naming the setting', async () => {
    const crm = await startCrm(
      {
        HOST: '0.0.0.0',
        WEBHOOK_ALLOWED_PRIVATE_TARGETS: 'integration:8002,10.9.0.0/16',
      },
      dns,
    );
    for (const url of ['http://integration:8002/webhooks/crm', 'http://10.9.1.1/hooks']) {
      expect((await subscribe(crm, url)).statusCode, url).toBe(201);
    }
    for (const [url, detail] of [
      ['http://10.0.0.7/', PRIVATE_REFUSED],
      ['http://integration:9999/webhooks/crm', PRIVATE_REFUSED],
      ['http://hooks.internal/', PRIVATE_REFUSED],
      ['http://169.254.169.254/latest/meta-data/', NEVER_ALLOWED],
      ['http://metadata.google.internal/computeMetadata/v1/', NEVER_ALLOWED],
    ] as const) {
      const problem = expectProblem(await subscribe(crm, url), 422);
      expect(problem.code, url).toBe('webhook_target_refused');
      expect(problem.detail, url).toMatch(detail);
    }
    expect(await countRows(crm.database.db, 'webhook_endpoints')).toBe(2);
  });

  it('delivers to a listed name, through the guarded connections', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    const { port } = new URL(receiver.url);
    const crm = await startCrm(
      {
        WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false',
        WEBHOOK_ALLOWED_PRIVATE_TARGETS: 'receiver.internal',
      },
      fixedDns({ 'receiver.internal': ['127.0.0.1'] }),
    );
    await crm.runtime.start?.({ url: 'http://127.0.0.1:9' });
    expect((await subscribe(crm, `http://receiver.internal:${port}/hooks`)).statusCode).toBe(201);
    await crm.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'Jane Doe', email: 'jane@example.com' }),
    });
    await waitUntil(() => receiver.calls.length === 1, 10_000, 'the webhook');
  });
});

describe('the CRM with WEBHOOK_ALLOW_PRIVATE_TARGETS=true', () => {
  it('still refuses metadata targets, at subscription and when a name is rebound before a call', async () => {
    // Public while subscribing and at the check before the call, metadata when the socket
    // connects: only the connection's own lookup can catch that.
    let lookups = 0;
    const rebinding: ResolveHost = async () =>
      ++lookups <= 2 ? ['93.184.216.34'] : ['169.254.169.254'];
    const crm = await startCrm(
      { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOK_MAX_ATTEMPTS: '1' },
      rebinding,
    );
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://[::ffff:a9fe:a9fe]/',
      'http://[fd00:ec2::254]/latest/meta-data/',
      'http://100.100.100.200/latest/meta-data/',
    ]) {
      const problem = expectProblem(await subscribe(crm, url), 422);
      expect(problem.detail, url).toMatch(NEVER_ALLOWED);
    }
    expect(await countRows(crm.database.db, 'webhook_endpoints')).toBe(0);
    const privateEndpoint = await subscribe(crm, 'http://10.0.0.7/');
    expect(privateEndpoint.statusCode).toBe(201);
    // Not called below: nothing answers there, and its call would hold the batch until the timeout.
    const privateId = (privateEndpoint.json() as { id: string }).id;
    await crm.app.inject({ method: 'DELETE', url: `/webhook-endpoints/${privateId}` });

    await crm.runtime.start?.({ url: 'http://127.0.0.1:9' });
    const created = await subscribe(crm, 'http://rebinding.example.test/hooks');
    expect(created.statusCode).toBe(201);
    const { id } = created.json() as { id: string };
    await crm.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'Jane Doe', email: 'jane@example.com' }),
    });
    const attempts = async () =>
      (
        await crm.app.inject({ method: 'GET', url: `/webhook-endpoints/${id}/attempts` })
      ).json() as {
        error: string | null;
      }[];
    await waitUntil(async () => (await attempts()).length === 1, 10_000, 'the attempt');
    expect((await attempts())[0]!.error).toMatch(
      /"rebinding.example.test" resolves to 169\.254\.169\.254, a link-local or cloud metadata address/,
    );
  });
});
