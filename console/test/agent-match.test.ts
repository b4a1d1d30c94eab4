// The target picker's count: the scheduler's label rules, the executor the
// event type needs, and revoked agents left out.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchingAgents } from '../src/lib/agent-match.ts';
import type { AgentView } from '../src/lib/views.ts';

const agent = (name: string, labels: Record<string, string>, status = 'online', executors = ['docker']): AgentView => ({
  id: name, name, mode: 'remote', labels, pinnedLabels: {}, executors, slots: 2, runningJobs: 0, status, lastHeartbeatAt: null, version: '',
});
const agents = [
  agent('a', { zone: 'eu', cpu: '8' }),
  agent('b', { zone: 'us', cpu: '2' }, 'offline'),
  agent('c', { zone: 'eu' }, 'revoked'),
  agent('d', { zone: 'eu' }, 'online', ['http']),
];

test('label terms match as the scheduler matches them', () => {
  assert.deepEqual(matchingAgents(agents, [], 'BASH'), { matching: 2, online: 1, total: 2, lacking: 1 });
  assert.equal(matchingAgents(agents, [{ key: 'zone', op: 'EQ', values: 'eu' }], 'BASH').matching, 1);
  assert.equal(matchingAgents(agents, [{ key: 'zone', op: 'IN', values: 'eu, us' }], 'BASH').matching, 2);
  assert.equal(matchingAgents(agents, [{ key: 'cpu', op: 'GT', values: '4' }], 'BASH').matching, 1);
  assert.equal(matchingAgents(agents, [{ key: 'zone', op: 'NE', values: 'eu' }], 'BASH').matching, 1);
  assert.equal(matchingAgents(agents, [{ key: 'gpu', op: 'EXISTS', values: '' }], 'BASH').matching, 0);
  assert.equal(matchingAgents(agents, [{ key: ' ', op: 'EXISTS', values: '' }], 'BASH').matching, 2, 'a blank term is not sent, so it does not count');
});

test('an HTTP event needs the http executor', () => {
  assert.deepEqual(matchingAgents(agents, [{ key: 'zone', op: 'EQ', values: 'eu' }], 'HTTP'), { matching: 1, online: 1, total: 1, lacking: 2 });
});
