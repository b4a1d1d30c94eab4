// A fresh, migrated store for a test file: embedded PGlite in a temporary
// folder, or a new Postgres database that is dropped afterwards.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate, openDatabase, type Db } from '../src/store/database.ts';

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

export async function openTestStore(kind: 'pglite' | 'postgres', prefix: string): Promise<{ db: Db; close: () => Promise<void> }> {
  let db: Db;
  let cleanup: () => Promise<void>;
  if (kind === 'postgres') {
    const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
    await adminQuery(`create database ${name}`);
    ({ db } = await openDatabase({ url: `postgres://postgres@127.0.0.1:5432/${name}`, dataDir: tmpdir() }));
    cleanup = () => adminQuery(`drop database if exists ${name} with (force)`);
  } else {
    const dir = mkdtempSync(join(tmpdir(), `cronium-${prefix}-`));
    ({ db } = await openDatabase({ dataDir: dir }));
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  }
  await migrate(db);
  return {
    db,
    async close() {
      await db.destroy();
      await cleanup();
    },
  };
}
