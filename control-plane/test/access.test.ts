import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, createRouterTransport, type Interceptor } from '@connectrpc/connect';
import { create as createMessage, toJson } from '@bufbuild/protobuf';
import { CreateEventRequestSchema, RunEventRequestSchema } from '@cronium/proto/api/v1/event';
import { randomBytes, scryptSync } from 'node:crypto';
import { VariableService } from '@cronium/proto/api/v1/variable';
import { hashPassword, verifyDecoy, verifyPassword } from '../src/auth/passwords.ts';
import { FailureBackoff, RateLimiter } from '../src/auth/rate-limit.ts';
import { audited, changeInterceptor, fieldNames } from '../src/api/changes.ts';
import { principalKey } from '../src/api/auth.ts';
import type { Db } from '../src/store/database.ts';
import { openTestStore } from './test-stores.ts';
import { Sealer } from '../src/secrets/sealer.ts';
import { loadSessionKey } from '../src/auth/session-key.ts';
import { resealClusterKeys } from '../src/pki/cluster-keys.ts';

describe('passwords', () => {
  test('scrypt hashes carry their parameters and a fresh salt; only the right password verifies', async () => {
    const first = await hashPassword('correct horse battery');
    const second = await hashPassword('correct horse battery');
    assert.match(first, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    assert.notEqual(first, second, 'a salt per hash');
    assert.equal(await verifyPassword('correct horse battery', first), true);
    assert.equal(await verifyPassword('correct horse batterY', first), false);
    assert.equal(await verifyPassword('', first), false);
    assert.equal(await verifyPassword('correct horse battery', first.replace('$32768$', '$16384$')), false, 'same salt, other N: another key');
    // Costs are read from each hash, so hashes made with other costs keep verifying.
    const salt = randomBytes(16);
    const older = ['scrypt', 16384, 8, 1, salt.toString('base64url'), scryptSync('old one', salt, 32, { N: 16384, r: 8, p: 1 }).toString('base64url')].join('$');
    assert.equal(await verifyPassword('old one', older), true);
    assert.equal(await verifyPassword('x', 'bcrypt$whatever'), false);
    assert.equal(await verifyDecoy('anything'), false);
  });
});

describe('rate limiter', () => {
  test('a burst of `capacity`, then refusals with the wait until the next token, refilled over time', () => {
    const limiter = new RateLimiter({ capacity: 3, refillPerSecond: 2 });
    const t = 1_000_000;
    for (let i = 0; i < 3; i++) assert.deepEqual(limiter.take('a', t), { ok: true });
    assert.deepEqual(limiter.take('a', t), { ok: false, retryAfterMs: 500 });
    assert.deepEqual(limiter.take('b', t), { ok: true }, 'keys are separate');
    assert.equal(limiter.waitMs('a', t + 250), 250);
    assert.deepEqual(limiter.take('a', t + 500), { ok: true });
    assert.equal(limiter.take('a', t + 500).ok, false);
    for (let i = 0; i < 3; i++) assert.equal(limiter.take('a', t + 60_000).ok, true, 'never more than capacity after a long pause');
    assert.equal(limiter.take('a', t + 60_000).ok, false);
  });
});

describe('sign-in backoff', () => {
  test('`free` failures, then locks that double, up to the cap; a success or an hour of quiet clears them', () => {
    const backoff = new FailureBackoff({ free: 3, baseMs: 10_000, maxMs: 60_000 });
    let t = 5_000_000;
    backoff.failed('e', t);
    backoff.failed('e', t);
    assert.equal(backoff.waitMs('e', t), 0, 'two failures are free');
    backoff.failed('e', t);
    assert.equal(backoff.waitMs('e', t), 10_000);
    assert.equal(backoff.waitMs('other', t), 0);
    const locks = [];
    for (let i = 0; i < 4; i++) {
      t += backoff.waitMs('e', t);
      backoff.failed('e', t);
      locks.push(backoff.waitMs('e', t));
    }
    assert.deepEqual(locks, [20_000, 40_000, 60_000, 60_000]);
    backoff.succeeded('e');
    assert.equal(backoff.waitMs('e', t), 0);
    backoff.failed('q', t);
    backoff.failed('q', t);
    backoff.failed('q', t + 3_600_001);
    assert.equal(backoff.waitMs('q', t + 3_600_001), 0, 'old failures are forgotten');
  });
});

describe('audit field names', () => {
  test('names the fields a request set, one level into the object, never a value', () => {
    const create = toJson(CreateEventRequestSchema, createMessage(CreateEventRequestSchema, { event: { name: 'n', script: 'secret-script', env: { TOKEN: 'v' } } }));
    assert.deepEqual(fieldNames(CreateEventRequestSchema, create as Record<string, unknown>), ['event.name', 'event.script', 'event.env']);
    // A run's input is data, not a message of ours: named, not opened.
    const run = toJson(RunEventRequestSchema, createMessage(RunEventRequestSchema, { id: 'e1', input: { kind: { case: 'stringValue', value: 'secret-input' } } }));
    assert.deepEqual(fieldNames(RunEventRequestSchema, run as Record<string, unknown>), ['id', 'input']);
  });
});

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`session key and audit rows in the store (${kind})`, () => {
    let store: Awaited<ReturnType<typeof openTestStore>>;
    before(async () => {
      store = await openTestStore(kind, 'access');
    });
    after(async () => store?.close());

    const asAlice: Interceptor = (next) => (req) => {
      req.contextValues.set(principalKey, { ownerId: 'alice', role: 'user', credential: 'token', credentialId: 'tok-1' });
      return next(req);
    };
    /** SetVariable stores the variable, then fails when asked to: after its write, before the commit. */
    function client(db: Db) {
      const transport = createRouterTransport(
        (router) =>
          router.service(VariableService, {
            async setVariable(req, ctx) {
              return audited(db, ctx, async (tx) => {
                await tx.insertInto('variables').values({ owner_id: 'alice', key: req.key, value: req.value, secret: false }).execute();
                if (req.value === 'fail') throw new Error('failed after writing');
                return { variable: { key: req.key } };
              });
            },
            async deleteVariable() {
              return {};
            },
          }),
        { router: { interceptors: [asAlice, changeInterceptor(db, new Sealer(randomBytes(32)))] } },
      );
      return createClient(VariableService, transport);
    }

    test('the session key is made once, shared, and sealed again with a new master key', async () => {
      const { db } = store;
      const oldKey = randomBytes(32);
      const first = await loadSessionKey(db, new Sealer(oldKey));
      assert.deepEqual(await loadSessionKey(db, new Sealer(oldKey)), first, 'a second replica gets the same key');
      const newKey = randomBytes(32);
      assert.equal(await resealClusterKeys(db, new Sealer(newKey, [oldKey])), 1);
      assert.deepEqual(await loadSessionKey(db, new Sealer(newKey)), first, 'opens with the new key alone');
    });

    test('a change that commits has its row; one that fails has neither change nor row', async () => {
      const { db } = store;
      const api = client(db);
      await api.setVariable({ key: 'KEPT', value: 'top-secret-value' });
      await assert.rejects(api.setVariable({ key: 'LOST', value: 'fail' }));
      await api.deleteVariable({ key: 'KEPT' });
      const rows = await db.selectFrom('audit_events').selectAll().orderBy('id').execute();
      assert.deepEqual(
        rows.map((row) => [row.method, row.object_type, row.object_id, row.user_id, row.credential_id]),
        [
          ['cronium.api.v1.VariableService/SetVariable', 'variable', 'KEPT', 'alice', 'tok-1'],
          // No transaction of its own: recorded by the interceptor after it answered.
          ['cronium.api.v1.VariableService/DeleteVariable', 'variable', 'KEPT', 'alice', 'tok-1'],
        ],
      );
      assert.deepEqual(rows[0]!.fields, ['key', 'value']);
      assert.ok(!JSON.stringify(rows).includes('top-secret-value'));
      assert.equal(await db.selectFrom('variables').select('key').where('key', '=', 'LOST').executeTakeFirst(), undefined);
    });
  });
}
