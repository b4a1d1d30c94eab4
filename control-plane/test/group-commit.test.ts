// Group commit: what is handed in while a group is being written goes together
// as the next group, each caller gets its own result, and a failed write fails
// only the callers of that group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GroupCommit } from '../src/store/group-commit.ts';

function deferred() {
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  return { done, release };
}

test('items handed in while a group is written go together as the next group, each with its own result', async () => {
  const groups: number[][] = [];
  const gate = deferred();
  const commit = new GroupCommit<number, string>(async (items) => {
    groups.push([...items]);
    if (groups.length === 1) await gate.done;
    return items.map((item) => `r${item}`);
  });
  const first = commit.add(1);
  const rest = [commit.add(2), commit.add(3), commit.add(4)];
  gate.release();
  assert.deepEqual(await Promise.all([first, ...rest]), ['r1', 'r2', 'r3', 'r4']);
  assert.deepEqual(groups, [[1], [2, 3, 4]], 'one item alone waits for nothing; the others share the next write');
});

test('a failed write rejects the callers of its group only; the next group is still written', async () => {
  const gate = deferred();
  let writes = 0;
  const commit = new GroupCommit<string, string>(async (items) => {
    writes++;
    if (writes === 1) {
      await gate.done;
      throw new Error('deadlock detected');
    }
    return items.map((item) => item.toUpperCase());
  });
  const failing = commit.add('a');
  const next = commit.add('b');
  gate.release();
  await assert.rejects(failing, /deadlock detected/);
  assert.equal(await next, 'B');
  assert.equal(await commit.add('c'), 'C', 'it keeps working after a failure');
});
