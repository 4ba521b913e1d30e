import { PrivateTargetAllowList } from '../../src/core/webhooks/private-target-allow-list.js';
import { fixedDns } from './webhook-targets.js';

/** The refusal of a link-local or metadata address, which no setting admits. */
export const NEVER_ALLOWED =
  /a link-local or cloud metadata address; those are never allowed, whatever WEBHOOK_ALLOW_PRIVATE_TARGETS and WEBHOOK_ALLOWED_PRIVATE_TARGETS say/;
/** The refusal of a private address, naming the WEBHOOK_ALLOWED_PRIVATE_TARGETS entry that admits it. */
export const PRIVATE_REFUSED =
  /a private, loopback or reserved address; only public addresses are allowed\. To allow it, add .* to WEBHOOK_ALLOWED_PRIVATE_TARGETS/;

export const allowList = (text: string) => PrivateTargetAllowList.parse(text);

/** Names for the private-target tests, as a cloud's or a container network's DNS would answer them. */
export const dns = fixedDns({
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
