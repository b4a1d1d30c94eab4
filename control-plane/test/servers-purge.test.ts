// Deleted servers are kept 30 days, then purged; embedded store.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { migrate, openDatabase, type Db } from '../src/store/database.ts';
import { purgeDeletedServers } from '../src/servers/purge.ts';

let db: Db;
const dir = mkdtempSync(join(tmpdir(), 'cronium-purge-'));

before(async () => {
  db = (await openDatabase({ dataDir: dir })).db;
  await migrate(db);
});
after(async () => {
  await db?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

test('a server deleted 31 days ago is purged; one deleted yesterday and a live one are kept', async () => {
  const server = (id: string, deletedDaysAgo: number | null) => ({
    id,
    owner_id: 'admin',
    name: id,
    host: '10.0.0.1',
    port: 22,
    username: 'u',
    private_key_sealed: 'v1:x:y:z:w',
    password_sealed: null,
    labels: '{}',
    deleted_at: deletedDaysAgo === null ? null : sql<Date>`now() - ${deletedDaysAgo} * interval '1 day'`,
  });
  await db.insertInto('servers').values([server('old', 31), server('recent', 1), server('live', null)]).execute();
  assert.equal(await purgeDeletedServers(db), 1);
  const left = (await db.selectFrom('servers').select('id').orderBy('id').execute()).map((row) => row.id);
  assert.deepEqual(left, ['live', 'recent']);
});
