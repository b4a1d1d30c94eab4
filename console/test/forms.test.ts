// The console's form parsing: what an operator types becomes the API's
// messages, and edits keep what the form does not show.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { LabelOp, Priority } from '@cronium/proto/api/v1/common';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Action, Concurrency, EventSchema, EventStatus, EventType, IntervalUnit, MissedFire } from '@cronium/proto/api/v1/event';
import { eventFromForm, FormError, parseEnv } from '../src/lib/server/event-form.ts';
import { installCommand, parseLabels } from '../src/lib/install-command.ts';

function form(fields: Record<string, string | string[]>): FormData {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) for (const v of [value].flat()) data.append(name, v);
  return data;
}

test('an event form becomes an Event: type, schedule, env, label terms', () => {
  const event = eventFromForm(
    form({
      name: ' nightly ', type: 'PYTHON', status: 'PAUSED', script: 'print(1)\r\n', env: 'A=1\n# comment\n\nB=x=y',
      timeoutSeconds: '30', retries: '2', cron: '0 3 * * *', timezone: 'Europe/Paris', targetKind: 'selector',
      termKey: ['zone', '', 'gpu'], termOp: ['IN', 'EQ', 'EXISTS'], termValues: ['eu, us', '', ''],
    }),
  );
  assert.equal(event.name, 'nightly');
  assert.equal(event.type, EventType.PYTHON);
  assert.equal(event.status, EventStatus.PAUSED);
  assert.equal(event.script, 'print(1)\n');
  assert.deepEqual(event.env, { A: '1', B: 'x=y' });
  assert.equal(event.timeoutSeconds, 30);
  assert.equal(event.retries, 2);
  assert.deepEqual({ cron: event.schedule?.cron, timezone: event.schedule?.timezone }, { cron: '0 3 * * *', timezone: 'Europe/Paris' });
  assert.equal(event.target?.kind.case, 'selector');
  const required = event.target?.kind.case === 'selector' ? event.target.kind.value.required : [];
  assert.deepEqual(required.map((t) => [t.key, t.op, t.values]), [['zone', LabelOp.IN, ['eu', 'us']], ['gpu', LabelOp.EXISTS, []]]);
});

test('no cron means on demand; no terms means any agent; servers are a target too', () => {
  const event = eventFromForm(form({ name: 'x', type: 'BASH', cron: '', targetKind: 'selector' }));
  assert.equal(event.schedule, undefined);
  assert.equal(event.target, undefined);
  const onServers = eventFromForm(form({ name: 'x', type: 'BASH', targetKind: 'servers', serverIds: ['s1', 's2'] }));
  assert.deepEqual(onServers.target?.kind.case === 'servers' ? onServers.target.kind.value.serverIds : [], ['s1', 's2']);
});

test('an edit keeps what the form does not show (priority, limits, preferred terms)', () => {
  const stored = create(EventSchema, {
    id: 'e1', name: 'old', priority: Priority.HIGH, memoryMb: 512, network: true,
    target: { kind: { case: 'selector', value: { preferred: [{ term: { key: 'disk', op: LabelOp.EQ, values: ['ssd'] }, weight: 5 }], count: 2 } } },
  });
  const event = eventFromForm(form({ name: 'new', type: 'BASH', targetKind: 'selector', termKey: 'zone', termOp: 'EQ', termValues: 'eu' }), stored);
  assert.equal(event.id, 'e1');
  assert.equal(event.name, 'new');
  assert.equal(event.priority, Priority.HIGH);
  assert.equal(event.memoryMb, 512);
  assert.equal(event.network, true);
  const selector = event.target?.kind.case === 'selector' ? event.target.kind.value : undefined;
  assert.equal(selector?.count, 2);
  assert.equal(selector?.preferred[0]?.term?.key, 'disk');
  assert.equal(selector?.required[0]?.key, 'zone');
});

test('bad numbers and env lines are refused with the field named', () => {
  assert.throws(() => eventFromForm(form({ name: 'x', retries: '-1' })), (e: Error) => e instanceof FormError && /Retries/.test(e.message));
  assert.throws(() => parseEnv('OK=1\nnot a pair'), /Environment line 2/);
});

test('labels and the install command', () => {
  assert.deepEqual(parseLabels('pool=web, zone = eu'), { pool: 'web', zone: 'eu' });
  assert.throws(() => parseLabels('pool'), /key=value/);
  assert.equal(
    installCommand({ controlPlane: 'cp.example.com:8443', token: 'T', labels: { pool: 'web', zone: 'eu' } }),
    'sh install.sh --binary ./cronium-agent --control-plane cp.example.com:8443 --join-token T --labels pool=web,zone=eu',
  );
  assert.equal(installCommand({ controlPlane: 'h:1', token: 'T', labels: {} }), 'sh install.sh --binary ./cronium-agent --control-plane h:1 --join-token T');
});

test('schedule kinds, policies and actions come from the form', () => {
  const event = eventFromForm(
    form({
      name: 'x', type: 'BASH', targetKind: 'selector', scheduleKind: 'interval', intervalEvery: '90', intervalUnit: 'SECONDS',
      startAt: '2030-01-02T03:04:05.000Z', maxExecutions: '4', missedFire: 'SKIP', concurrency: 'REPLACE', retryDelaySeconds: '7',
      actionTrigger: ['ON_FAILURE', 'ON_CONDITION'], actionKind: ['notify', 'runEvent'], actionTarget: ['ch1', 'ev2'],
      actionTemplate: ['{{event.name}} failed', ''], actionSubject: ['Alert', ''],
    }),
  );
  assert.deepEqual([event.schedule?.interval?.every, event.schedule?.interval?.unit, event.schedule?.cron], [90, IntervalUnit.SECONDS, '']);
  assert.equal(event.schedule?.startAt && timestampDate(event.schedule.startAt).toISOString(), '2030-01-02T03:04:05.000Z');
  assert.deepEqual([event.maxExecutions, event.missedFirePolicy, event.concurrencyPolicy, event.retryDelaySeconds], [4, MissedFire.SKIP, Concurrency.REPLACE, 7]);
  assert.deepEqual(event.actions.map((a) => [a.trigger, a.kind.case, a.kind.value && ('channelId' in a.kind.value ? a.kind.value.channelId : a.kind.value.eventId)]), [
    [Action.ON_FAILURE, 'notify', 'ch1'],
    [Action.ON_CONDITION, 'runEvent', 'ev2'],
  ]);
  assert.throws(() => eventFromForm(form({ name: 'x', scheduleKind: 'once' })), FormError, 'a one-shot needs its time');
  assert.throws(() => eventFromForm(form({ name: 'x', actionTrigger: 'ALWAYS', actionKind: 'notify', actionTarget: '' })), /Action 1: choose a channel/);
});
