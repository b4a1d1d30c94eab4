// Agents' heartbeats reach agents.last_heartbeat_at together, one statement per
// interval, each agent with the instant it was heard from; a stored time never
// moves back; what is pending when the link stops is still written.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KyselyPlugin } from 'kysely';
import type { Db } from '../src/store/database.ts';
import { HeartbeatWriter } from '../src/link/heartbeats.ts';
import { STORES, openTestStore } from './test-stores.ts';

/** Counts the UPDATEs of agents that go through it. */
function countingUpdates(): { plugin: KyselyPlugin; count: () => number } {
  let updates = 0;
  return {
    plugin: {
      transformQuery(args) {
        if (args.node.kind === 'RawNode' && /update agents/.test(args.node.sqlFragments.join(''))) updates++;
        return args.node;
      },
      transformResult: async (args) => args.result,
    },
    count: () => updates,
  };
}

async function addAgents(db: Db, ids: readonly string[]): Promise<void> {
  await db
    .insertInto('agents')
    .values(ids.map((id) => ({ id, name: id, mode: 'orchestrator', labels: '{}', executors: '[]', slots: 1, version: 'test', connected: true })))
    .execute();
}

async function heartbeats(db: Db): Promise<Map<string, number | undefined>> {
  const rows = await db.selectFrom('agents').select(['id', 'last_heartbeat_at']).execute();
  return new Map(rows.map((row) => [row.id, row.last_heartbeat_at ? new Date(row.last_heartbeat_at).getTime() : undefined]));
}

for (const store of STORES) {
  describe(`heartbeat writer (${store})`, () => {
    let db: Db;
    let close: () => Promise<void>;
    before(async () => {
      ({ db, close } = await openTestStore(store, 'heartbeats'));
      await addAgents(db, ['a', 'b', 'c']);
    });
    after(async () => close());

    test("the interval's heartbeats are written in one statement, each with its own instant", async () => {
      const counter = countingUpdates();
      const errors: unknown[] = [];
      const writer = new HeartbeatWriter(db.withPlugin(counter.plugin), 60_000, (error) => errors.push(error));
      const at = (offsetMs: number) => new Date(Date.UTC(2026, 0, 1, 12, 0, 0) + offsetMs);
      writer.record('a', at(0));
      writer.record('b', at(1_000));
      writer.record('a', at(2_000));
      writer.record('c', at(3_000));
      assert.equal(counter.count(), 0, 'nothing is written before the interval ends');
      await writer.flush();
      assert.equal(counter.count(), 1);
      assert.deepEqual(Object.fromEntries(await heartbeats(db)), { a: at(2_000).getTime(), b: at(1_000).getTime(), c: at(3_000).getTime() });

      writer.record('b', at(-5_000));
      await writer.stop();
      assert.equal((await heartbeats(db)).get('b'), at(1_000).getTime(), 'an older heartbeat (a replaced stream, flushed late) does not move the time back');
      assert.deepEqual(errors, []);
    });

    test('what is pending when the writer stops is written', async () => {
      const writer = new HeartbeatWriter(db, 60_000, (error) => assert.fail(String(error)));
      const now = new Date();
      writer.record('c', now);
      await writer.stop();
      assert.equal((await heartbeats(db)).get('c'), now.getTime());
    });

    test('the interval timer writes on its own', async () => {
      const writer = new HeartbeatWriter(db, 20, (error) => assert.fail(String(error)));
      const now = new Date(Date.now() + 60_000);
      writer.record('a', now);
      for (let i = 0; i < 200 && (await heartbeats(db)).get('a') !== now.getTime(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal((await heartbeats(db)).get('a'), now.getTime());
      await writer.stop();
    });
  });
}
