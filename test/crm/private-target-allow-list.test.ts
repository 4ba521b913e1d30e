import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/config.js';
import { readCrmConfig } from '../../src/crm/config.js';
import {
  AllowListEntryError,
  PrivateTargetAllowList,
} from '../../src/core/webhooks/private-target-allow-list.js';
import { checkWebhookTarget, type WebhookTargetPolicy } from '../../src/core/webhooks/targets.js';
import { allowList, dns, NEVER_ALLOWED, PRIVATE_REFUSED } from '../support/private-targets.js';
import { refusal } from '../support/webhook-targets.js';

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
