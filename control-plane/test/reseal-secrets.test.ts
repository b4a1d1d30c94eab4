// Key rotation of secret variables and notification channel credentials; embedded store.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Db } from '../src/store/database.ts';
import { Sealer } from '../src/secrets/sealer.ts';
import { openVariable, sealVariable } from '../src/variables/sealing.ts';
import { resealVariables } from '../src/variables/store.ts';
import { openChannel, resealChannels, sealChannelSecrets, splitConfig } from '../src/notifications/channels.ts';
import { openTestStore } from './test-stores.ts';

let db: Db;
let close: () => Promise<void>;

before(async () => {
  ({ db, close } = await openTestStore('pglite', 'reseal-secrets'));
});
after(async () => {
  await close?.();
});

test('rotating the master key seals secret variables and channel credentials again with the new key', async () => {
  const oldKey = randomBytes(32);
  const before = new Sealer(oldKey);
  await db.insertInto('variables').values({ owner_id: 'o', key: 'TOKEN', value: sealVariable(before, 'o', 'TOKEN', 'hunter2'), secret: true }).execute();
  await db.insertInto('variables').values({ owner_id: 'o', key: 'PLAIN', value: 'plain' }).execute();
  const config = { kind: 'email', host: 'smtp.example.com', port: 587, tls: 'starttls', username: 'u', password: 'mail-pass', from: 'a@example.com', to: ['b@example.com'] } as const;
  const { kind, settings, secrets } = splitConfig(config);
  await db.insertInto('notification_channels').values({ id: 'c1', owner_id: 'o', name: 'mail', kind, settings: JSON.stringify(settings), secrets_sealed: sealChannelSecrets(before, 'c1', secrets) }).execute();

  const newKey = randomBytes(32);
  const rotated = new Sealer(newKey, [oldKey]);
  assert.equal(await resealVariables(db, rotated), 1);
  assert.equal(await resealChannels(db, rotated), 1);
  assert.equal(await resealVariables(db, rotated), 0, 'nothing left to reseal');
  assert.equal(await resealChannels(db, rotated), 0);

  const only = new Sealer(newKey);
  const variable = await db.selectFrom('variables').selectAll().where('key', '=', 'TOKEN').executeTakeFirstOrThrow();
  assert.equal(openVariable(only, 'o', 'TOKEN', variable.value), 'hunter2');
  assert.equal((await db.selectFrom('variables').select('value').where('key', '=', 'PLAIN').executeTakeFirstOrThrow()).value, 'plain');
  const channel = await db.selectFrom('notification_channels').selectAll().where('id', '=', 'c1').executeTakeFirstOrThrow();
  assert.deepEqual(openChannel(only, channel), config);
  assert.throws(() => openVariable(new Sealer(oldKey), 'o', 'TOKEN', variable.value), /unknown key/);
});
