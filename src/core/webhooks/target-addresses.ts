import ipaddr from 'ipaddr.js';

/**
 * The only IPv6 block allocated for global unicast (RFC 4291). ipaddr.js calls everything it has no
 * special range for "unicast", including IPv4-compatible addresses (::7f00:1 is ::127.0.0.1) and
 * unallocated space, so IPv6 must also fall inside this block.
 */
const GLOBAL_UNICAST_IPV6 = ipaddr.IPv6.parseCIDR('2000::/3');

/**
 * Addresses no setting admits: link-local networks, where clouds serve instance metadata and
 * credentials, and the metadata services that sit elsewhere.
 */
const NEVER_ADMITTED = [
  '169.254.0.0/16', // IPv4 link-local: 169.254.169.254 (AWS, GCP, Azure, OpenStack…), ECS, EKS
  'fe80::/10', // IPv6 link-local (OpenStack's metadata at fe80::a9fe:a9fe)
  'fd00:ec2::254/128', // AWS instance metadata over IPv6
  'fd00:ec2::23/128', // AWS EKS Pod Identity agent over IPv6
  'fd20:ce::254/128', // Google Cloud metadata over IPv6
  'fd00:42::42/128', // Scaleway metadata over IPv6
  '100.100.100.200/32', // Alibaba Cloud metadata
  '192.0.0.192/32', // Oracle Cloud metadata
  '168.63.129.16/32', // Azure WireServer (a public address, reachable only from inside Azure)
].map((block) => ipaddr.parseCIDR(block));

/** True for addresses on the public internet; false for loopback, private, link-local, metadata… */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  // IPv4-mapped IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it carries.
  const parsed = ipaddr.process(address);
  if (parsed.kind() === 'ipv6' && !parsed.match(GLOBAL_UNICAST_IPV6)) return false;
  return parsed.range() === 'unicast';
}

const ipv4From = (high: number, low: number) =>
  new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);

/**
 * The IPv4 address an IPv6 one leads to, when it carries one: IPv4-compatible (::a.b.c.d), -mapped
 * (::ffff:a.b.c.d), -translated (::ffff:0:a.b.c.d), NAT64 (64:ff9b::/32, the /96 layout), 6to4
 * (2002:aabb:ccdd::) and Teredo (2001:0::, the client address inverted in the last 32 bits).
 */
function embeddedIPv4(address: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const p = address.parts;
  const zeros = (from: number, to: number) => p.slice(from, to).every((part) => part === 0);
  if (zeros(0, 5) && (p[5] === 0 || p[5] === 0xffff)) return ipv4From(p[6]!, p[7]!);
  if (zeros(0, 4) && p[4] === 0xffff && p[5] === 0) return ipv4From(p[6]!, p[7]!);
  if (p[0] === 0x64 && p[1] === 0xff9b) return ipv4From(p[6]!, p[7]!);
  if (p[0] === 0x2002) return ipv4From(p[1]!, p[2]!);
  if (p[0] === 0x2001 && p[1] === 0) return ipv4From(p[6]! ^ 0xffff, p[7]! ^ 0xffff);
  return undefined;
}

/**
 * True for link-local and cloud metadata addresses, in any notation (an IPv6 address carrying one
 * counts): no setting admits them as webhook targets.
 */
export function isNeverAdmitted(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  const parsed = ipaddr.parse(address);
  const candidates: (ipaddr.IPv4 | ipaddr.IPv6)[] = [parsed];
  if (parsed.kind() === 'ipv6') {
    const carried = embeddedIPv4(parsed as ipaddr.IPv6);
    if (carried) candidates.push(carried);
  }
  return candidates.some((candidate) =>
    NEVER_ADMITTED.some((block) => block[0].kind() === candidate.kind() && candidate.match(block)),
  );
}
