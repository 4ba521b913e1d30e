/**
 * The docs stay readable and inside the repository: every relative link in README.md and docs/*.md
 * points at a file that exists (and, with a #fragment, at a heading it has), no link leaves the
 * repository, the only absolute URLs are localhost examples, and the README stays one page.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const README_MAX_LINES = 250;

/**
 * Pages the bench and the battery write when they run (`npm run bench`, `npm run chaos`): the docs
 * link to them before a checkout has run either.
 */
const GENERATED = new Set(['docs/figures/bench.md', 'docs/figures/battery.md']);

/** README.md and the top-level docs/*.md, relative to the repository root. */
const pages = (): string[] => [
  'README.md',
  ...fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

const read = (page: string): string => fs.readFileSync(path.join(ROOT, page), 'utf8');

/** The page without its fenced code blocks (their text is an example, not a link). */
const prose = (markdown: string): string => markdown.replace(/^```[\s\S]*?^```/gm, '');

/** Targets of `[text](target)` and `![alt](target)` links, and of `<scheme://…>` autolinks. */
export function linksIn(markdown: string): string[] {
  const text = prose(markdown);
  const inline = [...text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)];
  const auto = [...text.matchAll(/<([a-z][a-z0-9+.-]*:\/\/[^>\s]+)>/gi)];
  return [...inline, ...auto].map((match) => match[1]!);
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

const anchorsOf = (markdown: string): Set<string> =>
  new Set([...prose(markdown).matchAll(/^#{1,6}\s+(.+)$/gm)].map((match) => slug(match[1]!)));

/** Hosts an example URL may name: this machine, or a placeholder such as `<its address>`. */
const isLocalExample = (url: string): boolean =>
  /^https?:\/\/((localhost|127\.0\.0\.1|\[::1\])(?=[:/]|$)|<)/i.test(url);

describe('the docs', () => {
  it(`README.md is one page: under ${README_MAX_LINES} lines`, () => {
    expect(read('README.md').split('\n').length).toBeLessThan(README_MAX_LINES);
  });

  it('finds the pages and their links', () => {
    expect(pages()).toEqual(expect.arrayContaining(['README.md', 'docs/guarantees.md']));
    expect(linksIn('[a](b.md) ![c](d.png) <http://localhost:8000/docs>')).toEqual([
      'b.md',
      'd.png',
      'http://localhost:8000/docs',
    ]);
  });

  it.each(pages())('%s: every relative link points at a file in the repository', (page) => {
    const broken: string[] = [];
    for (const link of linksIn(read(page))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // absolute: the next test's job
      const [target = '', fragment] = link.split('#');
      const file = target ? path.resolve(ROOT, path.dirname(page), target) : path.join(ROOT, page);
      const fromRoot = path.relative(ROOT, file);
      if (fromRoot.startsWith('..') || path.isAbsolute(fromRoot)) {
        broken.push(`${link}: leaves the repository`);
      } else if (!fs.existsSync(file)) {
        if (!GENERATED.has(fromRoot)) broken.push(`${link}: no such file`);
      } else if (fragment && file.endsWith('.md') && !anchorsOf(read(fromRoot)).has(fragment)) {
        broken.push(`${link}: no heading #${fragment} in ${fromRoot}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it.each(pages())('%s: no link or URL leaves the repository but localhost examples', (page) => {
    const markdown = read(page);
    const outside = [
      ...linksIn(markdown).filter((link) => /^[a-z][a-z0-9+.-]*:/i.test(link)),
      ...(markdown.match(/https?:\/\/[^\s)>`'"]+/gi) ?? []),
    ].filter((url) => !isLocalExample(url));
    expect(outside).toEqual([]);
  });
});
