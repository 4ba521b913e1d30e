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

describe('a SQLite database', () => {
  it('after checkpointSoon, holds an overwritten value in neither its file nor its log', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mip-db-'));
    const file = path.join(dir, 'test.sqlite');
    database = await openDatabase({ sqliteFile: file });
    const { db } = database;
    await sql`create table people (id integer primary key, name text)`.execute(db);
    await sql`insert into people (name) values ('Wilhelmina-Quarrington')`.execute(db);
    await sql`update people set name = '' where id = 1`.execute(db);
    const holds = (name: string) =>
      fs.existsSync(name) && fs.readFileSync(name).includes(Buffer.from('Wilhelmina'));
    // Until the log is checkpointed, its older frames still hold the name.
    expect(holds(`${file}-wal`)).toBe(true);
    database.checkpointSoon!();
    database.checkpointSoon!();
    await waitUntil(async () => fs.statSync(`${file}-wal`).size === 0, 5_000, 'the log truncated');
    expect(holds(file)).toBe(false);
    expect(holds(`${file}-wal`)).toBe(false);
  });
});
