import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/core/db.js';
import { waitUntil } from '../support/platform.js';

let database: Database<unknown> | undefined;
let dir: string | undefined;
afterEach(async () => {
  await database?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  database = dir = undefined;
});

/** A database in a fresh folder, with one row per name and the names then deleted. */
async function openWithErasedRows(file: string, scrubAfterMs: number) {
  database = await openDatabase({ sqliteFile: file, scrubAfterMs });
  const { db } = database;
  await sql`create table people (id integer primary key, name text)`.execute(db);
  for (let i = 0; i < 2_000; i += 1) {
    await sql`insert into people (name) values (${`Wilhelmina-Quarrington-${i}`})`.execute(db);
  }
  await sql`delete from people where id > 1`.execute(db);
  await sql`update people set name = '' where id = 1`.execute(db);
  return database;
}

const holds = (name: string) =>
  fs.existsSync(name) && fs.readFileSync(name).includes(Buffer.from('Wilhelmina'));

async function freePages(db: Database<unknown>['db']) {
  const { rows } = await sql<{ freelist_count: number }>`pragma freelist_count`.execute(db);
  return rows[0]!.freelist_count;
}

describe('a SQLite database', () => {
  it('after scrubSoon, holds an erased value in neither its file nor its log, with no free page left', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mip-db-'));
    const file = path.join(dir, 'test.sqlite');
    const { db } = await openWithErasedRows(file, 50);
    // Until the log is checkpointed, its older frames still hold the names; the freed pages stay
    // in the file until it is rewritten.
    expect(holds(`${file}-wal`)).toBe(true);
    expect(await freePages(db)).toBeGreaterThan(0);
    database!.scrubSoon!();
    database!.scrubSoon!();
    expect(fs.existsSync(`${file}-scrub`)).toBe(true);
    await waitUntil(async () => !fs.existsSync(`${file}-scrub`), 5_000, 'the scrub done');
    expect(fs.statSync(`${file}-wal`).size).toBe(0);
    expect(await freePages(db)).toBe(0);
    expect(holds(file)).toBe(false);
    expect(holds(`${file}-wal`)).toBe(false);
  });

  it('runs a scrub that was still due when its process stopped once the file is opened again', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mip-db-'));
    const file = path.join(dir, 'test.sqlite');
    await openWithErasedRows(file, 3_600_000);
    database!.scrubSoon!();
    await database!.close();
    expect(fs.existsSync(`${file}-scrub`)).toBe(true);
    database = await openDatabase({ sqliteFile: file, scrubAfterMs: 50 });
    await waitUntil(async () => !fs.existsSync(`${file}-scrub`), 5_000, 'the scrub done');
    expect(await freePages(database.db)).toBe(0);
    expect(holds(file)).toBe(false);
  });
});
