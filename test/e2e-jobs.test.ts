// The spine end to end on real parts: Connect JSON API → control plane
// (Postgres, NATS) → mTLS gRPC → orchestrator agent → hardened Docker container.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Stack, containersGone, containersOf, freshDatabase, networkOf } from './harness.ts';

const LOG_LIMIT = 256 * 1024;

describe('jobs through the API (Postgres + NATS store)', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;

  before(async () => {
    database = await freshDatabase('e2e_jobs');
    stack = new Stack({
      databaseUrl: database.url,
      natsUrl: 'nats://127.0.0.1:4222',
      env: { CRONIUM_JOB_LOG_LIMIT_BYTES: String(LOG_LIMIT) },
    });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
  });

  const scripts = {
    EVENT_TYPE_BASH: `echo line one\necho line two\necho line three\ncronium_output '{"n": 3}'`,
    EVENT_TYPE_PYTHON: `import cronium\nfor word in ["one", "two", "three"]:\n    print("line", word, flush=True)\ncronium.output({"n": 3})`,
    EVENT_TYPE_NODE: `const cronium = require('cronium');\nfor (const w of ['one', 'two', 'three']) console.log('line', w);\ncronium.output({ n: 3 });`,
  };
  for (const [type, script] of Object.entries(scripts)) {
    test(`${type}: three lines and an output`, async () => {
      const event = await stack.createEvent({ name: `three lines ${type}`, type, script });
      const run = await stack.runEvent(event.id);
      assert.equal(run.jobs.length, 1);
      const job = await stack.waitForTerminal(run.jobs[0].id);
      assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
      assert.equal(job.exitCode, 0);
      assert.deepEqual(job.output, { n: 3 });
      assert.equal(job.agentId, 'local-orchestrator');
      const messages = await stack.watchJob(job.id);
      const stdout = messages.filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join('');
      assert.deepEqual(stdout.trim().split('\n'), ['line one', 'line two', 'line three']);
      assert.equal(messages.at(-1).job.status, 'JOB_STATUS_SUCCEEDED');
      const finished = (await stack.ok('cronium.api.v1.RunService/GetRun', { id: run.id })).run;
      assert.equal(finished.status, 'RUN_STATUS_SUCCEEDED');
      assert.equal(finished.exitCode, 0);
    });
  }

  test('a script that exits 3 fails with exit code 3; stderr is kept apart', async () => {
    const event = await stack.createEvent({ name: 'exit 3', type: 'EVENT_TYPE_BASH', script: 'echo to-out\necho to-err >&2\nexit 3' });
    const run = await stack.runEvent(event.id);
    const job = await stack.waitForTerminal(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_FAILED');
    assert.equal(job.exitCode, 3);
    const messages = await stack.watchJob(job.id);
    assert.equal(messages.filter((m) => m.log?.stream === 'LOG_STREAM_STDERR').map((m) => m.log.data).join(''), 'to-err\n');
    assert.equal(messages.filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join(''), 'to-out\n');
    const finished = (await stack.ok('cronium.api.v1.RunService/GetRun', { id: run.id })).run;
    assert.equal(finished.status, 'RUN_STATUS_FAILED');
    assert.equal(finished.exitCode, 3);
  });

  test('sleep 60 with a 2 s timeout ends TIMED_OUT within seconds and leaves no container', async () => {
    const event = await stack.createEvent({ name: 'too slow', type: 'EVENT_TYPE_BASH', script: 'echo start\nsleep 60', timeoutSeconds: 2 });
    const started = Date.now();
    const run = await stack.runEvent(event.id);
    const job = await stack.waitForTerminal(run.jobs[0].id, 30_000);
    assert.equal(job.status, 'JOB_STATUS_TIMED_OUT');
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
    assert.match(job.error, /timed out/);
    assert.deepEqual(await containersGone(job.id), []);
  });

  test('a memory hog is reported as out of memory', async () => {
    const event = await stack.createEvent({
      name: 'memory hog',
      type: 'EVENT_TYPE_PYTHON',
      script: 'blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))',
      memoryMb: 64,
    });
    const run = await stack.runEvent(event.id);
    const job = await stack.waitForTerminal(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_FAILED');
    assert.equal(job.oomKilled, true);
    assert.match(job.error, /out of memory/);
  });

  test('the container of a running job is hardened', async () => {
    const event = await stack.createEvent({ name: 'inspect me', type: 'EVENT_TYPE_BASH', script: 'echo ready\nsleep 30', timeoutSeconds: 60 });
    const run = await stack.runEvent(event.id);
    const jobId = run.jobs[0].id;
    await stack.waitForJob(jobId, (job) => job.status === 'JOB_STATUS_RUNNING');
    const [containerId] = containersOf(jobId);
    assert.ok(containerId, 'a container runs the job');
    const [info] = JSON.parse(execFileSync('docker', ['inspect', containerId!], { encoding: 'utf8' }));
    const host = info.HostConfig;
    assert.deepEqual(host.CapDrop.map((c: string) => c.toUpperCase()), ['ALL']);
    assert.ok(host.SecurityOpt.includes('no-new-privileges'));
    assert.equal(host.ReadonlyRootfs, true);
    assert.ok(host.Tmpfs['/tmp'] !== undefined);
    assert.equal(networkOf(info), 'none');
    assert.ok(host.PidsLimit > 0);
    assert.equal(host.Memory, 256 * 1024 * 1024);
    assert.ok(host.NanoCpus > 0);
    assert.notEqual(host.Privileged, true);
    assert.ok(!JSON.stringify(host.Binds ?? []).includes('docker.sock'));
    assert.ok(info.Config.User && !['', '0', 'root'].includes(info.Config.User.split(':')[0]));
    const cancelled = (await stack.ok('cronium.api.v1.JobService/CancelJob', { id: jobId })).job;
    assert.ok(['JOB_STATUS_RUNNING', 'JOB_STATUS_CANCELLED'].includes(cancelled.status));
    const job = await stack.waitForTerminal(jobId);
    assert.equal(job.status, 'JOB_STATUS_CANCELLED');
    assert.deepEqual(await containersGone(jobId), []);
  });

  test('input reaches the script; variables persist between runs of the same owner', async () => {
    const writer = await stack.createEvent({
      name: 'set variable',
      type: 'EVENT_TYPE_PYTHON',
      script: 'import cronium\nname = cronium.input()["name"]\ncronium.set_variable("greeting", "hello " + name)\ncronium.set_condition(True)',
    });
    const first = await stack.waitForTerminal((await stack.runEvent(writer.id, { name: 'ada' })).jobs[0].id);
    assert.equal(first.status, 'JOB_STATUS_SUCCEEDED', first.error);
    assert.equal(first.condition, true);
    const reader = await stack.createEvent({
      name: 'get variable',
      type: 'EVENT_TYPE_NODE',
      script: "const c = require('cronium');\nc.output({ greeting: c.getVariable('greeting'), event: c.event().name });",
    });
    const second = await stack.waitForTerminal((await stack.runEvent(reader.id)).jobs[0].id);
    assert.deepEqual(second.output, { greeting: 'hello ada', event: 'get variable' });
  });

  test('an HTTP request event keeps status and body', async () => {
    const { createServer } = await import('node:http');
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, ok: true }));
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const port = (server.address() as { port: number }).port;
      const event = await stack.createEvent({ name: 'ping', type: 'EVENT_TYPE_HTTP', http: { method: 'POST', url: `http://127.0.0.1:${port}/hook`, body: '{}' } });
      const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
      assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', job.error);
      assert.equal(job.output.status, 200);
      assert.deepEqual(job.output.body, { method: 'POST', ok: true });
    } finally {
      server.close();
    }
  });

  test('WatchJob follows a job live, then ends after the terminal status', async () => {
    const event = await stack.createEvent({ name: 'slow lines', type: 'EVENT_TYPE_BASH', script: 'for i in 1 2 3; do echo tick $i; sleep 0.5; done' });
    const run = await stack.runEvent(event.id);
    const messages = await stack.watchJob(run.jobs[0].id);
    const text = messages.filter((m) => m.log).map((m) => m.log.data).join('');
    assert.equal(text, 'tick 1\ntick 2\ntick 3\n');
    const statuses = messages.filter((m) => m.job).map((m) => m.job.status);
    assert.equal(statuses.at(-1), 'JOB_STATUS_SUCCEEDED');
    assert.ok(statuses.length >= 2, `saw the job change while watching: ${statuses}`);
  });

  test('cancelling a run stops its running job', async () => {
    const event = await stack.createEvent({ name: 'cancel me', type: 'EVENT_TYPE_BASH', script: 'trap "echo got TERM; exit 143" TERM\necho waiting\nsleep 60 & wait' });
    const run = await stack.runEvent(event.id);
    await stack.waitForJob(run.jobs[0].id, (job) => job.status === 'JOB_STATUS_RUNNING');
    await sleep(300);
    await stack.ok('cronium.api.v1.RunService/CancelRun', { id: run.id });
    const job = await stack.waitForTerminal(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_CANCELLED');
    const finished = (await stack.ok('cronium.api.v1.RunService/GetRun', { id: run.id })).run;
    assert.equal(finished.status, 'RUN_STATUS_CANCELLED');
    assert.deepEqual(await containersGone(job.id), []);
  });

  test('a job writing more than the log limit keeps the head and a truncation marker', async () => {
    const event = await stack.createEvent({ name: 'chatty', type: 'EVENT_TYPE_PYTHON', script: 'import sys\nfor i in range(20000):\n    print("x" * 60, i)\nprint("the end")' });
    const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
    assert.equal(job.logTruncated, true);
    const messages = await stack.watchJob(job.id);
    const stdout = messages.filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join('');
    assert.ok(stdout.length <= LOG_LIMIT && stdout.length > LOG_LIMIT - 1024, `kept ${stdout.length} bytes`);
    assert.ok(stdout.startsWith('x'.repeat(60) + ' 0\n'));
    assert.ok(!stdout.includes('the end'));
    const system = messages.filter((m) => m.log?.stream === 'LOG_STREAM_SYSTEM').map((m) => m.log.data).join('');
    assert.match(system, /log truncated/);
  });

  test('bad input is refused with the field named, and nothing is written', async () => {
    const before = ((await stack.ok('cronium.api.v1.EventService/ListEvents', {})).events ?? []).length;
    const missingName = await stack.call('cronium.api.v1.EventService/CreateEvent', { event: { type: 'EVENT_TYPE_BASH', script: 'true' } });
    assert.equal(missingName.status, 400);
    assert.equal(missingName.body.code, 'invalid_argument');
    assert.match(missingName.body.message, /event\.name/);
    const unknownType = await stack.call('cronium.api.v1.EventService/CreateEvent', { event: { name: 'x', type: 'EVENT_TYPE_COBOL', script: 'true' } });
    assert.equal(unknownType.body.code, 'invalid_argument');
    assert.match(unknownType.body.message, /type/);
    const noType = await stack.call('cronium.api.v1.EventService/CreateEvent', { event: { name: 'x', script: 'true' } });
    assert.equal(noType.body.code, 'invalid_argument');
    assert.match(noType.body.message, /event\.type/);
    const badCron = await stack.call('cronium.api.v1.EventService/CreateEvent', { event: { name: 'x', type: 'EVENT_TYPE_BASH', script: 'true', schedule: { cron: '0 0 31 2 *' } } });
    assert.equal(badCron.body.code, 'invalid_argument');
    assert.match(badCron.body.message, /event\.schedule/);
    assert.equal(((await stack.ok('cronium.api.v1.EventService/ListEvents', {})).events ?? []).length, before);

    const unknownEvent = await stack.call('cronium.api.v1.EventService/RunEvent', { id: '00000000-0000-0000-0000-000000000000' });
    assert.equal(unknownEvent.status, 404);
    assert.equal(unknownEvent.body.code, 'not_found');
    const unknownJob = await stack.call('cronium.api.v1.JobService/GetJob', { id: 'nope' });
    assert.equal(unknownJob.body.code, 'not_found');
  });

  test('no token or a wrong token is unauthenticated', async () => {
    const none = await stack.call('cronium.api.v1.EventService/ListEvents', {}, null);
    assert.equal(none.status, 401);
    assert.equal(none.body.code, 'unauthenticated');
    const wrong = await stack.call('cronium.api.v1.EventService/ListEvents', {}, 'crn_not-a-token');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.code, 'unauthenticated');
  });

  test('runs and jobs page through ListRuns and ListJobs', async () => {
    const event = await stack.createEvent({ name: 'paged', type: 'EVENT_TYPE_BASH', script: 'true' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await stack.runEvent(event.id)).id);
    const first = await stack.ok('cronium.api.v1.RunService/ListRuns', { eventId: event.id, pageSize: 2 });
    assert.equal(first.runs.length, 2);
    assert.ok(first.nextPageToken);
    const second = await stack.ok('cronium.api.v1.RunService/ListRuns', { eventId: event.id, pageSize: 2, pageToken: first.nextPageToken });
    assert.equal(second.runs.length, 1);
    assert.deepEqual([...first.runs, ...second.runs].map((r: any) => r.id).sort(), [...ids].sort());
    const jobs = await stack.ok('cronium.api.v1.JobService/ListJobs', { eventId: event.id });
    assert.equal(jobs.jobs.length, 3);
  });
});
