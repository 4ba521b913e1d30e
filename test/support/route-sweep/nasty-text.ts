import fc from 'fast-check';

// Text no service should choke on, whatever part of a request carries it.

export const NASTY_FRAGMENTS = [
  // lone surrogates
  '\uD800',
  '\uDFFF',
  'a\uD83D',
  // right-to-left and zero-width marks
  '\u202E',
  '\u200F',
  '\u2067',
  '\u200B',
  '\u200D',
  '\uFEFF',
  '\u2060',
  // emoji and combining marks
  '😀',
  '👩‍👩‍👧‍👦',
  '🏳️‍🌈',
  '\u{1F1FA}\u{1F1F8}',
  'e\u0301',
  '\u0301',
  'Z\u0351\u0352\u0353\u0354\u0355\u0356',
  // NUL and other control characters
  '\u0000',
  '\u0007',
  '\u001B[31m',
  '\r\n',
  '\t',
  '\u007F',
  '\u0085',
  '\u2028',
  // injection
  "'; DROP TABLE customers; --",
  "' OR '1'='1",
  '1; SELECT pg_sleep(10)',
  '${process.exit(1)}',
  '${7*7}',
  '{{7*7}}',
  '#{7*7}',
  '<script>alert(1)</script>',
  '../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '%00',
  '%s%s%n',
  '__proto__',
  'constructor',
  '{"$gt":""}',
  // things that look like other types
  'null',
  'NaN',
  '-1',
  '1e309',
  ' ',
  '',
];

/** Short strings made of the fragments above and arbitrary code points (surrogates included). */
export const nastyText = fc.oneof(
  fc.constantFrom(...NASTY_FRAGMENTS),
  fc
    .array(
      fc.oneof(fc.constantFrom(...NASTY_FRAGMENTS), fc.string({ unit: 'binary', maxLength: 8 })),
      { minLength: 1, maxLength: 6 },
    )
    .map((parts) => parts.join('')),
  fc.string({ unit: 'binary', maxLength: 40 }),
);

/** Strings around the 64 KiB body limit once JSON-encoded. */
export const hugeText = fc.oneof(
  fc.integer({ min: 60 * 1024, max: 70 * 1024 }).map((n) => 'x'.repeat(n)),
  fc.integer({ min: 15_000, max: 18_000 }).map((n) => '😀'.repeat(n)),
  fc.integer({ min: 10_000, max: 12_000 }).map((n) => '\u0000'.repeat(n)),
);

/** Header values: HTTP cannot carry line breaks, so those are left out. */
export const headerText = fc
  .oneof(nastyText, fc.constantFrom('x'.repeat(256), 'x'.repeat(16_384)))
  .map((value) => value.replace(/[\r\n]/g, ''));

const GARBAGE_HEADER_NAMES = [
  'traceparent',
  'tracestate',
  'accept',
  'accept-encoding',
  'accept-language',
  'accept-version',
  'authorization',
  'cookie',
  'forwarded',
  'if-none-match',
  'if-modified-since',
  'origin',
  'range',
  'referer',
  'user-agent',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-http-method-override',
  'x-request-id',
];

export const garbageHeaders = fc.dictionary(
  fc.oneof(fc.constantFrom(...GARBAGE_HEADER_NAMES), fc.stringMatching(/^x-[a-z0-9-]{1,20}$/)),
  fc.oneof(
    headerText,
    fc.constantFrom(
      `00-${'0'.repeat(32)}-${'0'.repeat(16)}-01`,
      `ff-${'f'.repeat(32)}-${'f'.repeat(16)}-ff`,
      '00-zz-zz-zz',
      'bytes=0-99999999999999999999',
      'bytes=-1,-2,-3',
      'Bearer ',
      'Basic Og==',
      'Basic !!!',
    ),
  ),
  { maxKeys: 4 },
);

/** Every byte but unreserved ones percent-encoded, from UTF-8 (a lone surrogate becomes U+FFFD). */
export function percentEncode(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((byte) =>
      /[A-Za-z0-9_~-]/.test(String.fromCharCode(byte))
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('');
}

/** What the server reads back from `percentEncode(text)`. */
export const asReceived = (text: string) => Buffer.from(text, 'utf8').toString('utf8');
