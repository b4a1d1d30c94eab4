// The two stores the queue and scheduler tests run against: embedded PGlite and a fresh Postgres database.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate, openDatabase, type Db } from '../src/store/database.ts';
import type { EventRow, NewEventRow } from '../src/store/schema.ts';
import { EMPTY_SELECTOR } from '../src/domain/selector.ts';

export const STORES = ['pglite', 'postgres'] as const;
export type StoreName = (typeof STORES)[number];

const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** A migrated, empty store of the given kind, and how to remove it. */
export async function openTestStore(store: StoreName, prefix: string): Promise<{ db: Db; close: () => Promise<void> }> {
  let db: Db;
  let dataDir: string | undefined;
  let dbName: string | undefined;
  if (store === 'postgres') {
    dbName = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
    await adminQuery(`create database ${dbName}`);
    ({ db } = await openDatabase({ url: `postgres://postgres@127.0.0.1:5432/${dbName}`, dataDir: tmpdir(), poolSize: 8 }));
  } else {
    dataDir = mkdtempSync(join(tmpdir(), `cronium-${prefix}-`));
    ({ db } = await openDatabase({ dataDir }));
  }
  await migrate(db);
  return {
    db,
    async close() {
      await db.destroy();
      if (dbName) await adminQuery(`drop database if exists ${dbName} with (force)`);
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Stores a bash event with the defaults the API would give it; `fields` override columns. */
export async function insertEvent(db: Db, ownerId: string, fields: Partial<NewEventRow> = {}): Promise<EventRow> {
  return db
    .insertInto('events')
    .values({
      id: randomUUID(),
      owner_id: ownerId,
      name: `event-${randomBytes(3).toString('hex')}`,
      type: 'bash',
      script: 'true',
      env: '{}',
      timeout_seconds: 60,
      target: JSON.stringify({ selector: EMPTY_SELECTOR }),
      schedule: 'null',
      status: 'active',
      priority: 1,
      http: 'null',
      memory_mb: 256,
      cpus: 1,
      ...fields,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}
