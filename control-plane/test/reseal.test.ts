// Key rotation of SSH credentials at rest; embedded store.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, openDatabase, type Db } from '../src/store/database.ts';
import { Sealer } from '../src/secrets/sealer.ts';
import { openCredentials, sealCredential } from '../src/servers/credentials.ts';
import { resealServers } from '../src/servers/reseal.ts';

let db: Db;
const dir = mkdtempSync(join(tmpdir(), 'cronium-reseal-'));

before(async () => {
  db = (await openDatabase({ dataDir: dir })).db;
  await migrate(db);
});
after(async () => {
  await db?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

test('rotating the master key seals every credential again with the new key', async () => {
  const oldKey = randomBytes(32);
  const before = new Sealer(oldKey);
  await db
    .insertInto('servers')
    .values({
      id: 's1',
      owner_id: 'admin',
      name: 's1',
      host: '10.0.0.1',
      port: 22,
      username: 'u',
      private_key_sealed: sealCredential(before, 's1', 'private_key', 'KEY MATERIAL'),
      password_sealed: sealCredential(before, 's1', 'password', 'hunter2'),
      labels: '{}',
    })
    .execute();
  const newKey = randomBytes(32);
  const rotated = new Sealer(newKey, [oldKey]);
  assert.equal(await resealServers(db, rotated), 1);
  assert.equal(await resealServers(db, rotated), 0, 'nothing left to reseal');
  const row = await db.selectFrom('servers').selectAll().where('id', '=', 's1').executeTakeFirstOrThrow();
  assert.equal(rotated.stale(row.private_key_sealed!), false);
  // The old key can now be dropped: the new key alone opens them.
  assert.deepEqual(openCredentials(new Sealer(newKey), row), { privateKey: 'KEY MATERIAL', password: 'hunter2' });
  assert.throws(() => openCredentials(new Sealer(oldKey), row), /unknown key/);
});
