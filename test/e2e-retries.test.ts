// Retries, concurrency policies and cancellation on real processes: each retry
// is the next attempt of the same job, listed by ListAttempts; FORBID skips a
// start while a run is running, REPLACE cancels it; cancel works for a job
// wherever it is (queued, just offered, running, waiting for its retry).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Stack, containersGone, freshDatabase } from './harness.ts';

/** A bash script that fails until its attempt `succeedAt` (counted in a variable), then succeeds. */
function flaky(succeedAt: number): string {
  const key = `flaky_${randomUUID().replaceAll('-', '')}`;
  return `n=$(cronium_get_variable ${key} || echo 0)\nn=$((n + 1))\ncronium_set_variable ${key} "$n"\necho "attempt $n"\n[ "$n" -ge ${succeedAt} ] || exit 7`;
}

describe('retries, concurrency and cancel', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;

  before(async () => {
    database = await freshDatabase('e2e_retries');
    stack = new Stack({ databaseUrl: database.url });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
  });

  const attempts = async (jobId: string) => (await stack.ok('cronium.api.v1.JobService/ListAttempts', { jobId })).attempts ?? [];
  const getRun = async (id: string) => (await stack.ok('cronium.api.v1.RunService/GetRun', { id })).run;
  const waitForRun = async (id: string, predicate: (run: any) => boolean, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const run = await getRun(id);
      if (predicate(run)) return run;
      if (Date.now() > deadline) throw new Error(`run ${id} did not get there: ${JSON.stringify(run)}`);
      await sleep(150);
    }
  };

  test('a script that fails twice, with retries 3, succeeds at attempt 3; every attempt is listed', { timeout: 90_000 }, async () => {
    const event = await stack.createEvent({ name: 'flaky', type: 'EVENT_TYPE_BASH', script: flaky(3), retries: 3, retryDelaySeconds: 1 });
    assert.equal(event.retryDelaySeconds, 1);
    const run = await stack.runEvent(event.id);
    const job = await stack.waitForTerminal(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.equal(job.attempt, 3);
    const list = await attempts(job.id);
    assert.deepEqual(
      list.map((a: any) => [a.attempt, a.status, a.exitCode]),
      [
        [1, 'JOB_STATUS_FAILED', 7],
        [2, 'JOB_STATUS_FAILED', 7],
        [3, 'JOB_STATUS_SUCCEEDED', 0],
      ],
    );
    for (const attempt of list) {
      assert.equal(attempt.agentId, 'local-orchestrator');
      assert.ok(Date.parse(attempt.startedAt) <= Date.parse(attempt.finishedAt), JSON.stringify(attempt));
    }
    // Each retry waited for its backoff (full jitter up to 1 s, then 2 s) before starting.
    for (const i of [0, 1]) {
      const retryAt = Date.parse(list[i].retryAt);
      assert.ok(retryAt >= Date.parse(list[i].finishedAt) - 5 && retryAt <= Date.parse(list[i].finishedAt) + 1000 * 2 ** i + 1500, JSON.stringify(list[i]));
      assert.ok(Date.parse(list[i + 1].startedAt) >= retryAt - 5, 'the next attempt started after its retry time');
    }
    assert.equal((await getRun(run.id)).status, 'RUN_STATUS_SUCCEEDED');
  });

  test('the same script with retries 0 fails at attempt 1 and never runs twice', { timeout: 60_000 }, async () => {
    const event = await stack.createEvent({ name: 'not retried', type: 'EVENT_TYPE_BASH', script: flaky(3), retries: 0 });
    const run = await stack.runEvent(event.id);
    const job = await stack.waitForTerminal(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_FAILED');
    assert.equal(job.attempt, 1);
    assert.equal(job.exitCode, 7);
    await sleep(1500);
    const list = await attempts(job.id);
    assert.deepEqual(list.map((a: any) => [a.attempt, a.status, a.retryAt]), [[1, 'JOB_STATUS_FAILED', undefined]]);
    assert.equal((await stack.getJob(job.id)).attempt, 1);
  });

  test('CONCURRENCY_FORBID: RunEvent during a run answers failed_precondition; overlapping scheduled fires are skipped and recorded', { timeout: 60_000 }, async () => {
    const event = await stack.createEvent({ name: 'one at a time', type: 'EVENT_TYPE_BASH', script: 'sleep 30', concurrencyPolicy: 'CONCURRENCY_FORBID' });
    assert.equal(event.concurrencyPolicy, 'CONCURRENCY_FORBID');
    const first = await stack.runEvent(event.id);
    const refused = await stack.call('cronium.api.v1.EventService/RunEvent', { id: event.id });
    assert.equal(refused.body.code, 'failed_precondition');
    assert.match(refused.body.message, new RegExp(`run ${first.id} of this event is still running.*CONCURRENCY_FORBID`));
    // Its webhook obeys the same policy.
    const hook = (await stack.ok('cronium.api.v1.EventService/RotateEventWebhook', { id: event.id })).event.webhook;
    const hooked = await fetch(`${stack.baseUrl}${hook.path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-cronium-secret': hook.secret }, body: '{}' });
    assert.equal(hooked.status, 409);
    assert.match(await hooked.text(), /still running.*CONCURRENCY_FORBID/);
    assert.equal((await stack.ok('cronium.api.v1.RunService/ListRuns', { eventId: event.id })).runs.length, 1, 'the hook made no run');
    await stack.ok('cronium.api.v1.RunService/CancelRun', { id: first.id });
    await waitForRun(first.id, (run) => run.status === 'RUN_STATUS_CANCELLED');
    const second = await stack.runEvent(event.id);
    assert.ok(second.id, 'once the run ended, a new one starts');
    await stack.ok('cronium.api.v1.RunService/CancelRun', { id: second.id });
    await waitForRun(second.id, (run) => run.status === 'RUN_STATUS_CANCELLED');

    const scheduled = await stack.createEvent({
      name: 'scheduled, one at a time',
      type: 'EVENT_TYPE_BASH',
      script: 'sleep 30',
      schedule: { cron: '* * * * * *' },
      concurrencyPolicy: 'CONCURRENCY_FORBID',
    });
    await sleep(4500);
    await stack.ok('cronium.api.v1.EventService/UpdateEvent', { event: { ...scheduled, status: 'EVENT_STATUS_PAUSED' } });
    const runs = (await stack.ok('cronium.api.v1.RunService/ListRuns', { eventId: scheduled.id })).runs;
    assert.equal(runs.length, 1, `one run while the first still runs: ${runs.map((r: any) => r.input.scheduledAt)}`);
    const { fires } = await stack.ok('cronium.api.v1.EventService/ListScheduleFires', { eventId: scheduled.id });
    assert.equal(fires.filter((fire: any) => fire.runId).length, 1, JSON.stringify(fires));
    assert.equal(fires.at(-1).runId, runs[0].id, 'the oldest fire made the run');
    const skipped = fires.filter((fire: any) => !fire.runId);
    assert.ok(skipped.length >= 2, `later instants were recorded as skipped: ${JSON.stringify(fires)}`);
    for (const fire of skipped) assert.match(fire.skippedReason, new RegExp(`run ${runs[0].id} of this event is still running`));
    await stack.ok('cronium.api.v1.RunService/CancelRun', { id: runs[0].id });
  });

  test('CONCURRENCY_REPLACE: a new run cancels the running one, whose container goes', { timeout: 60_000 }, async () => {
    const event = await stack.createEvent({ name: 'latest wins', type: 'EVENT_TYPE_BASH', script: 'echo started\nsleep 30', concurrencyPolicy: 'CONCURRENCY_REPLACE' });
    const old = await stack.runEvent(event.id);
    await stack.waitForJob(old.jobs[0].id, (job) => job.status === 'JOB_STATUS_RUNNING');
    const replacing = await stack.runEvent(event.id);
    const oldJob = await stack.waitForTerminal(old.jobs[0].id, 30_000);
    assert.equal(oldJob.status, 'JOB_STATUS_CANCELLED');
    assert.equal((await waitForRun(old.id, (run) => run.status !== 'RUN_STATUS_RUNNING')).status, 'RUN_STATUS_CANCELLED');
    assert.deepEqual(await containersGone(oldJob.id), []);
    const fresh = await stack.waitForJob(replacing.jobs[0].id, (job) => job.status === 'JOB_STATUS_RUNNING');
    assert.equal(fresh.status, 'JOB_STATUS_RUNNING', 'the new run goes on');
    await stack.ok('cronium.api.v1.RunService/CancelRun', { id: replacing.id });
    assert.equal((await waitForRun(replacing.id, (run) => run.status !== 'RUN_STATUS_RUNNING')).status, 'RUN_STATUS_CANCELLED');

    // A scheduled fire replaces too: the earlier run's container is stopped by its agent.
    const scheduled = await stack.createEvent({
      name: 'scheduled, latest wins',
      type: 'EVENT_TYPE_BASH',
      script: 'sleep 30',
      schedule: { cron: '*/3 * * * * *' },
      concurrencyPolicy: 'CONCURRENCY_REPLACE',
    });
    const listRuns = async () => (await stack.ok('cronium.api.v1.RunService/ListRuns', { eventId: scheduled.id })).runs ?? [];
    const deadline = Date.now() + 30_000;
    while ((await listRuns()).length < 2 && Date.now() < deadline) await sleep(200);
    await stack.ok('cronium.api.v1.EventService/DeleteEvent', { id: scheduled.id });
    const [newer, older] = await listRuns();
    assert.ok(older, 'two fires');
    assert.equal((await waitForRun(older.id, (run) => run.status !== 'RUN_STATUS_RUNNING', 30_000)).status, 'RUN_STATUS_CANCELLED');
    assert.deepEqual(await containersGone(older.jobs[0].id), []);
    await stack.ok('cronium.api.v1.RunService/CancelRun', { id: newer.id });
  });

  test('cancel: a queued job ends at once; one cancelled as it is offered ends cancelled and leaves no container', { timeout: 60_000 }, async () => {
    const nowhere = await stack.createEvent({
      name: 'no agent matches',
      type: 'EVENT_TYPE_BASH',
      script: 'true',
      target: { selector: { required: [{ key: 'zone', op: 'LABEL_OP_EQ', values: ['nowhere'] }] } },
    });
    const queued = await stack.runEvent(nowhere.id);
    assert.equal((await stack.getJob(queued.jobs[0].id)).status, 'JOB_STATUS_QUEUED');
    const cancelled = (await stack.ok('cronium.api.v1.JobService/CancelJob', { id: queued.jobs[0].id })).job;
    assert.equal(cancelled.status, 'JOB_STATUS_CANCELLED', 'at once');
    assert.equal((await getRun(queued.id)).status, 'RUN_STATUS_CANCELLED');

    // Cancelled right after RunEvent: the job is queued or being offered; either way it ends cancelled, never run to the end.
    const event = await stack.createEvent({ name: 'cancel at once', type: 'EVENT_TYPE_BASH', script: 'sleep 20' });
    for (let i = 0; i < 3; i++) {
      const run = await stack.runEvent(event.id);
      await stack.ok('cronium.api.v1.RunService/CancelRun', { id: run.id });
      const job = await stack.waitForTerminal(run.jobs[0].id, 30_000);
      assert.equal(job.status, 'JOB_STATUS_CANCELLED', JSON.stringify(job));
      assert.equal((await waitForRun(run.id, (r) => r.status !== 'RUN_STATUS_RUNNING')).status, 'RUN_STATUS_CANCELLED');
      await sleep(500);
      assert.deepEqual(await containersGone(job.id), [], 'no container left');
    }
  });

  test('cancelling a run whose job waits for its retry ends it without another attempt', { timeout: 60_000 }, async () => {
    const event = await stack.createEvent({ name: 'always fails', type: 'EVENT_TYPE_BASH', script: 'exit 1', retries: 5, retryDelaySeconds: 600 });
    const run = await stack.runEvent(event.id);
    const jobId = run.jobs[0].id;
    const waiting = await stack.waitForJob(jobId, (job) => job.attempt === 2);
    assert.equal(waiting.status, 'JOB_STATUS_QUEUED');
    assert.match(waiting.waitingReason, /waiting to retry at/);
    await stack.ok('cronium.api.v1.RunService/CancelRun', { id: run.id });
    const job = await stack.getJob(jobId);
    assert.equal(job.status, 'JOB_STATUS_CANCELLED');
    assert.equal((await getRun(run.id)).status, 'RUN_STATUS_CANCELLED');
    assert.deepEqual((await attempts(jobId)).map((a: any) => [a.attempt, a.status]), [
      [1, 'JOB_STATUS_FAILED'],
      [2, 'JOB_STATUS_CANCELLED'],
    ]);
  });
});
