// Replicas share the agent CA and the join-token key through the database; embedded store.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, openDatabase, type Db } from '../src/store/database.ts';
import { Sealer } from '../src/secrets/sealer.ts';
import { loadOrCreateCa } from '../src/pki/ca.ts';
import { loadOrCreateSigner } from '../src/enrollment/join-tokens.ts';
import { ClusterKeyError, resealClusterKeys, syncClusterKeys } from '../src/pki/cluster-keys.ts';

let db: Db;
const dir = mkdtempSync(join(tmpdir(), 'cronium-cluster-keys-'));
const key = randomBytes(32);

before(async () => {
  db = (await openDatabase({ dataDir: join(dir, 'db') })).db;
  await migrate(db);
});
after(async () => {
  await db?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function replica(name: string, sealer: Sealer): Promise<string> {
  const pki = join(dir, name);
  mkdirSync(pki, { recursive: true });
  await syncClusterKeys(db, sealer, pki, async () => {
    await loadOrCreateCa(pki);
    await loadOrCreateSigner(pki);
  });
  return pki;
}

test('the second replica takes the CA and join-token key of the first, not its own', async () => {
  const first = await replica('first', new Sealer(key));
  const second = await replica('second', new Sealer(key));
  for (const file of ['ca.crt', 'ca.key', 'join-token.pub', 'join-token.key']) {
    assert.equal(readFileSync(join(second, file), 'utf8'), readFileSync(join(first, file), 'utf8'), file);
  }
  const stored = await db.selectFrom('cluster_keys').selectAll().execute();
  assert.deepEqual(stored.map((row) => row.name).sort(), ['agent-ca', 'join-token']);
  for (const row of stored) assert.ok(!row.private_sealed.includes('PRIVATE KEY'), 'private keys are sealed at rest');
});

test('a replica with another master key is refused with a message that says what to fix', async () => {
  await assert.rejects(replica('stranger', new Sealer(randomBytes(32))), (error: Error) => {
    assert.ok(error instanceof ClusterKeyError);
    assert.match(error.message, /same CRONIUM_ENCRYPTION_KEY/);
    return true;
  });
});

test('rotating the master key seals the cluster keys again; replicas with the new key still load them', async () => {
  const newKey = randomBytes(32);
  const rotated = new Sealer(newKey, [key]);
  assert.equal(await resealClusterKeys(db, rotated), 2);
  const pki = await replica('after-rotation', new Sealer(newKey));
  assert.equal(readFileSync(join(pki, 'ca.crt'), 'utf8'), readFileSync(join(dir, 'first', 'ca.crt'), 'utf8'));
});
