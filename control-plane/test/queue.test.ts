// The job queue and its state machine, run against both stores: embedded PGlite
// and a fresh Postgres database. What is asserted is what a user would notice:
// which job runs where, that a job ends in exactly one terminal state, that a
// stale agent cannot overwrite a result, that retries and leases behave.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { Db } from '../src/store/database.ts';
import { STORES, openTestStore } from './test-stores.ts';
import type { EventRow, EventType, JobRow, Selector, Target } from '../src/store/schema.ts';
import { EMPTY_SELECTOR, type AgentCandidate } from '../src/domain/selector.ts';
import { enqueueRun, type RegisteredAgent } from '../src/queue/enqueue.ts';
import { claimJobs } from '../src/queue/claim.ts';
import {
  acceptOffer,
  acceptOffers,
  cancelJob,
  completeAttempt,
  completeAttempts,
  expireLeases,
  markStarted,
  markStartedMany,
  rejectOffer,
  renewLeases,
  requeueExpiredOffers,
  resumeAttempts,
  type AttemptResult,
  type Fence,
} from '../src/queue/transitions.ts';
import { appendLogs, readLogs, LOG_STREAMS } from '../src/queue/logs.ts';

const OWNER = 'owner-1';
/** Long enough that an offer never expires inside a test that does not want it to. */
const OFFER_MS = 30_000;
const LEASE_MS = 30_000;

const PRIORITY = { LOW: 0, NORMAL: 1, HIGH: 2, CRITICAL: 3 } as const;

function candidate(id: string, freeSlots = 10, labels: Record<string, string> = {}, executors: string[] = ['docker', 'http']): AgentCandidate {
  return { id, labels, executors, freeSlots };
}

function fenceOf(job: JobRow): Fence {
  assert.ok(job.lease_id, `job ${job.id} has a lease`);
  return { jobId: job.id, attempt: job.attempt, leaseId: job.lease_id };
}

const succeeded: AttemptResult = { status: 'succeeded', exitCode: 0, error: '' };
const failed = (exitCode = 1, error = 'exit status 1'): AttemptResult => ({ status: 'failed', exitCode, error });

for (const name of STORES) {
  const store = { name };
  describe(`job queue on ${store.name}`, () => {
    let db: Db;
    let close: (() => Promise<void>) | undefined;

    before(async () => {
      ({ db, close } = await openTestStore(store.name, 'cq'));
    });

    after(async () => {
      await close?.();
    });

    // Every test starts from an empty queue so that one test's leftovers are never claimed by another.
    beforeEach(async () => {
      await db.deleteFrom('job_logs').execute();
      await db.deleteFrom('jobs').execute();
      await db.deleteFrom('runs').execute();
      await db.deleteFrom('variables').execute();
    });

    async function makeEvent(
      options: { priority?: number; retries?: number; type?: EventType; selector?: Partial<Selector>; owner?: string } = {},
    ): Promise<EventRow> {
      const target: Target = { selector: { ...EMPTY_SELECTOR, ...options.selector } };
      const type = options.type ?? 'bash';
      return db
        .insertInto('events')
        .values({
          id: randomUUID(),
          owner_id: options.owner ?? OWNER,
          name: `event-${randomBytes(3).toString('hex')}`,
          type,
          script: 'echo hello',
          env: JSON.stringify({ GREETING: 'hi' }),
          timeout_seconds: 60,
          retries: options.retries ?? 0,
          target: JSON.stringify(target),
          schedule: JSON.stringify(null),
          status: 'active',
          priority: options.priority ?? PRIORITY.NORMAL,
          http: JSON.stringify(type === 'http' ? { method: 'GET', url: 'http://127.0.0.1:1/', headers: {}, body: '' } : null),
          memory_mb: 256,
          cpus: 1,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
    }

    async function enqueue(event: EventRow, agents: readonly RegisteredAgent[] = []) {
      return enqueueRun(db, event, { hello: 'world' }, agents);
    }

    async function jobRow(id: string): Promise<JobRow> {
      return db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    }

    async function runRow(id: string) {
      return db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    }

    /** Claims for one agent and expects exactly the job `jobId` to be offered to it. */
    async function claimOne(jobId: string, agentId = 'agent-a', offerTimeoutMs = OFFER_MS): Promise<JobRow> {
      const claimed = await claimJobs(db, [candidate(agentId)], offerTimeoutMs);
      assert.deepEqual(claimed.map((job) => job.id), [jobId], `job ${jobId} is offered to ${agentId}`);
      return claimed[0]!;
    }

    /** Enqueues one job of the event, offers it to `agentId` and has the agent accept and start it. */
    async function startedJob(event: EventRow, agentId = 'agent-a', leaseTtlMs = LEASE_MS) {
      const { run, jobIds } = await enqueue(event);
      const offered = await claimOne(jobIds[0]!, agentId);
      const fence = fenceOf(offered);
      assert.equal(await acceptOffer(db, fence, leaseTtlMs), 'applied');
      assert.equal((await markStarted(db, fence, new Date(), leaseTtlMs)).outcome, 'applied');
      return { run, fence, jobId: offered.id };
    }

    /** Makes a job waiting for its retry backoff claimable now. */
    async function skipBackoff(jobId: string): Promise<void> {
      await db.updateTable('jobs').set({ run_after: sql<Date>`now()` }).where('id', '=', jobId).execute();
    }

    describe('enqueue', () => {
      test('a run starts running with one queued job carrying a snapshot of the event', async () => {
        const event = await makeEvent({ retries: 2, priority: PRIORITY.HIGH });
        const { run, jobIds } = await enqueue(event);
        assert.equal(run.status, 'running');
        assert.equal(run.event_id, event.id);
        assert.equal(jobIds.length, 1);
        const job = await jobRow(jobIds[0]!);
        assert.equal(job.status, 'queued');
        assert.equal(job.attempt, 1);
        assert.equal(job.max_attempts, 3);
        assert.equal(job.priority, PRIORITY.HIGH);
        assert.equal(job.pinned_agent_id, null);
        assert.equal(job.spec.script, 'echo hello');
        assert.equal(job.spec.kind, 'bash');
        assert.deepEqual(job.spec.env, { GREETING: 'hi' });
        assert.deepEqual(job.spec.input, { hello: 'world' });
      });
    });

    describe('claiming', () => {
      test('CRITICAL is offered before LOW regardless of insert order', async () => {
        const low = await enqueue(await makeEvent({ priority: PRIORITY.LOW }));
        await sleep(5);
        const critical = await enqueue(await makeEvent({ priority: PRIORITY.CRITICAL }));
        const first = await claimJobs(db, [candidate('agent-a', 1)], OFFER_MS);
        assert.deepEqual(first.map((job) => job.id), critical.jobIds);
        const second = await claimJobs(db, [candidate('agent-a', 1)], OFFER_MS);
        assert.deepEqual(second.map((job) => job.id), low.jobIds);
      });

      test('an offer carries a fresh lease, the agent and an expiry', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const offered = await claimOne(jobIds[0]!, 'agent-a', OFFER_MS);
        assert.equal(offered.status, 'offered');
        assert.equal(offered.agent_id, 'agent-a');
        assert.ok(offered.lease_id && offered.lease_id.length > 0);
        assert.ok(offered.offer_expires_at instanceof Date && offered.offer_expires_at.getTime() > Date.now());
        assert.equal(offered.accepted_at, null);
        assert.deepEqual(await claimJobs(db, [candidate('agent-b')], OFFER_MS), [], 'an offered job is not offered again');
      });

      test('an agent with 2 free slots gets 2 of 5 jobs', async () => {
        const event = await makeEvent();
        for (let i = 0; i < 5; i++) await enqueue(event);
        const claimed = await claimJobs(db, [candidate('agent-a', 2)], OFFER_MS);
        assert.equal(claimed.length, 2);
        assert.ok(claimed.every((job) => job.agent_id === 'agent-a'));
        assert.deepEqual(await claimJobs(db, [candidate('agent-a', 0)], OFFER_MS), []);
        const queued = await db.selectFrom('jobs').select('id').where('status', '=', 'queued').execute();
        assert.equal(queued.length, 3);
      });

      test('free slots are respected per agent when several claim together', async () => {
        const event = await makeEvent();
        for (let i = 0; i < 5; i++) await enqueue(event);
        const claimed = await claimJobs(db, [candidate('agent-a', 1), candidate('agent-b', 3)], OFFER_MS);
        assert.equal(claimed.length, 4);
        assert.equal(claimed.filter((job) => job.agent_id === 'agent-a').length, 1);
        assert.equal(claimed.filter((job) => job.agent_id === 'agent-b').length, 3);
      });

      test('a job requiring zone=eu goes to an agent labelled zone=eu, never zone=us', async () => {
        const { jobIds } = await enqueue(await makeEvent({ selector: { required: [{ key: 'zone', op: 'eq', values: ['eu'] }] } }));
        assert.deepEqual(await claimJobs(db, [candidate('us-agent', 5, { zone: 'us' })], OFFER_MS), []);
        assert.equal((await jobRow(jobIds[0]!)).status, 'queued');
        const claimed = await claimJobs(db, [candidate('us-agent', 5, { zone: 'us' }), candidate('eu-agent', 1, { zone: 'eu' })], OFFER_MS);
        assert.deepEqual(claimed.map((job) => [job.id, job.agent_id]), [[jobIds[0], 'eu-agent']]);
      });

      test('an http job needs an agent with the http executor; a script job needs docker', async () => {
        const http = await enqueue(await makeEvent({ type: 'http' }));
        assert.deepEqual(await claimJobs(db, [candidate('docker-only', 5, {}, ['docker'])], OFFER_MS), []);
        const claimed = await claimJobs(db, [candidate('http-only', 5, {}, ['http'])], OFFER_MS);
        assert.deepEqual(claimed.map((job) => job.id), http.jobIds);
        assert.equal(claimed[0]?.spec.kind, 'http');
        assert.equal(claimed[0]?.spec.http?.method, 'GET');

        const script = await enqueue(await makeEvent({ type: 'python' }));
        assert.deepEqual(await claimJobs(db, [candidate('http-only', 5, {}, ['http'])], OFFER_MS), []);
        const scripted = await claimJobs(db, [candidate('docker-only', 5, {}, ['docker'])], OFFER_MS);
        assert.deepEqual(scripted.map((job) => job.id), script.jobIds);
      });

      test('a job waiting for its retry backoff is not offered yet', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        await db.updateTable('jobs').set({ run_after: sql<Date>`now() + interval '1 hour'` }).where('id', '=', jobIds[0]!).execute();
        assert.deepEqual(await claimJobs(db, [candidate('agent-a')], OFFER_MS), []);
      });

      test('free slots are read from agents whose freeSlots is a getter (as live sessions are)', async () => {
        for (let i = 0; i < 3; i++) await enqueue(await makeEvent());
        class LiveAgent {
          readonly id = 'live-agent';
          readonly labels = {};
          readonly executors = ['docker', 'http'];
          get freeSlots() {
            return 2;
          }
        }
        const claimed = await claimJobs(db, [new LiveAgent()], OFFER_MS);
        assert.equal(claimed.length, 2);
      });

      test('a job any agent can take is offered even behind 200 higher-priority jobs nobody matches', async () => {
        const eu = await enqueue(await makeEvent({ priority: PRIORITY.CRITICAL, selector: { required: [{ key: 'zone', op: 'eq', values: ['eu'] }] } }));
        await sql`
          insert into jobs (id, run_id, event_id, owner_id, max_attempts, status, priority, spec, selector)
          select gen_random_uuid()::text, run_id, event_id, owner_id, max_attempts, status, priority, spec, selector
          from jobs, generate_series(1, 200)
          where id = ${eu.jobIds[0]!}`.execute(db);
        const plain = await enqueue(await makeEvent({ priority: PRIORITY.LOW }));
        const claimed = await claimJobs(db, [candidate('us-agent', 5, { zone: 'us' })], OFFER_MS);
        assert.deepEqual(claimed.map((job) => job.id), plain.jobIds);
      });

      test('concurrent claims for different agents never offer the same job twice', async () => {
        const event = await makeEvent();
        for (let i = 0; i < 50; i++) await enqueue(event);
        const seen: JobRow[] = [];
        for (let round = 0; round < 30; round++) {
          const [a, b] = await Promise.all([
            claimJobs(db, [candidate('agent-a', 7)], OFFER_MS),
            claimJobs(db, [candidate('agent-b', 7)], OFFER_MS),
          ]);
          seen.push(...a, ...b);
          const ids = new Set(seen.map((job) => job.id));
          assert.equal(ids.size, seen.length, `round ${round}: a job id was returned twice`);
          if (a.length === 0 && b.length === 0) break;
        }
        assert.equal(seen.length, 50, 'every job was offered');
        const rows = await db.selectFrom('jobs').select(['id', 'status', 'agent_id', 'lease_id']).execute();
        assert.equal(rows.length, 50);
        const byId = new Map(seen.map((job) => [job.id, job]));
        for (const row of rows) {
          assert.equal(row.status, 'offered');
          assert.equal(row.agent_id, byId.get(row.id)?.agent_id, 'the stored agent is the one the job was offered to');
          assert.equal(row.lease_id, byId.get(row.id)?.lease_id);
        }
      });
    });

    describe('fan-out', () => {
      const web = { required: [{ key: 'role', op: 'eq' as const, values: ['web'] }] };
      const registered: RegisteredAgent[] = [
        { id: 'web-1', labels: { role: 'web' } },
        { id: 'db-1', labels: { role: 'db' } },
        { id: 'web-2', labels: { role: 'web' } },
        { id: 'web-3', labels: { role: 'web' } },
      ];

      test('all: true makes one job per matching agent, each pinned to it', async () => {
        const { jobIds } = await enqueue(await makeEvent({ selector: { ...web, all: true } }), registered);
        assert.equal(jobIds.length, 3);
        const rows = await db.selectFrom('jobs').selectAll().where('id', 'in', jobIds).execute();
        assert.deepEqual(rows.map((job) => job.pinned_agent_id).sort(), ['web-1', 'web-2', 'web-3']);
        assert.equal(new Set(rows.map((job) => job.run_id)).size, 1, 'one run');
      });

      test('count: 2 makes two jobs on two of the matching agents', async () => {
        const { jobIds } = await enqueue(await makeEvent({ selector: { ...web, count: 2 } }), registered);
        assert.equal(jobIds.length, 2);
        const rows = await db.selectFrom('jobs').select('pinned_agent_id').where('id', 'in', jobIds).execute();
        const pins = rows.map((job) => job.pinned_agent_id);
        assert.equal(new Set(pins).size, 2);
        assert.ok(pins.every((pin) => pin?.startsWith('web-')));
      });

      test('a pinned job is offered only to its agent', async () => {
        const { jobIds } = await enqueue(await makeEvent({ selector: { ...web, all: true } }), registered);
        // An unregistered agent that matches the selector gets none of them.
        assert.deepEqual(await claimJobs(db, [candidate('web-9', 10, { role: 'web' })], OFFER_MS), []);
        const first = await claimJobs(db, [candidate('web-1', 10, { role: 'web' })], OFFER_MS);
        assert.equal(first.length, 1, 'web-1 gets exactly its own job');
        assert.equal(first[0]?.pinned_agent_id, 'web-1');
        const rest = await claimJobs(db, [candidate('web-2', 10, { role: 'web' }), candidate('web-3', 10, { role: 'web' })], OFFER_MS);
        assert.equal(rest.length, 2);
        for (const job of rest) assert.equal(job.agent_id, job.pinned_agent_id);
        assert.deepEqual([...first, ...rest].map((job) => job.id).sort(), [...jobIds].sort());
      });

      test('with no matching agent a single unpinned job waits', async () => {
        const { jobIds } = await enqueue(await makeEvent({ selector: { required: [{ key: 'role', op: 'eq', values: ['cache'] }], all: true, preferred: [], count: 0 } }), registered);
        assert.equal(jobIds.length, 1);
        assert.equal((await jobRow(jobIds[0]!)).pinned_agent_id, null);
      });
    });

    describe('fencing', () => {
      test('a completion with a wrong lease or attempt is stale and changes nothing', async () => {
        const { fence, jobId } = await startedJob(await makeEvent());
        const before = await jobRow(jobId);
        assert.equal((await completeAttempt(db, { ...fence, leaseId: randomUUID() }, succeeded)).outcome, 'stale');
        assert.equal((await completeAttempt(db, { ...fence, attempt: 2 }, succeeded)).outcome, 'stale');
        assert.equal((await completeAttempt(db, { ...fence, jobId: randomUUID() }, succeeded)).outcome, 'stale');
        assert.deepEqual(await jobRow(jobId), before);
        assert.equal(before.status, 'running');
      });

      test('the same completion twice: applied, then duplicate; the first result stays', async () => {
        const { fence, jobId } = await startedJob(await makeEvent());
        const first = await completeAttempt(db, fence, { ...succeeded, output: { n: 1 } });
        assert.equal(first.outcome, 'applied');
        assert.equal(first.finished?.job.status, 'succeeded');
        const afterFirst = await jobRow(jobId);
        assert.equal((await completeAttempt(db, fence, { ...succeeded, output: { n: 1 } })).outcome, 'duplicate');
        assert.equal((await completeAttempt(db, fence, failed(9))).outcome, 'duplicate', 'no backward or sideways move');
        assert.deepEqual(await jobRow(jobId), afterFirst);
        assert.deepEqual(afterFirst.output, { n: 1 });
      });

      test('markStarted twice: applied, then duplicate', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const offered = await claimOne(jobIds[0]!, 'agent-a', OFFER_MS);
        const fence = fenceOf(offered);
        const at = new Date(Date.now() - 1000);
        const first = await markStarted(db, fence, at, LEASE_MS);
        assert.equal(first.outcome, 'applied');
        assert.equal(first.job?.status, 'running');
        assert.equal(first.job?.started_at?.getTime(), at.getTime());
        assert.ok(first.job?.accepted_at, 'a start implies acceptance');
        const second = await markStarted(db, fence, new Date(), LEASE_MS);
        assert.equal(second.outcome, 'duplicate');
        assert.equal((await jobRow(offered.id)).started_at?.getTime(), at.getTime(), 'the first start time stays');
        assert.equal((await markStarted(db, { ...fence, leaseId: randomUUID() }, new Date(), LEASE_MS)).outcome, 'stale');
      });

      test('acceptOffer: applied once, then duplicate; a wrong lease is stale', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const offered = await claimOne(jobIds[0]!, 'agent-a', OFFER_MS);
        const fence = fenceOf(offered);
        assert.equal(await acceptOffer(db, { ...fence, leaseId: randomUUID() }, LEASE_MS), 'stale');
        assert.equal(await acceptOffer(db, fence, LEASE_MS), 'applied');
        assert.equal(await acceptOffer(db, fence, LEASE_MS), 'duplicate');
        const row = await jobRow(offered.id);
        assert.ok(row.accepted_at);
        assert.ok(row.lease_expires_at && row.lease_expires_at.getTime() > Date.now());
      });

      test('two different completions at once: exactly one applied, and it decides the state', async () => {
        for (let i = 0; i < 5; i++) {
          const { fence, jobId, run } = await startedJob(await makeEvent());
          const results = await Promise.all([completeAttempt(db, fence, succeeded), completeAttempt(db, fence, failed(4))]);
          const outcomes = results.map((result) => result.outcome);
          assert.equal(outcomes.filter((outcome) => outcome === 'applied').length, 1, `outcomes ${outcomes.join(',')}`);
          assert.equal(outcomes.filter((outcome) => outcome === 'duplicate').length, 1, `outcomes ${outcomes.join(',')}`);
          const winner = results.find((result) => result.outcome === 'applied')!;
          const job = await jobRow(jobId);
          assert.equal(job.status, winner.finished?.job.status);
          const settled = await runRow(run.id);
          assert.equal(settled.status, job.status === 'succeeded' ? 'succeeded' : 'failed');
          assert.equal(settled.exit_code, job.status === 'succeeded' ? 0 : 4);
        }
      });
    });

    // An agent's batch of messages is stored with one statement per kind: each item must get
    // the outcome it would have had alone, in order, whatever else is in the batch.
    describe('batches', () => {
      test('accepts in one batch: applied, a repeat is a duplicate, a wrong lease is stale', async () => {
        const event = await makeEvent();
        for (let i = 0; i < 2; i++) await enqueue(event);
        const [a, b] = (await claimJobs(db, [candidate('agent-a')], OFFER_MS)).map(fenceOf);
        const outcomes = await acceptOffers(db, [a!, b!, a!, { ...b!, leaseId: randomUUID() }], LEASE_MS);
        assert.deepEqual(outcomes, ['applied', 'applied', 'duplicate', 'stale']);
        for (const fence of [a!, b!]) assert.ok((await jobRow(fence.jobId)).accepted_at);
      });

      test('an accept stored after the start and the result of its attempt is a duplicate, not stale', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const fence = fenceOf(await claimOne(jobIds[0]!));
        assert.equal((await markStarted(db, fence, new Date(), LEASE_MS)).outcome, 'applied');
        assert.equal((await completeAttempt(db, fence, succeeded)).outcome, 'applied');
        assert.equal(await acceptOffer(db, fence, LEASE_MS), 'duplicate');
        assert.equal((await jobRow(fence.jobId)).status, 'succeeded');
      });

      test('an accept for an offer that was cancelled before any accept is stale', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const fence = fenceOf(await claimOne(jobIds[0]!));
        await cancelJob(db, fence.jobId);
        assert.deepEqual(await acceptOffers(db, [fence], LEASE_MS), ['stale']);
      });

      test('starts in one batch: applied with their own times, repeats duplicate, stale fences change nothing', async () => {
        const event = await makeEvent();
        for (let i = 0; i < 3; i++) await enqueue(event);
        const [a, b, c] = (await claimJobs(db, [candidate('agent-a')], OFFER_MS)).map(fenceOf);
        const atA = new Date(Date.now() - 2000);
        const atB = new Date(Date.now() - 1000);
        const before = await jobRow(c!.jobId);
        const results = await markStartedMany(
          db,
          [{ fence: a!, at: atA }, { fence: b!, at: atB }, { fence: a!, at: new Date() }, { fence: { ...c!, attempt: 2 }, at: new Date() }],
          LEASE_MS,
        );
        assert.deepEqual(results.map((result) => result.outcome), ['applied', 'applied', 'duplicate', 'stale']);
        assert.equal((await jobRow(a!.jobId)).started_at?.getTime(), atA.getTime(), 'the first start time stays');
        assert.equal((await jobRow(b!.jobId)).started_at?.getTime(), atB.getTime());
        assert.equal(results[0]!.job?.status, 'running');
        assert.deepEqual(await jobRow(c!.jobId), before);
      });

      test('results in one batch: each job ends once; repeats, stale fences and ended jobs are told apart; a retry is queued', async () => {
        const plain = await makeEvent();
        const retrying = await makeEvent({ retries: 1 });
        const one = await startedJob(plain);
        const two = await startedJob(plain);
        const three = await startedJob(retrying);
        const done = await startedJob(plain);
        assert.equal((await completeAttempt(db, done.fence, succeeded)).outcome, 'applied');
        const results = await completeAttempts(db, [
          { fence: one.fence, result: { ...succeeded, output: { n: 1 } } },
          { fence: two.fence, result: failed(7) },
          { fence: one.fence, result: failed(9) },
          { fence: { ...two.fence, leaseId: randomUUID() }, result: succeeded },
          { fence: three.fence, result: failed(2) },
          { fence: done.fence, result: failed(5) },
        ]);
        assert.deepEqual(results.map((result) => result.outcome), ['applied', 'applied', 'duplicate', 'stale', 'applied', 'duplicate']);
        const [first, second] = [await jobRow(one.jobId), await jobRow(two.jobId)];
        assert.equal(first.status, 'succeeded');
        assert.deepEqual(first.output, { n: 1 }, 'the first result of a repeated fence stays');
        assert.equal(second.status, 'failed');
        assert.equal(second.exit_code, 7);
        assert.equal((await runRow(one.run.id)).status, 'succeeded');
        assert.equal((await runRow(two.run.id)).exit_code, 7);
        assert.equal(results[0]!.finished?.run?.id, one.run.id, 'each single-job run is settled by its job');
        const retried = await jobRow(three.jobId);
        assert.equal(retried.status, 'queued');
        assert.equal(retried.attempt, 2);
        assert.equal(results[4]!.finished?.retried, true);
        assert.equal((await runRow(three.run.id)).status, 'running', 'the run waits for the next attempt');
        assert.equal((await jobRow(done.jobId)).status, 'succeeded', 'an ended job keeps its result');
      });

      test('a batch keeps one job_attempts row per ended attempt, a folded start included; a retried one says when the next may start', async () => {
        const plain = await makeEvent();
        const retrying = await makeEvent({ retries: 1 });
        const one = await startedJob(plain);
        const two = await startedJob(retrying);
        const { jobIds } = await enqueue(plain);
        const folded = fenceOf(await claimOne(jobIds[0]!));
        const startedAt = new Date(Date.now() - 1000);
        const results = await completeAttempts(db, [
          { fence: one.fence, result: succeeded },
          { fence: two.fence, result: failed(3, 'boom') },
          { fence: folded, result: failed(4), startedAt },
          { fence: one.fence, result: succeeded },
        ]);
        assert.deepEqual(results.map((result) => result.outcome), ['applied', 'applied', 'applied', 'duplicate']);
        const rows = await db.selectFrom('job_attempts').selectAll().where('job_id', 'in', [one.jobId, two.jobId, folded.jobId]).execute();
        const byJob = new Map(rows.map((row) => [row.job_id, row]));
        assert.equal(rows.length, 3, 'one row per attempt, the repeat adds none');
        assert.deepEqual([byJob.get(one.jobId)!.status, byJob.get(one.jobId)!.agent_id, byJob.get(one.jobId)!.retry_at], ['succeeded', 'agent-a', null]);
        assert.deepEqual([byJob.get(two.jobId)!.status, byJob.get(two.jobId)!.error, byJob.get(two.jobId)!.retry_at !== null], ['failed', 'boom', true]);
        assert.equal(byJob.get(folded.jobId)!.started_at?.getTime(), startedAt.getTime(), 'the start stored with its result is on the attempt row');
        assert.equal(byJob.get(folded.jobId)!.exit_code, 4);
      });

      test('batched accepts, starts and results that name another agent move nothing', async () => {
        const event = await makeEvent();
        const { jobIds } = await enqueue(event);
        const offered = fenceOf(await claimOne(jobIds[0]!, 'agent-a'));
        const intruder = { ...offered, agentId: 'agent-b' };
        assert.deepEqual(await acceptOffers(db, [intruder], LEASE_MS), ['stale']);
        assert.deepEqual((await markStartedMany(db, [{ fence: intruder, at: new Date() }], LEASE_MS)).map((r) => r.outcome), ['stale']);
        assert.deepEqual((await completeAttempts(db, [{ fence: intruder, result: succeeded }])).map((r) => r.outcome), ['stale']);
        assert.deepEqual((await completeAttempts(db, [{ fence: intruder, result: failed(1) }])).map((r) => r.outcome), ['stale']);
        const row = await jobRow(offered.jobId);
        assert.equal(row.status, 'offered');
        assert.equal(row.accepted_at, null);
        const owner = { ...offered, agentId: 'agent-a' };
        assert.deepEqual(await acceptOffers(db, [owner], LEASE_MS), ['applied']);
        assert.deepEqual(await acceptOffers(db, [intruder], LEASE_MS), ['stale'], 'not even a duplicate for another agent');
        assert.deepEqual((await completeAttempts(db, [{ fence: owner, result: succeeded }])).map((r) => r.outcome), ['applied']);
      });

      test('a start stored with its result (same batch): the job ends with both times; a stale one changes nothing', async () => {
        const event = await makeEvent();
        for (let i = 0; i < 2; i++) await enqueue(event);
        const [a, b] = (await claimJobs(db, [candidate('agent-a')], OFFER_MS)).map(fenceOf);
        const startedAt = new Date(Date.now() - 1500);
        const finishedAt = new Date(Date.now() - 500);
        const before = await jobRow(b!.jobId);
        const results = await completeAttempts(db, [
          { fence: a!, result: { ...succeeded, finishedAt }, startedAt },
          { fence: { ...b!, leaseId: randomUUID() }, result: succeeded, startedAt },
        ]);
        assert.deepEqual(results.map((result) => result.outcome), ['applied', 'stale']);
        const ended = await jobRow(a!.jobId);
        assert.equal(ended.status, 'succeeded');
        assert.equal(ended.started_at?.getTime(), startedAt.getTime());
        assert.equal(ended.finished_at?.getTime(), finishedAt.getTime());
        assert.ok(ended.accepted_at, 'a start implies acceptance');
        assert.equal(results[0]!.finished?.run?.status, 'succeeded');
        assert.deepEqual(await jobRow(b!.jobId), before);
      });

      test('jobs of one run ending in one batch settle the run once', async () => {
        const agents = ['n1', 'n2', 'n3'].map((id) => ({ id, labels: { pool: 'p' } }));
        const event = await makeEvent({ selector: { required: [{ key: 'pool', op: 'eq', values: ['p'] }], all: true } });
        const { run } = await enqueue(event, agents);
        const fences = (await claimJobs(db, agents.map((a) => candidate(a.id, 5, a.labels)), OFFER_MS)).map(fenceOf);
        assert.deepEqual(await acceptOffers(db, fences, LEASE_MS), ['applied', 'applied', 'applied']);
        const results = await completeAttempts(db, fences.map((fence, i) => ({ fence, result: i === 1 ? failed(9) : succeeded })));
        assert.deepEqual(results.flatMap((result) => (result.finished?.run ? [result.finished.run.status] : [])), ['partial'], 'one of the jobs carries the run');
        const settled = await runRow(run.id);
        assert.equal(settled.status, 'partial');
        assert.equal(settled.exit_code, 101);
      });

      test('the same results in two batches at once, in opposite orders: each job applied once, the other batch sees duplicates', async () => {
        const event = await makeEvent();
        const started = [];
        for (let i = 0; i < 6; i++) started.push(await startedJob(event));
        const reports = started.map(({ fence }) => ({ fence, result: succeeded }));
        const [forward, backward] = await Promise.all([completeAttempts(db, reports), completeAttempts(db, [...reports].reverse())]);
        const applied = [...forward, ...backward].filter((result) => result.outcome === 'applied').length;
        assert.equal(applied, 6, 'each result applied by exactly one batch, the other sees duplicates');
        for (const { jobId } of started) assert.equal((await jobRow(jobId)).status, 'succeeded');
      });

      test('two batches ending jobs of the same runs at once, in opposite orders: every run settles once', async () => {
        const agents = ['n1', 'n2'].map((id) => ({ id, labels: { pool: 'p' } }));
        const event = await makeEvent({ selector: { required: [{ key: 'pool', op: 'eq', values: ['p'] }], all: true } });
        const runs = [];
        for (let i = 0; i < 4; i++) runs.push((await enqueue(event, agents)).run);
        const offered = await claimJobs(db, agents.map((a) => candidate(a.id, 10, a.labels)), OFFER_MS);
        assert.equal(offered.length, 8);
        const of = (agentId: string) => offered.filter((job) => job.agent_id === agentId).map((job) => ({ fence: fenceOf(job), result: succeeded }));
        const [left, right] = await Promise.all([completeAttempts(db, of('n1')), completeAttempts(db, [...of('n2')].reverse())]);
        assert.ok([...left, ...right].every((result) => result.outcome === 'applied'));
        const settledBy = [...left, ...right].flatMap((result) => (result.finished?.run ? [result.finished.run.id] : []));
        assert.deepEqual(settledBy.sort(), runs.map((run) => run.id).sort(), 'each run settled by exactly one job');
        for (const run of runs) assert.equal((await runRow(run.id)).status, 'succeeded');
      });
    });

    describe('offers', () => {
      test('an offer not accepted in time goes back to the queue, same attempt', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const offered = await claimOne(jobIds[0]!, 'agent-a', 100);
        assert.equal(await requeueExpiredOffers(db), 0, 'not yet expired');
        await sleep(250);
        assert.equal(await requeueExpiredOffers(db), 1);
        const row = await jobRow(offered.id);
        assert.equal(row.status, 'queued');
        assert.equal(row.attempt, 1);
        assert.equal(row.agent_id, null);
        assert.equal(row.lease_id, null);
        // The old lease is dead: a late accept from the first agent is refused.
        assert.equal(await acceptOffer(db, fenceOf(offered), LEASE_MS), 'stale');
        const again = await claimOne(offered.id, 'agent-b', OFFER_MS);
        assert.equal(again.agent_id, 'agent-b');
        assert.notEqual(again.lease_id, offered.lease_id, 'a new offer has a new lease');
      });

      test("after a restart, an earlier process's expired offers wait for their agents; the new process's own do not", async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const earlier = await claimOne(jobIds[0]!, 'agent-a', 100);
        await sleep(50);
        const restartedAt = new Date();
        const { jobIds: later } = await enqueue(await makeEvent());
        const own = await claimOne(later[0]!, 'agent-b', 100);
        await sleep(250);
        assert.equal(await requeueExpiredOffers(db, restartedAt), 1, 'only the offer made since the restart');
        assert.equal((await jobRow(own.id)).status, 'queued');
        assert.equal((await jobRow(earlier.id)).status, 'offered', 'its agent may be running it; it reports back when it reconnects');
        assert.equal(await requeueExpiredOffers(db), 1, 'after the grace period, every expired offer');
        assert.equal((await jobRow(earlier.id)).status, 'queued');
      });

      test('an accepted offer is not requeued when its offer time passes', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const offered = await claimOne(jobIds[0]!, 'agent-a', 100);
        assert.equal(await acceptOffer(db, fenceOf(offered), LEASE_MS), 'applied');
        await sleep(250);
        assert.equal(await requeueExpiredOffers(db), 0);
        assert.equal((await jobRow(offered.id)).status, 'offered');
      });

      test('rejectOffer puts the job back in the queue, once', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const offered = await claimOne(jobIds[0]!, 'agent-a', OFFER_MS);
        assert.equal(await rejectOffer(db, { ...fenceOf(offered), leaseId: randomUUID() }), 'stale');
        assert.equal(await rejectOffer(db, fenceOf(offered)), 'applied');
        const row = await jobRow(offered.id);
        assert.equal(row.status, 'queued');
        assert.equal(row.attempt, 1);
        assert.equal(row.agent_id, null);
        assert.equal(await rejectOffer(db, fenceOf(offered)), 'stale');
      });
    });

    describe('leases', () => {
      test('without renewal an expired lease fails the job when no retries are left', async () => {
        const { fence, jobId, run } = await startedJob(await makeEvent({ retries: 0 }), 'agent-a', 200);
        assert.deepEqual(await expireLeases(db), [], 'not yet expired');
        await sleep(350);
        const expired = await expireLeases(db);
        assert.deepEqual(expired.map((finished) => finished.job.id), [jobId]);
        const row = await jobRow(jobId);
        assert.equal(row.status, 'failed');
        assert.match(row.error, /lease/);
        assert.ok(row.finished_at);
        assert.equal((await runRow(run.id)).status, 'failed');
        // The lost agent's late result cannot overwrite it.
        assert.equal((await completeAttempt(db, fence, succeeded)).outcome, 'duplicate');
        assert.equal((await jobRow(jobId)).status, 'failed');
        assert.deepEqual(await expireLeases(db), [], 'expired once');
      });

      test('an expired lease with retries left queues attempt 2 after a backoff', async () => {
        const { fence, jobId, run } = await startedJob(await makeEvent({ retries: 2 }), 'agent-a', 200);
        await sleep(350);
        const [finished] = await expireLeases(db);
        assert.equal(finished?.retried, true);
        const row = await jobRow(jobId);
        assert.equal(row.status, 'queued');
        assert.equal(row.attempt, 2);
        assert.equal(row.max_attempts, 3);
        assert.equal(row.agent_id, null);
        assert.equal(row.lease_id, null);
        assert.match(row.error, /attempt 1: .*lease/);
        const { future } = await db
          .selectFrom('jobs')
          .select(sql<boolean>`run_after > now()`.as('future'))
          .where('id', '=', jobId)
          .executeTakeFirstOrThrow();
        assert.equal(future, true, 'run_after is in the future');
        assert.equal((await runRow(run.id)).status, 'running', 'the run goes on');
        assert.equal((await completeAttempt(db, fence, succeeded)).outcome, 'stale', 'attempt 1 is fenced out');
        assert.deepEqual(await claimJobs(db, [candidate('agent-b')], OFFER_MS), [], 'not before the backoff');
      });

      test('renewLeases keeps a job alive past its TTL', async () => {
        const { fence, jobId } = await startedJob(await makeEvent(), 'agent-a', 200);
        for (let i = 0; i < 5; i++) {
          await sleep(80);
          await renewLeases(db, 'agent-a', [fence.leaseId], 200);
        }
        assert.deepEqual(await expireLeases(db), []);
        assert.equal((await jobRow(jobId)).status, 'running');
        assert.equal((await completeAttempt(db, fence, succeeded)).outcome, 'applied');
      });

      test('renewLeases by another agent or with another lease does not extend it', async () => {
        const { jobId } = await startedJob(await makeEvent(), 'agent-a', 200);
        const real = (await jobRow(jobId)).lease_id!;
        for (let i = 0; i < 4; i++) {
          await sleep(80);
          await renewLeases(db, 'agent-b', [real], 60_000);
          await renewLeases(db, 'agent-a', [randomUUID()], 60_000);
        }
        const expired = await expireLeases(db);
        assert.deepEqual(expired.map((finished) => finished.job.id), [jobId]);
      });
    });

    describe('retries', () => {
      test('a failed attempt with attempts left is queued again as the next attempt', async () => {
        const event = await makeEvent({ retries: 1 });
        const { fence, jobId, run } = await startedJob(event);
        const first = await completeAttempt(db, fence, failed(2, 'boom'));
        assert.equal(first.outcome, 'applied');
        assert.equal(first.finished?.retried, true);
        assert.equal(first.finished?.run, undefined, 'the run is not settled');
        let row = await jobRow(jobId);
        assert.equal(row.status, 'queued');
        assert.equal(row.attempt, 2);
        assert.match(row.error, /attempt 1/);
        assert.match(row.error, /boom/);
        assert.equal((await runRow(run.id)).status, 'running');

        // Attempt 2 runs and fails too: no attempts left.
        await skipBackoff(jobId);
        const offered = await claimOne(jobId, 'agent-b', OFFER_MS);
        assert.equal(offered.attempt, 2);
        const second = fenceOf(offered);
        assert.notEqual(second.leaseId, fence.leaseId);
        assert.equal(await acceptOffer(db, second, LEASE_MS), 'applied');
        const last = await completeAttempt(db, second, failed(5, 'boom again'));
        assert.equal(last.outcome, 'applied');
        assert.equal(last.finished?.retried, false);
        row = await jobRow(jobId);
        assert.equal(row.status, 'failed');
        assert.equal(row.attempt, 2);
        assert.equal(row.exit_code, 5);
        const settled = await runRow(run.id);
        assert.equal(settled.status, 'failed');
        assert.equal(settled.exit_code, 5);
      });

      test('each ended attempt is kept once, with its agent, result and when the next may start', async () => {
        const { fence, jobId } = await startedJob(await makeEvent({ retries: 1 }));
        await completeAttempt(db, fence, failed(2, 'boom'));
        assert.equal((await completeAttempt(db, fence, failed(2, 'boom'))).outcome, 'stale', 'a replayed result adds nothing');
        await skipBackoff(jobId);
        const second = fenceOf(await claimOne(jobId, 'agent-b'));
        assert.equal(await acceptOffer(db, second, LEASE_MS), 'applied');
        assert.equal((await markStarted(db, second, new Date(), LEASE_MS)).outcome, 'applied');
        await completeAttempt(db, second, succeeded);
        const rows = await db.selectFrom('job_attempts').selectAll().where('job_id', '=', jobId).orderBy('attempt').execute();
        assert.deepEqual(
          rows.map((row) => [row.attempt, row.status, row.exit_code, row.error, row.agent_id, row.retry_at !== null, row.started_at !== null]),
          [
            [1, 'failed', 2, 'boom', 'agent-a', true, true],
            [2, 'succeeded', 0, '', 'agent-b', false, true],
          ],
        );
      });

      test('the retry delay comes from the event: full jitter up to its base for the first retry', async () => {
        const event = { ...(await makeEvent({ retries: 1 })), retry_delay_seconds: 60 };
        const waits: number[] = [];
        for (let i = 0; i < 8; i++) {
          const { fence, jobId } = await startedJob(event);
          const before = Date.now();
          await completeAttempt(db, fence, failed());
          waits.push(new Date((await jobRow(jobId)).run_after).getTime() - before);
          // A draw near zero would make this retry claimable by the next round's claim, which expects only its own job.
          await db.updateTable('jobs').set({ run_after: sql<Date>`now() + interval '1 day'` }).where('id', '=', jobId).execute();
        }
        for (const wait of waits) assert.ok(wait >= -1000 && wait <= 61_000, `waits ${wait} ms, within [0, 60 s]`);
        // With the default 10 s base none would wait longer; with 60 s, all eight waiting under 10 s has odds of 6e-7.
        assert.ok(waits.some((wait) => wait > 11_000), `waits: ${waits}`);
      });

      test('timed_out is retried like failed', async () => {
        const { fence, jobId } = await startedJob(await makeEvent({ retries: 1 }));
        await completeAttempt(db, fence, { status: 'timed_out', exitCode: null, error: 'timed out after 60 s' });
        const row = await jobRow(jobId);
        assert.equal(row.status, 'queued');
        assert.equal(row.attempt, 2);
      });

      test('a failure with no retries configured ends the job at once', async () => {
        const { fence, jobId } = await startedJob(await makeEvent({ retries: 0 }));
        const result = await completeAttempt(db, fence, failed(1, 'nope'));
        assert.equal(result.finished?.retried, false);
        const row = await jobRow(jobId);
        assert.equal(row.status, 'failed');
        assert.equal(row.attempt, 1);
        assert.equal(row.error, 'nope');
      });

      test('cancelled is never retried', async () => {
        const { fence, jobId, run } = await startedJob(await makeEvent({ retries: 3 }));
        const result = await completeAttempt(db, fence, { status: 'cancelled', exitCode: 143, error: 'cancelled by user' });
        assert.equal(result.finished?.retried, false);
        const row = await jobRow(jobId);
        assert.equal(row.status, 'cancelled');
        assert.equal(row.attempt, 1);
        assert.equal((await runRow(run.id)).status, 'cancelled');
      });

      test('a failure after a cancel request is not retried', async () => {
        const { fence, jobId } = await startedJob(await makeEvent({ retries: 3 }));
        await cancelJob(db, jobId);
        const result = await completeAttempt(db, fence, failed(137, 'killed'));
        assert.equal(result.finished?.retried, false);
        assert.equal((await jobRow(jobId)).attempt, 1);
        assert.notEqual((await jobRow(jobId)).status, 'queued');
      });
    });

    describe('run status', () => {
      test('fan-out of 3 with 2 succeeded and 1 failed ends PARTIAL with exit 101', async () => {
        const agents = ['n1', 'n2', 'n3'].map((id) => ({ id, labels: { pool: 'p' } }));
        const event = await makeEvent({ selector: { required: [{ key: 'pool', op: 'eq', values: ['p'] }], all: true } });
        const { run, jobIds } = await enqueue(event, agents);
        assert.equal(jobIds.length, 3);
        const offered = await claimJobs(db, agents.map((a) => candidate(a.id, 5, a.labels)), OFFER_MS);
        assert.equal(offered.length, 3);
        const results = [succeeded, failed(9), succeeded];
        for (const [i, job] of offered.entries()) {
          const fence = fenceOf(job);
          assert.equal(await acceptOffer(db, fence, LEASE_MS), 'applied');
          const { finished } = await completeAttempt(db, fence, results[i]!);
          assert.equal(finished?.run === undefined, i < 2, 'only the last job settles the run');
        }
        const settled = await runRow(run.id);
        assert.equal(settled.status, 'partial');
        assert.equal(settled.exit_code, 101);
        assert.ok(settled.finished_at);
      });

      test('a single job exiting 3 makes the run FAILED with exit code 3', async () => {
        const { fence, run } = await startedJob(await makeEvent());
        const { finished } = await completeAttempt(db, fence, failed(3));
        assert.equal(finished?.run?.status, 'failed');
        assert.equal(finished?.run?.exit_code, 3);
        const settled = await runRow(run.id);
        assert.equal(settled.status, 'failed');
        assert.equal(settled.exit_code, 3);
      });

      test('a single job succeeding makes the run SUCCESS with exit code 0', async () => {
        const { fence, run } = await startedJob(await makeEvent());
        await completeAttempt(db, fence, succeeded);
        const settled = await runRow(run.id);
        assert.equal(settled.status, 'succeeded');
        assert.equal(settled.exit_code, 0);
      });
    });

    describe('results', () => {
      test('output, condition and flags are stored with the terminal state', async () => {
        const { fence, jobId } = await startedJob(await makeEvent());
        const finishedAt = new Date(Date.now() - 500);
        await completeAttempt(db, fence, {
          ...succeeded,
          output: { rows: [1, 2] },
          condition: true,
          logTruncated: true,
          oomKilled: false,
          finishedAt,
        });
        const row = await jobRow(jobId);
        assert.deepEqual(row.output, { rows: [1, 2] });
        assert.equal(row.condition, true);
        assert.equal(row.log_truncated, true);
        assert.equal(row.oom_killed, false);
        assert.equal(row.finished_at?.getTime(), finishedAt.getTime());
        assert.equal(row.lease_expires_at, null);
      });

      test('variablesSet upserts into variables for the job owner', async () => {
        const event = await makeEvent({ owner: 'owner-vars' });
        const first = await startedJob(event);
        await completeAttempt(db, first.fence, { ...succeeded, variablesSet: { greeting: 'hello', count: '1' } });
        const second = await startedJob(event);
        await completeAttempt(db, second.fence, { ...succeeded, variablesSet: { count: '2' } });
        const rows = await db.selectFrom('variables').select(['owner_id', 'key', 'value']).orderBy('key').execute();
        assert.deepEqual(rows, [
          { owner_id: 'owner-vars', key: 'count', value: '2' },
          { owner_id: 'owner-vars', key: 'greeting', value: 'hello' },
        ]);
      });

      test('variables set by a failed attempt that is retried are kept', async () => {
        const { fence } = await startedJob(await makeEvent({ retries: 1 }));
        await completeAttempt(db, fence, { ...failed(), variablesSet: { progress: 'half' } });
        const row = await db.selectFrom('variables').select('value').where('owner_id', '=', OWNER).where('key', '=', 'progress').executeTakeFirst();
        assert.equal(row?.value, 'half');
      });
    });

    describe('cancel', () => {
      test('a queued job is cancelled at once and its run settled', async () => {
        const { run, jobIds } = await enqueue(await makeEvent({ retries: 2 }));
        const result = await cancelJob(db, jobIds[0]!);
        assert.ok(result);
        assert.equal(result.job.status, 'cancelled');
        assert.equal(result.notifyAgent, false);
        assert.equal((await jobRow(jobIds[0]!)).status, 'cancelled');
        assert.equal((await runRow(run.id)).status, 'cancelled');
        assert.deepEqual(await claimJobs(db, [candidate('agent-a')], OFFER_MS), [], 'a cancelled job is never offered');
      });

      test('an offered, not yet accepted job is cancelled at once and its agent told', async () => {
        const { jobIds } = await enqueue(await makeEvent());
        const offered = await claimOne(jobIds[0]!, 'agent-a', OFFER_MS);
        const result = await cancelJob(db, offered.id);
        assert.equal(result?.job.status, 'cancelled');
        assert.equal(result?.notifyAgent, true);
        assert.equal(await acceptOffer(db, fenceOf(offered), LEASE_MS), 'stale', 'too late to accept');
      });

      test('an accepted running job is marked and its agent told; the status waits for the agent', async () => {
        const { fence, jobId, run } = await startedJob(await makeEvent({ retries: 2 }));
        const result = await cancelJob(db, jobId);
        assert.ok(result);
        assert.equal(result.notifyAgent, true);
        assert.equal(result.finished, undefined);
        assert.equal(result.job.status, 'running');
        assert.equal(result.job.cancel_requested, true);
        const row = await jobRow(jobId);
        assert.equal(row.status, 'running');
        assert.equal(row.cancel_requested, true);
        assert.equal((await runRow(run.id)).status, 'running');
        // The agent confirms.
        assert.equal((await completeAttempt(db, fence, { status: 'cancelled', exitCode: 143, error: 'cancelled' })).outcome, 'applied');
        assert.equal((await jobRow(jobId)).status, 'cancelled');
        assert.equal((await runRow(run.id)).status, 'cancelled');
      });

      test('a cancel the agent never confirms ends cancelled when the lease expires', async () => {
        const { jobId } = await startedJob(await makeEvent({ retries: 2 }), 'agent-a', 150);
        await cancelJob(db, jobId);
        await sleep(300);
        await expireLeases(db);
        const row = await jobRow(jobId);
        assert.equal(row.status, 'cancelled');
        assert.equal(row.attempt, 1);
      });

      test('cancelling a finished or unknown job changes nothing', async () => {
        const { fence, jobId } = await startedJob(await makeEvent());
        await completeAttempt(db, fence, succeeded);
        const result = await cancelJob(db, jobId);
        assert.equal(result?.job.status, 'succeeded');
        assert.equal(result?.notifyAgent, false);
        assert.equal(await cancelJob(db, randomUUID()), undefined);
      });
    });

    describe('resumeAttempts', () => {
      test('keeps a running attempt with the right lease for the same agent, with a fresh lease', async () => {
        const { fence, jobId } = await startedJob(await makeEvent(), 'agent-a', 200);
        const decisions = await resumeAttempts(db, 'agent-a', [fence], 60_000);
        const kept = decisions.get(fence.leaseId);
        assert.equal(kept?.id, jobId);
        assert.equal(kept?.status, 'running');
        assert.ok(kept.lease_expires_at && kept.lease_expires_at.getTime() > Date.now() + 30_000, 'lease renewed');
        await sleep(300);
        assert.deepEqual(await expireLeases(db), [], 'the resumed lease holds');
      });

      test('refuses a wrong lease, a wrong attempt or another agent', async () => {
        const { fence, jobId } = await startedJob(await makeEvent());
        const before = await jobRow(jobId);
        const wrongLease = { ...fence, leaseId: randomUUID() };
        const wrongAttempt = { ...fence, attempt: 2 };
        const mine = await resumeAttempts(db, 'agent-a', [wrongLease, wrongAttempt], 60_000);
        assert.equal(mine.get(wrongLease.leaseId), undefined);
        assert.equal(mine.has(wrongLease.leaseId), true, 'every reported attempt gets an answer');
        assert.equal(mine.get(fence.leaseId), undefined, 'wrong attempt refused');
        const other = await resumeAttempts(db, 'agent-b', [fence], 60_000);
        assert.equal(other.get(fence.leaseId), undefined);
        assert.deepEqual(await jobRow(jobId), before, 'a refused resume changes nothing');
      });

      test('refuses an attempt that already ended', async () => {
        const { fence } = await startedJob(await makeEvent());
        await completeAttempt(db, fence, succeeded);
        const decisions = await resumeAttempts(db, 'agent-a', [fence], 60_000);
        assert.equal(decisions.get(fence.leaseId), undefined);
      });
    });

    describe('logs', () => {
      const bytes = (text: string) => new TextEncoder().encode(text);
      const text = (data: Uint8Array) => new TextDecoder().decode(data);

      test('a chunk sent twice is stored once; chunks come back in insertion order', async () => {
        const { fence, jobId } = await startedJob(await makeEvent());
        const a = { jobId, attempt: fence.attempt, stream: LOG_STREAMS.stdout, offset: 0, data: bytes('one\n') };
        const b = { jobId, attempt: fence.attempt, stream: LOG_STREAMS.stderr, offset: 0, data: bytes('warn\n') };
        const c = { jobId, attempt: fence.attempt, stream: LOG_STREAMS.stdout, offset: 4, data: bytes('two\n') };
        await appendLogs(db, [a, b]);
        await appendLogs(db, [a, b, c]);
        await appendLogs(db, [c]);
        await appendLogs(db, []);
        const logs = await readLogs(db, jobId);
        assert.deepEqual(
          logs.map((chunk) => [chunk.jobId, chunk.attempt, chunk.stream, chunk.offset, text(chunk.data)]),
          [
            [jobId, 1, LOG_STREAMS.stdout, 0, 'one\n'],
            [jobId, 1, LOG_STREAMS.stderr, 0, 'warn\n'],
            [jobId, 1, LOG_STREAMS.stdout, 4, 'two\n'],
          ],
        );
        assert.equal(typeof logs[0]?.offset, 'number');
        assert.deepEqual(await readLogs(db, randomUUID()), []);
      });

      test('insertion order, not offset order; other jobs and every attempt', async () => {
        const { jobId } = await startedJob(await makeEvent());
        const other = randomUUID();
        await appendLogs(db, [{ jobId, attempt: 1, stream: 1, offset: 10, data: bytes('late offset first') }]);
        await appendLogs(db, [{ jobId: other, attempt: 1, stream: 1, offset: 0, data: bytes('someone else') }]);
        await appendLogs(db, [{ jobId, attempt: 1, stream: 1, offset: 0, data: bytes('early offset second') }]);
        await appendLogs(db, [{ jobId, attempt: 2, stream: 1, offset: 0, data: bytes('attempt two') }]);
        await appendLogs(db, [{ jobId, attempt: 1, stream: 1, offset: 5_000_000_000, data: bytes('big offset') }]);
        const logs = await readLogs(db, jobId);
        assert.deepEqual(logs.map((chunk) => text(chunk.data)), ['late offset first', 'early offset second', 'attempt two', 'big offset']);
        assert.deepEqual(logs.map((chunk) => chunk.offset), [10, 0, 0, 5_000_000_000]);
        assert.deepEqual(logs.map((chunk) => chunk.attempt), [1, 1, 2, 1]);
      });
    });
  });
}
