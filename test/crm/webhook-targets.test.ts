import { describe, expect, it } from 'vitest';
import { isPublicAddress } from '../../src/core/webhooks/target-addresses.js';
import { checkWebhookTarget } from '../../src/core/webhooks/targets.js';
import { fixedDns, refusal } from '../support/webhook-targets.js';

const PRIVATE_REFUSED = /a private, loopback or reserved address/;
const NEVER_ALLOWED = /a link-local or cloud metadata address; those are never allowed/;

describe('checkWebhookTarget, private targets not allowed', () => {
  it.each([
    // loopback
    ['loopback', 'http://127.0.0.1/x'],
    ['loopback', 'http://127.1.2.3:8080/x'],
    ['loopback', 'http://[::1]/x'],
    ['loopback', 'http://[0:0:0:0:0:0:0:1]/x'],
    ['unspecified (reaches loopback)', 'http://0.0.0.0/x'],
    ['unspecified (reaches loopback)', 'http://[::]/x'],
    ['"this network"', 'http://0.1.2.3/x'],
    // private
    ['private 10/8', 'http://10.0.0.1/x'],
    ['private 10/8', 'http://10.255.255.254/x'],
    ['private 172.16/12', 'http://172.16.0.1/x'],
    ['private 172.16/12', 'http://172.31.255.254/x'],
    ['private 192.168/16', 'http://192.168.0.1/x'],
    ['private 192.168/16', 'https://192.168.255.254:8443/x'],
    ['unique local fc00::/7', 'http://[fc00::1]/x'],
    ['unique local fc00::/7', 'http://[fdff:ffff::1]/x'],
    // carrier-grade NAT
    ['CGNAT 100.64/10', 'http://100.64.0.1/x'],
    ['CGNAT 100.64/10', 'http://100.127.255.254/x'],
    // IPv4 inside IPv6
    ['IPv4-mapped', 'http://[::ffff:127.0.0.1]/x'],
    ['IPv4-mapped, hex', 'http://[::ffff:7f00:1]/x'],
    ['IPv4-mapped private', 'http://[::ffff:10.0.0.1]/x'],
    ['IPv4-compatible (deprecated)', 'http://[::127.0.0.1]/x'],
    ['IPv4-translated (SIIT)', 'http://[::ffff:0:7f00:1]/x'],
    ['NAT64', 'http://[64:ff9b::7f00:1]/x'],
    ['6to4', 'http://[2002:7f00:1::]/x'],
    ['Teredo', 'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x'],
    // other IPv4 notations, which the WHATWG URL parser turns into 127.0.0.1 / 10.0.0.1
    ['decimal', 'http://2130706433/x'],
    ['hexadecimal', 'http://0x7f000001/x'],
    ['octal', 'http://0177.0.0.1/x'],
    ['short form', 'http://127.1/x'],
    ['mixed hex form', 'http://0x7f.1/x'],
    ['trailing dot', 'http://127.0.0.1./x'],
    ['full-width digits', 'http://１２７.０.０.１/x'],
    ['decimal private', 'http://167772161/x'],
    ['zero', 'http://0/x'],
    // multicast, broadcast, reserved, documentation, unallocated
    ['multicast', 'http://224.0.0.1/x'],
    ['multicast', 'http://239.255.255.250/x'],
    ['multicast', 'http://[ff02::1]/x'],
    ['broadcast', 'http://255.255.255.255/x'],
    ['reserved 240/4', 'http://240.0.0.1/x'],
    ['IETF protocol assignments', 'http://192.0.0.8/x'],
    ['documentation', 'http://192.0.2.1/x'],
    ['documentation', 'http://[2001:db8::1]/x'],
    ['benchmarking', 'http://198.18.0.1/x'],
    ['discard-only', 'http://[100::1]/x'],
    ['unallocated IPv6', 'http://[4000::1]/x'],
  ])('refuses %s: %s', async (_kind, url) => {
    expect(await refusal(url)).toMatch(PRIVATE_REFUSED);
  });

  it('refuses names that resolve to loopback (through the system resolver)', async () => {
    // localhost resolves from /etc/hosts, so this needs no DNS server.
    for (const url of ['http://localhost/x', 'http://LOCALHOST:8000/x']) {
      expect(await refusal(url)).toMatch(/"localhost" resolves to (127\.0\.0\.1|::1)/);
    }
  });

  it('refuses a name if any of its addresses is not public, and names that do not resolve', async () => {
    const resolve = fixedDns({
      'metadata.google.internal': ['169.254.169.254'],
      'mixed.example.test': ['93.184.216.34', '10.0.0.7'],
      'mapped.example.test': ['::ffff:127.0.0.1'],
      'compatible.example.test': ['::7f00:1'],
      'empty.example.test': [],
    });
    const options = { allowPrivate: false, resolve };
    expect(await refusal('http://metadata.google.internal/computeMetadata/v1/', options)).toMatch(
      /"metadata.google.internal" resolves to 169\.254\.169\.254, a link-local or cloud metadata/,
    );
    expect(await refusal('http://metadata.google.internal/', options)).toMatch(NEVER_ALLOWED);
    expect(await refusal('https://mixed.example.test/x', options)).toMatch(
      /resolves to 10\.0\.0\.7, a private/,
    );
    expect(await refusal('https://mapped.example.test/x', options)).toMatch(PRIVATE_REFUSED);
    expect(await refusal('https://compatible.example.test/x', options)).toMatch(PRIVATE_REFUSED);
    expect(await refusal('https://empty.example.test/x', options)).toMatch(/does not resolve/);
    expect(await refusal('https://unknown.example.test/x', options)).toMatch(/does not resolve/);
  });

  it.each([
    ['http://93.184.216.34/hooks'],
    ['https://8.8.8.8:8443/hooks?tenant=1'],
    ['http://172.32.0.1/x'], // just past 172.16/12
    ['http://100.128.0.1/x'], // just past 100.64/10
    ['http://[2606:4700:4700::1111]/hooks'],
    ['http://[::ffff:93.184.216.34]/hooks'],
  ])('accepts the public address in %s', async (url) => {
    const accepted = await checkWebhookTarget(url, { allowPrivate: false });
    expect(accepted.href).toBe(new URL(url).href);
  });

  it('accepts a name whose every address is public', async () => {
    const resolve = fixedDns({ 'hooks.example.test': ['93.184.216.34', '2606:2800:220:1::1'] });
    const accepted = await checkWebhookTarget('https://hooks.example.test/in', {
      allowPrivate: false,
      resolve,
    });
    expect(accepted.hostname).toBe('hooks.example.test');
  });
});

describe('checkWebhookTarget, whatever the private-target setting', () => {
  it.each([
    ['file:///etc/passwd', /not file/],
    ['gopher://127.0.0.1:6379/_INFO', /not gopher/],
    ['ftp://example.com/x', /not ftp/],
    ['javascript:alert(1)', /not javascript/],
    ['data:text/plain,hello', /not data/],
    ['ws://example.com/x', /not ws/],
    ['https://user:pass@example.com/x', /must not contain credentials/],
    ['https://user@example.com/x', /must not contain credentials/],
    ['https://:pass@example.com/x', /must not contain credentials/],
    ['not a url', /is not a URL/],
    ['/relative/path', /is not a URL/],
    ['http://[fe80::1%25eth0]/x', /is not a URL/],
  ])('refuses %s', async (url, reason) => {
    for (const allowPrivate of [false, true]) {
      expect(await refusal(url, { allowPrivate })).toMatch(reason);
    }
  });

  it('accepts private addresses when they are allowed', async () => {
    for (const url of ['http://127.0.0.1:9/x', 'http://10.0.0.7/', 'http://[::1]/x']) {
      await expect(checkWebhookTarget(url, { allowPrivate: true })).resolves.toBeInstanceOf(URL);
    }
  });
});

describe('isPublicAddress', () => {
  it('is true only for public unicast addresses', () => {
    for (const address of ['93.184.216.34', '1.1.1.1', '2606:4700:4700::1111', '2a00:1450::1']) {
      expect(isPublicAddress(address), address).toBe(true);
    }
    for (const address of [
      '127.0.0.1',
      '::1',
      '0.0.0.0',
      '::',
      '10.0.0.1',
      '172.16.0.1',
      '192.168.0.1',
      'fc00::1',
      '169.254.169.254',
      'fe80::1',
      '100.64.0.1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::127.0.0.1',
      '::7f00:1',
      '224.0.0.1',
      'ff02::1',
      '255.255.255.255',
      '240.0.0.1',
      '4000::1',
      '',
      'localhost',
      'not-an-address',
    ]) {
      expect(isPublicAddress(address), address).toBe(false);
    }
  });
});
