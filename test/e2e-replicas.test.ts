// Two control-plane replicas on one Postgres and NATS, with remote agents that
// know both: either replica takes work for any agent and streams any job's
// live log; killing one moves its agents to the other without losing a job or
// a scheduled fire.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RemoteAgent, Stack, freePort, freshDatabase, scrapeMetrics } from './harness.ts';

const NATS_URL = 'nats://127.0.0.1:4222';

describe('two control-plane replicas', () => {
  let a: Stack;
  let b: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  const agents = new Map<string, RemoteAgent>();

  const idOf = (agent: RemoteAgent) => new X509Certificate(readFileSync(join(agent.dataDir, 'client.crt'))).subject.replace('CN=', '');
  const onName = (name: string) => ({ selector: { required: [{ key: 'name', op: 'LABEL_OP_EQ', values: [name] }] } });

  before(async () => {
    database = await freshDatabase('e2e_replicas');
    // Replicas share the database, the bus and the master key; nothing else.
    const env = { CRONIUM_ENCRYPTION_KEY: randomBytes(32).toString('base64') };
    a = new Stack({ databaseUrl: database.url, natsUrl: NATS_URL, env });
    await a.start();
    b = new Stack({ databaseUrl: database.url, natsUrl: NATS_URL, env });
    b.httpPort = await freePort();
    b.grpcPort = await freePort();
    b.agentPort = await freePort();
    await b.startControlPlane();

    // r1 and r3 enroll through B and prefer it; r2 enrolls through A and prefers it.
    const plans = [
      { name: 'r1', via: b, order: [b, a] },
      { name: 'r2', via: a, order: [a, b] },
      { name: 'r3', via: b, order: [b, a] },
    ];
    await Promise.all(
      plans.map(async ({ name, via, order }) => {
        const token = await via.joinToken();
        const addresses = order.map((stack) => `localhost:${stack.agentPort}`).join(',');
        const agent = new RemoteAgent(addresses, ['--join-token', token, '--slots', '2', '--labels', `name=${name}`]).start();
        await agent.connected();
        agents.set(name, agent);
      }),
    );
  });
  after(async () => {
    await Promise.all([...agents.values()].map((agent) => agent.stop()));
    await a?.stop();
    await b?.stop();
    await database?.drop();
  });

  test('agents enrolled through either replica are online on both', async () => {
    for (const stack of [a, b]) {
      const listed = new Map((await stack.agents()).map((agent: any) => [agent.id, agent.status]));
      for (const agent of agents.values()) assert.equal(listed.get(idOf(agent)), 'AGENT_STATUS_ONLINE', `${idOf(agent)} on replica ${stack === a ? 'A' : 'B'}`);
    }
  });

  test('each replica reports its own streams, its Postgres pools and NATS in /metrics', async () => {
    const [onA, onB] = await Promise.all([scrapeMetrics(`${a.baseUrl}/metrics`), scrapeMetrics(`${b.baseUrl}/metrics`)]);
    assert.equal(onA.value('cronium_agent_streams') + onB.value('cronium_agent_streams'), 4, 'three remote agents and the orchestrator, each on one replica');
    assert.equal(onA.value('cronium_agents', { status: 'online' }), 4, 'the registry is shared');
    for (const scraped of [onA, onB]) {
      assert.equal(scraped.value('cronium_bus_connected', { kind: 'nats' }), 1);
      assert.ok(scraped.value('cronium_postgres_pool_connections', { pool: 'api', state: 'total' }) >= 1);
      assert.ok(scraped.value('cronium_postgres_pool_connections', { pool: 'link', state: 'total' }) >= 1);
    }
  });

  test('a job submitted to A for an agent on B runs, and A streams its live log', async () => {
    const script = 'echo first\nsleep 2\necho second\ncronium_output \'{"ok": true}\'';
    const event = await a.createEvent({ name: 'to B', type: 'EVENT_TYPE_BASH', script, target: onName('r1') });
    const jobId = (await a.runEvent(event.id)).jobs[0].id;
    const early = await a.watchJobUntil(jobId, (m) => m.log?.data === 'first\n');
    assert.equal(early.at(-1).log.data, 'first\n', 'the first line arrived');
    assert.ok(!['JOB_STATUS_SUCCEEDED', 'JOB_STATUS_FAILED'].includes((await a.getJob(jobId)).status), 'while the job still ran');
    const job = await a.waitForTerminal(jobId);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.equal(job.agentId, idOf(agents.get('r1')!));
    assert.deepEqual(job.output, { ok: true });
    const lines = (await b.watchJob(jobId)).filter((m) => m.log).map((m) => m.log.data).join('');
    assert.equal(lines, 'first\nsecond\n', 'B replays the same log');
  });

  test('jobs submitted to either replica run on agents of either', async () => {
    const jobs: { jobId: string; name: string }[] = [];
    for (const via of [a, b]) {
      for (const name of ['r1', 'r2', 'r3']) {
        const event = await via.createEvent({ name: `${name} via ${via === a ? 'A' : 'B'}`, type: 'EVENT_TYPE_BASH', script: `echo ${name}`, target: onName(name) });
        jobs.push({ jobId: (await via.runEvent(event.id)).jobs[0].id, name });
      }
    }
    for (const { jobId, name } of jobs) {
      const job = await b.waitForTerminal(jobId);
      assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
      assert.equal(job.agentId, idOf(agents.get(name)!));
    }
  });

  test('SIGTERM of a replica: it exits within seconds, its agents move to the other, their running jobs finish once', { timeout: 120_000 }, async () => {
    const script = 'for i in $(seq 1 6); do echo "line $i"; sleep 0.5; done';
    const event = await a.createEvent({ name: 'outlives a graceful stop', type: 'EVENT_TYPE_BASH', script, target: onName('r1') });
    const jobId = (await a.runEvent(event.id)).jobs[0].id;
    await a.waitForJob(jobId, (job) => job.status === 'JOB_STATUS_RUNNING');

    const child = b.controlPlane!;
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    const stoppedAt = Date.now();
    child.kill('SIGTERM');
    assert.equal(await exited, 0, 'exits cleanly');
    assert.ok(Date.now() - stoppedAt < 10_000, `exited ${Date.now() - stoppedAt} ms after SIGTERM`);
    await Promise.all(['r1', 'r3'].map((name) => agents.get(name)!.connected(30_000)));

    const job = await a.waitForTerminal(jobId, 60_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.equal(job.attempt, 1, 'not run twice');
    const lines = (await a.watchJob(jobId)).filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join('');
    assert.equal(lines, Array.from({ length: 6 }, (_, i) => `line ${i + 1}\n`).join(''));
    const listed = new Map((await a.agents()).map((agent: any) => [agent.id, agent.status]));
    for (const name of ['r1', 'r3']) assert.equal(listed.get(idOf(agents.get(name)!)), 'AGENT_STATUS_ONLINE', `${name} online through A`);
    await b.startControlPlane();
  });

  test('kill -9 of a replica: its agents move to the other, the running job finishes once, schedules keep firing', { timeout: 120_000 }, async () => {
    const scheduled = await b.createEvent({
      name: 'every second',
      type: 'EVENT_TYPE_BASH',
      script: 'true',
      target: onName('r3'),
      schedule: { cron: '* * * * * *', timezone: 'UTC' },
    });
    const script = 'for i in $(seq 1 8); do echo "line $i"; sleep 0.5; done';
    const event = await b.createEvent({ name: 'outlives its replica', type: 'EVENT_TYPE_BASH', script, target: onName('r2') });
    const jobId = (await b.runEvent(event.id)).jobs[0].id;
    await b.waitForJob(jobId, (job) => job.status === 'JOB_STATUS_RUNNING');

    // A started first and leads the scheduler; r2 is connected to it.
    await a.killControlPlane();
    const killedAt = Date.now();
    await agents.get('r2')!.connected(30_000);
    const movedAfter = Date.now() - killedAt;
    assert.ok(movedAfter < 15_000, `r2 reconnected to B ${movedAfter} ms after the kill`);

    const job = await b.waitForTerminal(jobId, 60_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.equal(job.attempt, 1, 'not run twice');
    const lines = (await b.watchJob(jobId)).filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join('');
    assert.equal(lines, Array.from({ length: 8 }, (_, i) => `line ${i + 1}\n`).join(''));

    await sleep(5_000);
    const runs = (await b.ok('cronium.api.v1.RunService/ListRuns', { eventId: scheduled.id, pageSize: 500 })).runs ?? [];
    const fired: string[] = runs.map((run: any) => run.input.scheduledAt as string).sort();
    assert.equal(new Set(fired).size, fired.length, 'no instant fired twice');
    assert.ok(fired.filter((at) => Date.parse(at) > killedAt + 1_000).length >= 3, `fires went on after the kill: ${fired}`);
  });
});
