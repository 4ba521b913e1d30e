/**
 * A promise in the docs is a claim a test must prove: every test docs/guarantees.md cites exists,
 * and every environment variable the code reads and every metric it exports is documented in
 * docs/operations.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string): string => fs.readFileSync(path.join(ROOT, file), 'utf8');

/** Citations written as: `test/dir/file.test.ts` — "words of the test's name". */
function citationsIn(markdown: string): { file: string; name: string }[] {
  return [...markdown.matchAll(/`(test\/[^`]+\.test\.ts)` — "([^"]+)"/g)].map((match) => ({
    file: match[1]!,
    name: match[2]!,
  }));
}

/** Every .ts file under `dir`, relative to the repository root. */
function sourcesUnder(dir: string): string[] {
  return fs
    .readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => path.join(dir, file));
}

/**
 * Environment variables read in src/: `readX(env, 'NAME', …)`, `env.NAME`,
 * `process.env.NAME`, and the variables a service or the CLI names (`portVariable: 'NAME'`).
 */
function variablesReadIn(source: string): string[] {
  const patterns = [
    /\(\s*(?:[a-z]+\.)?env,\s*'([A-Z][A-Z0-9_]+)'/g,
    /\benv\.([A-Z][A-Z0-9_]+)/g,
    /[a-z]+Variable:\s*'([A-Z][A-Z0-9_]+)'/g,
  ];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((match) => match[1]!));
}

describe('docs/guarantees.md', () => {
  const citations = citationsIn(read('docs/guarantees.md'));

  it('cites tests', () => {
    expect(citations.length).toBeGreaterThan(30);
  });

  it('cites only tests that exist, by file and name', () => {
    const missing = citations
      .filter(
        ({ file, name }) => !fs.existsSync(path.join(ROOT, file)) || !read(file).includes(name),
      )
      .map(({ file, name }) => `${file}: "${name}"`);
    expect(missing).toEqual([]);
  });
});

describe('docs/operations.md', () => {
  it('documents every environment variable the code reads', () => {
    const variables = new Set(sourcesUnder('src').flatMap((file) => variablesReadIn(read(file))));
    // Sanity: the patterns above still find what the code reads (HOST, ports, SYNC_MODE, …).
    expect(variables.size).toBeGreaterThan(30);
    const documented = read('docs/operations.md');
    const undocumented = [...variables].filter((name) => !documented.includes(`\`${name}\``));
    expect(undocumented).toEqual([]);
  });

  it('lists every metric the services export', () => {
    const metrics = new Set(
      sourcesUnder('src').flatMap((file) =>
        [...read(file).matchAll(/name: '((?:http|crm|inventory|integration)_[a-z_]+)'/g)].map(
          (match) => match[1]!,
        ),
      ),
    );
    expect(metrics.size).toBeGreaterThan(15);
    const documented = read('docs/operations.md');
    expect([...metrics].filter((name) => !documented.includes(`\`${name}\``))).toEqual([]);
  });
});
