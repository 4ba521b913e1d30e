import { spawn, spawnSync } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Kysely } from 'kysely';
import { crmMigrations } from '../../src/crm/migrations.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { DIST, exitOf, startServiceProcess, type ServiceProcess } from '../support/processes.js';
import { waitUntil } from '../support/platform.js';

let database: TestDatabase<unknown> | undefined;
const running: ServiceProcess[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((service) => service.stop('SIGKILL')));
  await database?.drop();
  database = undefined;
});

describe('a service process', () => {
  it('stops with one line naming the variable, the value and what is allowed', () => {
    const result = spawnSync(process.execPath, [`${DIST}crm/main.js`], {
      env: { ...process.env, CRM_PORT: 'eighty' },
      encoding: 'utf8',
    });
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('CRM_PORT="eighty"');
    expect(lines[0]).toContain('0 to 65535');
  });

  it('refuses to listen on all interfaces without API_TOKEN', () => {
    const result = spawnSync(process.execPath, [`${DIST}inventory/main.js`], {
      env: { ...process.env, HOST: '0.0.0.0', API_TOKEN: '' },
      encoding: 'utf8',
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('API_TOKEN');
  });

  it('starts twice at once on one database, migrating it exactly once, and serves over HTTP', async () => {
    database = await createTestDatabase('crm');
    const env = { ...database.env, CRM_PORT: '0' };
    const [a, b] = await Promise.all([
      startServiceProcess('crm/main.js', env),
      startServiceProcess('crm/main.js', env),
    ]);
    running.push(a!, b!);
    const rows = await (database.db as Kysely<any>)
      .selectFrom('schema_migrations')
      .select('version')
      .execute();
    expect(rows.map((row) => row.version)).toEqual(crmMigrations.map((m) => m.version));
    const created = await fetch(`${a!.url}/customers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Jane Doe', email: 'jane.doe@example.com' }),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    // The other process reads the same database.
    const fetched = await fetch(`${b!.url}/customers/${id}`);
    expect(fetched.status).toBe(200);
  });

  it('exits 0 on SIGTERM after finishing, well within 10 s', async () => {
    database = await createTestDatabase('inventory');
    const service = await startServiceProcess('inventory/main.js', {
      ...database.env,
      INVENTORY_PORT: '0',
    });
    const started = Date.now();
    expect(await service.stop('SIGTERM')).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(service.output()).toContain('SIGTERM received');
  });

  it('on SIGTERM while its start hangs on a database that never answers, exits 1 at the shutdown deadline, saying so', async () => {
    // A "PostgreSQL server" that accepts connections and never says a word.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      const child = spawn(process.execPath, [`${DIST}inventory/main.js`], {
        env: {
          ...process.env,
          LOG_FORMAT: 'json',
          INVENTORY_PORT: '0',
          INVENTORY_DATABASE_URL: `postgres://nobody@127.0.0.1:${port}/never`,
          SHUTDOWN_TIMEOUT_MS: '5000',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      // Its stop signals are handled once it logs which database it uses (its start then hangs
      // on the migrations); a fixed pause was too short where loading its modules took a second.
      await waitUntil(
        () => output.includes('Using postgres database'),
        20_000,
        'the service to open its database',
      );
      const exited = exitOf(child);
      child.kill('SIGTERM');
      expect(await exited).toBe(1);
      expect(output).toContain('SIGTERM received');
      expect(output).toContain('Still starting 5000 ms after SIGTERM; exiting');
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
