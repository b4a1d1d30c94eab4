// Killing the control plane mid-job (embedded PGlite store): the agent keeps
// the job running, reconnects, and the job ends in exactly one terminal state
// with its whole log.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Stack } from './harness.ts';

describe('control plane killed mid-job (embedded store)', () => {
  let stack: Stack;

  before(async () => {
    stack = new Stack();
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
  });

  test('the job still ends once, with its full log', async () => {
    const script = 'for i in $(seq 1 8); do echo "line $i"; sleep 0.5; done\ncronium_output \'{"done": true}\'';
    const event = await stack.createEvent({ name: 'survives restarts', type: 'EVENT_TYPE_BASH', script });
    const run = await stack.runEvent(event.id);
    const jobId = run.jobs[0].id;
    await stack.waitForJob(jobId, (job) => job.status === 'JOB_STATUS_RUNNING');
    await sleep(1000);

    await stack.killControlPlane();
    await sleep(1500); // the job goes on writing while nobody listens
    await stack.startControlPlane();
    await stack.waitForAgent();

    const job = await stack.waitForTerminal(jobId, 60_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.equal(job.attempt, 1, 'the job was not run twice');
    assert.deepEqual(job.output, { done: true });
    const messages = await stack.watchJob(jobId);
    const lines = messages.filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join('').trim().split('\n');
    assert.deepEqual(lines, Array.from({ length: 8 }, (_, i) => `line ${i + 1}`));
    const jobs = (await stack.ok('cronium.api.v1.JobService/ListJobs', { eventId: event.id })).jobs;
    assert.equal(jobs.length, 1);
    const finished = (await stack.ok('cronium.api.v1.RunService/GetRun', { id: run.id })).run;
    assert.equal(finished.status, 'RUN_STATUS_SUCCEEDED');
  });
});
