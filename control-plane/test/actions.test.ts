// Conditional actions and the notification outbox, on both stores: what a
// finished run causes commits with the run's end or not at all, and the sender
// delivers the outbox after the commit, with retries, at least once.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { inTransaction, type Db } from '../src/store/database.ts';
import { insertEvent, openTestStore } from './test-stores.ts';
import type { ActionRow, EventRow, JobRow } from '../src/store/schema.ts';
import { enqueueRun } from '../src/queue/enqueue.ts';
import { claimJobs } from '../src/queue/claim.ts';
import { completeAttempt, type AttemptResult } from '../src/queue/transitions.ts';
import { MAX_ACTION_CHAIN_DEPTH } from '../src/actions/run-actions.ts';
import { Sealer } from '../src/secrets/sealer.ts';
import { sealChannelSecrets, splitConfig } from '../src/notifications/channels.ts';
import { NotificationSender } from '../src/notifications/sender.ts';
import { openVariable, sealVariable, useVariableSealer } from '../src/variables/sealing.ts';
import { variablesOfOwners } from '../src/variables/store.ts';
import { HttpReceiver } from '../../test/receivers.ts';

const OWNER = 'owner-1';
const sealer = new Sealer(randomBytes(32));

for (const store of ['pglite', 'postgres'] as const) {
  describe(`actions and notifications on ${store}`, () => {
    let db: Db;
    let close: () => Promise<void>;
    let receiver: HttpReceiver;

    before(async () => {
      ({ db, close } = await openTestStore(store, 'actions'));
      receiver = await new HttpReceiver().start();
    });
    after(async () => {
      await receiver?.stop();
      await close?.();
    });
    beforeEach(async () => {
      await db.deleteFrom('notification_deliveries').execute();
      await db.deleteFrom('notification_channels').execute();
      await db.deleteFrom('jobs').execute();
      await db.deleteFrom('runs').execute();
      await db.deleteFrom('variables').execute();
      receiver.requests.length = 0;
      receiver.answers.length = 0;
    });

    async function makeEvent(actions: ActionRow[] = [], id = randomUUID()): Promise<EventRow> {
      return insertEvent(db, OWNER, { id, name: 'nightly', actions: JSON.stringify(actions) });
    }

    async function makeChannel(path: string): Promise<string> {
      const id = randomUUID();
      const { kind, settings, secrets } = splitConfig({ kind: 'webhook', url: receiver.url(path), headers: {}, hmacSecret: '' });
      await db.insertInto('notification_channels').values({ id, owner_id: OWNER, name: path, kind, settings: JSON.stringify(settings), secrets_sealed: sealChannelSecrets(sealer, id, secrets) }).execute();
      return id;
    }

    /** Enqueues a run of the event and offers its job, ready for a result. */
    async function offeredJob(event: EventRow): Promise<{ runId: string; job: JobRow }> {
      const { run } = await enqueueRun(db, event, null, []);
      const [job] = await claimJobs(db, [{ id: 'agent-a', labels: {}, executors: ['docker'], freeSlots: 10 }], 30_000);
      assert.ok(job && job.run_id === run.id);
      return { runId: run.id, job };
    }

    const fence = (job: JobRow) => ({ jobId: job.id, attempt: job.attempt, leaseId: job.lease_id! });
    const failed: AttemptResult = { status: 'failed', exitCode: 3, error: 'exit status 3', output: 'boom', variablesSet: { REGION: 'eu' } };
    const deliveries = () => db.selectFrom('notification_deliveries').selectAll().orderBy('created_at').execute();

    test('the run that ends writes its notification to the outbox in the same commit, rendered', async () => {
      const channelId = await makeChannel('/hook');
      const event = await makeEvent([
        { trigger: 'on_failure', notify: { channelId, template: '{{event.name}} {{run.status}} {{run.exitCode}} {{output}} {{variables.REGION}}', subject: '' } },
        { trigger: 'on_success', notify: { channelId, template: 'not this one', subject: '' } },
      ]);
      const { runId, job } = await offeredJob(event);
      assert.equal((await completeAttempt(db, fence(job), failed)).outcome, 'applied');
      const rows = await deliveries();
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.run_id, runId);
      assert.equal(rows[0]!.status, 'pending');
      assert.equal(rows[0]!.message.text, 'nightly failed 3 boom eu');
      assert.equal(rows[0]!.message.subject, '[Cronium] nightly failed');
    });

    test('when the transaction that ends the run rolls back, its actions roll back with it', async () => {
      const channelId = await makeChannel('/hook');
      const next = await makeEvent();
      const event = await makeEvent([
        { trigger: 'always', notify: { channelId, template: '', subject: '' } },
        { trigger: 'always', runEvent: { eventId: next.id } },
      ]);
      const { runId, job } = await offeredJob(event);
      await assert.rejects(
        inTransaction(db, async (tx) => {
          await completeAttempt(tx, fence(job), failed);
          throw new Error('crash before the commit');
        }),
        /crash before the commit/,
      );
      assert.equal((await deliveries()).length, 0);
      assert.equal((await db.selectFrom('runs').select('id').where('event_id', '=', next.id).execute()).length, 0);
      assert.equal((await db.selectFrom('runs').select('status').where('id', '=', runId).executeTakeFirstOrThrow()).status, 'running');
      await completeAttempt(db, fence(job), failed);
      assert.equal((await deliveries()).length, 1);
      assert.equal((await db.selectFrom('runs').select('id').where('event_id', '=', next.id).execute()).length, 1);
    });

    test('runEvent passes the output on as input; a chain stops at the depth cap', async () => {
      const id = randomUUID();
      const event = await makeEvent([{ trigger: 'on_success', runEvent: { eventId: id } }], id);
      const { runId, job } = await offeredJob(event);
      await completeAttempt(db, fence(job), { status: 'succeeded', exitCode: 0, error: '', output: { n: 1 } });
      const next = await db.selectFrom('runs').selectAll().where('caused_by_run_id', '=', runId).executeTakeFirstOrThrow();
      assert.deepEqual(next.input, { n: 1 });
      assert.equal(next.action_depth, 1);
      const nextJob = await db.selectFrom('jobs').selectAll().where('run_id', '=', next.id).executeTakeFirstOrThrow();
      assert.deepEqual(nextJob.spec.input, { n: 1 });

      await db.updateTable('runs').set({ action_depth: MAX_ACTION_CHAIN_DEPTH }).where('id', '=', next.id).execute();
      const [claimed] = await claimJobs(db, [{ id: 'agent-a', labels: {}, executors: ['docker'], freeSlots: 10 }], 30_000);
      await completeAttempt(db, fence(claimed!), { status: 'succeeded', exitCode: 0, error: '' });
      assert.equal((await db.selectFrom('runs').select('id').where('caused_by_run_id', '=', next.id).execute()).length, 0, 'no run past the cap');
    });

    test('ACTION_ON_CONDITION fires only for a run whose script set the condition true', async () => {
      const channelId = await makeChannel('/condition');
      const event = await makeEvent([{ trigger: 'on_condition', notify: { channelId, template: '{{run.status}}', subject: '' } }]);
      for (const condition of [true, false, undefined]) {
        const { job } = await offeredJob(event);
        await completeAttempt(db, fence(job), { status: 'succeeded', exitCode: 0, error: '', condition });
      }
      assert.equal((await deliveries()).length, 1);
    });

    test("a script's setVariable of a secret key is stored sealed", async () => {
      useVariableSealer(sealer);
      await db.insertInto('variables').values({ owner_id: OWNER, key: 'TOKEN', value: sealVariable(sealer, OWNER, 'TOKEN', 'old'), secret: true }).execute();
      const { job } = await offeredJob(await makeEvent());
      await completeAttempt(db, fence(job), { status: 'succeeded', exitCode: 0, error: '', variablesSet: { TOKEN: 'brand-new', PLAIN: 'p' } });
      const rows = await db.selectFrom('variables').selectAll().orderBy('key').execute();
      assert.deepEqual(rows.map((r) => [r.key, r.secret]), [['PLAIN', false], ['TOKEN', true]]);
      assert.ok(!rows[1]!.value.includes('brand-new'));
      assert.equal(openVariable(sealer, OWNER, 'TOKEN', rows[1]!.value), 'brand-new');
      const offered = (await variablesOfOwners(db, sealer, [OWNER])).get(OWNER)!;
      assert.deepEqual(offered, { variables: { PLAIN: 'p', TOKEN: 'brand-new' }, secrets: { TOKEN: 'brand-new' } });
    });

    describe('the sender', () => {
      const sender = () => new NotificationSender({ db, sealer, log: () => {}, baseDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 });
      const outboxRow = async (channelId: string) => {
        const id = randomUUID();
        await db.insertInto('notification_deliveries').values({ id, owner_id: OWNER, channel_id: channelId, run_id: null, event_id: null, message: JSON.stringify({ subject: 's', text: 't', event: null, run: null }) }).execute();
        return id;
      };
      const row = (id: string) => db.selectFrom('notification_deliveries').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      const untilSettled = async (id: string, s: NotificationSender) => {
        for (let i = 0; i < 200 && (await row(id)).status === 'pending'; i++) {
          await s.runOnce();
          await new Promise((r) => setTimeout(r, 15));
        }
        return row(id);
      };

      test('retries with backoff, then gives up and keeps the last error', async () => {
        const id = await outboxRow(await makeChannel('/down'));
        receiver.answers.push(500, 500, 500, 500);
        const settled = await untilSettled(id, sender());
        assert.equal(settled.status, 'failed');
        assert.equal(settled.attempts, 3);
        assert.match(settled.last_error, /^HTTP 500/);
        assert.equal(receiver.on('/down').length, 3);
      });

      test('a delivery to a deleted channel fails at once', async () => {
        const channelId = await makeChannel('/gone');
        const id = await outboxRow(channelId);
        await db.updateTable('notification_channels').set({ deleted_at: sql<Date>`now()` }).where('id', '=', channelId).execute();
        const settled = await untilSettled(id, sender());
        assert.equal(settled.status, 'failed');
        assert.equal(settled.attempts, 1);
        assert.equal(settled.last_error, 'the channel was deleted');
        assert.equal(receiver.on('/gone').length, 0);
      });

      test('two senders at once deliver a notification once; a claim left by a dead sender is taken again', async () => {
        const id = await outboxRow(await makeChannel('/once'));
        const tried = await Promise.all([sender().runOnce(), sender().runOnce()]);
        assert.equal(tried[0]! + tried[1]!, 1);
        assert.equal((await row(id)).status, 'delivered');
        assert.equal(receiver.on('/once').length, 1);

        const orphan = await outboxRow(await makeChannel('/orphan'));
        await db.updateTable('notification_deliveries').set({ locked_until: sql<Date>`now() + interval '1 hour'` }).where('id', '=', orphan).execute();
        assert.equal(await sender().runOnce(), 0, 'a live claim is left alone');
        await db.updateTable('notification_deliveries').set({ locked_until: sql<Date>`now() - interval '1 second'` }).where('id', '=', orphan).execute();
        assert.equal((await untilSettled(orphan, sender())).status, 'delivered');
      });
    });
  });
}
