// The workflow engine on both stores (PGlite and Postgres): the graph rules as
// pure functions, then executions advanced by runs ending through the queue's
// real transitions, including two parents ending at once in two transactions.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { inTransaction, type Db } from '../src/store/database.ts';
import { STORES, insertEvent, openTestStore } from './test-stores.ts';
import type { EventRow, NodeStatus, Target, WorkflowEdgeSpec, WorkflowRow } from '../src/store/schema.ts';
import { EMPTY_SELECTOR } from '../src/domain/selector.ts';
import { finishLocked, type AttemptResult } from '../src/queue/transitions.ts';
import { graphProblem } from '../src/workflows/graph.ts';
import { executionOutcome, nextSteps, type NodeState } from '../src/workflows/plan.ts';
import { requestCancel, startExecution } from '../src/workflows/engine.ts';
import { newWebhook, signBody, webhookAuthorized } from '../src/workflows/webhook-secret.ts';
import { resealWebhooks } from '../src/workflows/reseal-webhooks.ts';
import { Sealer } from '../src/secrets/sealer.ts';

const OWNER = 'owner-w';

const nodesOf = (...ids: string[]) => ids.map((id) => ({ id, eventId: 'e', name: '' }));
const e = (from: string, to: string, type: WorkflowEdgeSpec['type'] = 'always'): WorkflowEdgeSpec => ({ from, to, type });
const state = (status: NodeStatus, output: unknown = null, condition: boolean | null = null): NodeState => ({ status, output, condition });

describe('workflow graph rules', () => {
  test('a cycle is named by the edge that closes it', () => {
    assert.deepEqual(graphProblem(nodesOf('a', 'b', 'c'), [e('a', 'b'), e('b', 'c'), e('c', 'b')]), {
      field: 'workflow.edges[2]',
      problem: 'c → b closes a cycle: b → c → b',
    });
    assert.equal(graphProblem(nodesOf('a'), [e('a', 'a')])?.field, 'workflow.edges[0]');
    assert.equal(graphProblem(nodesOf('a', 'b', 'c', 'd'), [e('a', 'b'), e('a', 'c'), e('b', 'd'), e('c', 'd')]), undefined, 'a diamond is no cycle');
  });

  test('a child runs when one incoming edge fired, else it is skipped, and skips cascade', () => {
    const graph = { nodes: nodesOf('p', 'ok', 'bad', 'cond', 'after'), edges: [e('p', 'ok', 'on_success'), e('p', 'bad', 'on_failure'), e('p', 'cond', 'on_condition'), e('bad', 'after')] };
    const states = new Map([['p', state('succeeded', { x: 1 }, false)], ['ok', state('pending')], ['bad', state('pending')], ['cond', state('pending')], ['after', state('pending')]]);
    assert.deepEqual(nextSteps(graph, states, null), [
      { nodeId: 'ok', action: 'run', input: { x: 1 } },
      { nodeId: 'bad', action: 'skip' },
      { nodeId: 'cond', action: 'skip' },
      { nodeId: 'after', action: 'skip' },
    ]);
  });

  test('a child of several parents waits for all, and gets their outputs by node id', () => {
    const graph = { nodes: nodesOf('b', 'c', 'd'), edges: [e('b', 'd', 'on_success'), e('c', 'd', 'on_success')] };
    assert.deepEqual(nextSteps(graph, new Map([['b', state('succeeded', 1)], ['c', state('running')], ['d', state('pending')]]), null), []);
    assert.deepEqual(nextSteps(graph, new Map([['b', state('succeeded', 1)], ['c', state('failed', 2)], ['d', state('pending')]]), null), [
      { nodeId: 'd', action: 'run', input: { b: 1, c: 2 } },
    ]);
  });

  test('an execution fails only on a failure no ON_FAILURE edge handles', () => {
    const handled = { nodes: nodesOf('a', 'b'), edges: [e('a', 'b', 'on_failure')] };
    assert.equal(executionOutcome(handled, new Map([['a', state('failed')], ['b', state('succeeded')]]), false), 'succeeded');
    assert.equal(executionOutcome(handled, new Map([['a', state('failed')], ['b', state('failed')]]), false), 'failed');
    assert.equal(executionOutcome(handled, new Map([['a', state('failed')], ['b', state('running')]]), false), undefined);
    const always = { nodes: nodesOf('a', 'b'), edges: [e('a', 'b', 'always')] };
    assert.equal(executionOutcome(always, new Map([['a', state('failed')], ['b', state('succeeded')]]), false), 'failed');
    assert.equal(executionOutcome(always, new Map([['a', state('succeeded')], ['b', state('cancelled')]]), false), 'cancelled');
  });
});

for (const store of STORES) {
  describe(`workflow engine on ${store}`, () => {
    let db: Db;
    let close: (() => Promise<void>) | undefined;

    before(async () => {
      ({ db, close } = await openTestStore(store, 'cw'));
    });
    after(async () => {
      await close?.();
    });

    async function makeEvent(target: Target = { selector: EMPTY_SELECTOR }): Promise<EventRow> {
      return insertEvent(db, OWNER, { name: 'step', target: JSON.stringify(target) });
    }

    async function makeWorkflow(nodes: Record<string, EventRow>, edges: WorkflowEdgeSpec[]): Promise<WorkflowRow> {
      return db
        .insertInto('workflows')
        .values({
          id: randomUUID(),
          owner_id: OWNER,
          name: 'w',
          status: 'active',
          nodes: JSON.stringify(Object.entries(nodes).map(([id, event]) => ({ id, eventId: event.id, name: '' }))),
          edges: JSON.stringify(edges),
          webhook_key: null,
          webhook_secret_sealed: null,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
    }

    async function nodes(executionId: string) {
      const rows = await db.selectFrom('workflow_node_runs').selectAll().where('execution_id', '=', executionId).execute();
      return Object.fromEntries(rows.map((row) => [row.node_id, row]));
    }

    /** Ends the (single) job of a node's run through the queue's own path, which settles the run; `beforeCommit` runs inside its transaction. */
    async function finishNode(executionId: string, nodeId: string, result: AttemptResult, beforeCommit?: () => Promise<unknown>): Promise<void> {
      const runId = (await nodes(executionId))[nodeId]!.run_id!;
      await inTransaction(db, async (tx) => {
        const job = await tx.selectFrom('jobs').selectAll().where('run_id', '=', runId).forUpdate().executeTakeFirstOrThrow();
        await finishLocked(tx, job, result);
        await beforeCommit?.();
      });
    }
    const ok = (output: unknown): AttemptResult => ({ status: 'succeeded', exitCode: 0, error: '', output });

    test('a diamond: D starts once, when both parents have ended at the same time in two transactions', async () => {
      const event = await makeEvent();
      const workflow = await makeWorkflow({ A: event, B: event, C: event, D: event }, [e('A', 'B'), e('A', 'C'), e('B', 'D'), e('C', 'D')]);
      const execution = await startExecution(db, workflow, { start: true }, 'manual');
      let state = await nodes(execution.id);
      assert.equal(state.A!.status, 'running');
      assert.deepEqual(state.A!.input, { start: true });
      const runOfA = await db.selectFrom('runs').selectAll().where('id', '=', state.A!.run_id!).executeTakeFirstOrThrow();
      assert.deepEqual(runOfA.input, { start: true });
      await finishNode(execution.id, 'A', ok('a'));
      state = await nodes(execution.id);
      assert.deepEqual([state.B!.status, state.C!.status, state.D!.status], ['running', 'running', 'pending']);

      // C's transaction starts while B's has ended B's run but not committed yet.
      let other: Promise<void> | undefined;
      await finishNode(execution.id, 'B', ok('b'), () => {
        other = finishNode(execution.id, 'C', ok('c'));
        return Promise.race([other, sleep(300)]);
      });
      await other;
      state = await nodes(execution.id);
      assert.equal(state.D!.status, 'running');
      assert.deepEqual(state.D!.input, { B: 'b', C: 'c' });
      const runsOfD = await db.selectFrom('runs').select('id').where('input', '=', JSON.stringify({ B: 'b', C: 'c' })).execute();
      assert.equal(runsOfD.length, 1, 'D has one run');

      await finishNode(execution.id, 'D', ok('d'));
      const ended = await db.selectFrom('workflow_executions').selectAll().where('id', '=', execution.id).executeTakeFirstOrThrow();
      assert.equal(ended.status, 'succeeded');
      assert.ok(ended.finished_at);
    });

    test('a run that fails while it is being enqueued (unapproved server) still moves the execution on', async () => {
      const server = await db
        .insertInto('servers')
        .values({ id: randomUUID(), owner_id: OWNER, name: 's', host: '127.0.0.1', port: 22, username: 'u', private_key_sealed: null, password_sealed: null, labels: '{}' })
        .returningAll()
        .executeTakeFirstOrThrow();
      const broken = await makeEvent({ serverIds: [server.id] });
      const rescue = await makeEvent();
      const workflow = await makeWorkflow({ broken, rescue }, [e('broken', 'rescue', 'on_failure')]);
      const execution = await startExecution(db, workflow, null, 'manual');
      const state = await nodes(execution.id);
      assert.equal(state.broken!.status, 'failed');
      assert.equal(state.rescue!.status, 'running');
    });

    test('webhook secrets are sealed to their row, checked as a secret or a body signature, and resealed on key rotation', async () => {
      const oldKey = randomBytes(32);
      const newKey = randomBytes(32);
      const event = await makeEvent();
      const { secret, columns } = newWebhook(new Sealer(oldKey), 'events', event.id);
      assert.doesNotMatch(columns.webhook_secret_sealed!, new RegExp(secret.slice(4)), 'not stored in the clear');
      await db.updateTable('events').set(columns).where('id', '=', event.id).execute();
      const body = Buffer.from('{"a": 1}');
      const row = { id: event.id, webhook_secret_sealed: columns.webhook_secret_sealed };
      const sealer = new Sealer(oldKey);
      assert.equal(webhookAuthorized(sealer, 'events', row, { secret }, body), true);
      assert.equal(webhookAuthorized(sealer, 'events', row, { secret: `${secret}x` }, body), false);
      assert.equal(webhookAuthorized(sealer, 'events', row, { signature: signBody(secret, body) }, body), true);
      assert.equal(webhookAuthorized(sealer, 'events', row, { signature: signBody(secret, Buffer.from('{"a": 2}')) }, body), false);
      assert.equal(webhookAuthorized(sealer, 'events', row, {}, body), false);
      assert.throws(() => webhookAuthorized(sealer, 'workflows', row, { secret }, body), 'bound to its table and row');

      assert.equal(await resealWebhooks(db, new Sealer(newKey, [oldKey])), 1);
      const resealed = await db.selectFrom('events').select(['id', 'webhook_secret_sealed']).where('id', '=', event.id).executeTakeFirstOrThrow();
      assert.equal(webhookAuthorized(new Sealer(newKey), 'events', resealed, { secret }, body), true, 'opens with the new key alone');
      assert.equal(await resealWebhooks(db, new Sealer(newKey)), 0);
    });

    test('a cancel ends pending nodes at once and the execution when its running node ends', async () => {
      const event = await makeEvent();
      const workflow = await makeWorkflow({ S: event, T: event }, [e('S', 'T')]);
      const execution = await startExecution(db, workflow, null, 'manual');
      const running = await requestCancel(db, execution.id);
      assert.deepEqual(running, [(await nodes(execution.id)).S!.run_id]);
      assert.equal((await nodes(execution.id)).T!.status, 'cancelled');
      await finishNode(execution.id, 'S', { status: 'cancelled', exitCode: null, error: 'cancelled' });
      const ended = await db.selectFrom('workflow_executions').selectAll().where('id', '=', execution.id).executeTakeFirstOrThrow();
      assert.equal(ended.status, 'cancelled');
      assert.equal((await nodes(execution.id)).S!.status, 'cancelled');
    });
  });
}
