import type { FastifyReply, FastifyRequest } from 'fastify';
import { HttpProblem } from './errors.js';

export interface Page<T> {
  items: T[];
  /** True when at least one more item follows the last one. */
  hasMore: boolean;
}

export interface PageRequest {
  limit: number;
  /** Id of the last item of the previous page; from the start when absent. */
  after?: string | undefined;
}

/**
 * Keyset pagination over an increasing `seq` column: finds the `seq` of the `after` item, then
 * reads one row more than asked to learn whether another page follows. Cost depends on the page
 * size, not on how deep the page is. Answers undefined when `after` names no item.
 */
export async function readPage<Row>(
  page: PageRequest,
  findSeq: (id: string) => Promise<number | undefined>,
  readAfterSeq: (seq: number, count: number) => Promise<Row[]>,
): Promise<Page<Row> | undefined> {
  let afterSeq = 0;
  if (page.after !== undefined) {
    const seq = await findSeq(page.after);
    if (seq === undefined) return undefined;
    afterSeq = seq;
  }
  const rows = await readAfterSeq(afterSeq, page.limit + 1);
  return { items: rows.slice(0, page.limit), hasMore: rows.length > page.limit };
}

/**
 * Answers a page: its items as the body and, when more follow, a `Link: <…>; rel="next"` header
 * relative to the current request (RFC 8288). `query` holds the filters to carry to the next page.
 */
export function sendPage<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  page: Page<T> | undefined,
  query: { limit: number; after?: string | number | undefined } & Record<
    string,
    string | number | undefined
  >,
  cursorOf: (item: T) => string | number = (item) => (item as { id: string }).id,
): T[] {
  if (!page) {
    throw new HttpProblem(
      400,
      'unknown_cursor',
      `after=${query.after} is not the id of any item in this list; pass the last id of the previous page.`,
    );
  }
  const last = page.items.at(-1);
  if (page.hasMore && last !== undefined) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries({ ...query, after: cursorOf(last) })) {
      if (value !== undefined) params.set(key, String(value));
    }
    const path = request.url.split('?')[0] ?? request.url;
    reply.header('link', `<${path}?${params.toString()}>; rel="next"`);
  }
  return page.items;
}
