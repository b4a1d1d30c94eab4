// An agent cut off from the control plane by a network partition (a TCP proxy
// the test controls; the stream stays open, bytes just stop), for less and
// for more than its lease (10 s). Below the lease nothing is reassigned.
// Above it the retry policy applies; when the partition heals the agent is
// told to stop the stale attempt, and a late result is refused.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { RemoteAgent, Stack, freshDatabase } from './harness.ts';
import { StartCounter } from './history.ts';
import { TcpProxy } from './tcp-proxy.ts';

describe('agent partitioned from the control plane', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let counter: StartCounter;
  let proxy: TcpProxy;
  let cutOff: RemoteAgent;
  const env = { CRONIUM_DOCKER_NETWORK: 'host' };
  const target = { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['partition'] }] } };

  before(async () => {
    counter = await new StartCounter().start();
    database = await freshDatabase('e2e_partition');
    stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_RESTART_GRACE_MS: '2000', CRONIUM_OFFER_TIMEOUT_MS: '3000' } });
    await stack.start();
    proxy = await new TcpProxy(stack.agentPort).start();
    const token = await stack.joinToken();
    cutOff = new RemoteAgent(`localhost:${proxy.port}`, ['--join-token', token, '--slots', '2', '--labels', 'pool=partition'], env).start();
    stack.remoteAgents.push(cutOff);
    await cutOff.connected();
  });
  after(async () => {
    await stack?.stop();
    await proxy?.close();
    await database?.drop();
    counter?.close();
  });

  /** A Python job that reports its start, sleeps, prints and outputs its attempt. */
  const sleeper = (seconds: number) =>
    [
      'import os, time, urllib.request',
      `urllib.request.urlopen(f"http://127.0.0.1:${counter.port}/start?job={os.environ['CRONIUM_JOB_ID']}&attempt={os.environ['CRONIUM_ATTEMPT']}").read()`,
      `time.sleep(${seconds})`,
      'print("finished attempt", os.environ["CRONIUM_ATTEMPT"], flush=True)',
    ].join('\n');

  const agentIdOf = async (agent: RemoteAgent) => {
    const { X509Certificate } = await import('node:crypto');
    const { readFileSync } = await import('node:fs');
    return new X509Certificate(readFileSync(`${agent.dataDir}/client.crt`)).subject.replace('CN=', '');
  };

  test('a partition shorter than the lease: nothing is reassigned, the job ends once where it ran', { timeout: 120_000 }, async () => {
    const event = await stack.createEvent({ name: 'short partition', type: 'EVENT_TYPE_PYTHON', script: sleeper(8), network: true, retries: 2, target });
    const jobId = (await stack.runEvent(event.id)).jobs[0].id;
    await stack.waitForJob(jobId, (job) => job.status === 'JOB_STATUS_RUNNING', 60_000);
    // Another agent that could take the job, were it reassigned.
    const other = await stack.remoteAgent({ labels: { pool: 'partition' }, slots: 2, env });
    proxy.partition();
    await sleep(4_000);
    const during = await stack.getJob(jobId);
    assert.equal(during.status, 'JOB_STATUS_RUNNING');
    assert.equal(during.attempt, 1);
    proxy.heal();
    const job = await stack.waitForTerminal(jobId, 60_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.equal(job.attempt, 1, 'not reassigned');
    assert.equal(job.agentId, await agentIdOf(cutOff));
    assert.deepEqual(counter.starts.get(jobId), [1]);
    await other.stop();
    stack.remoteAgents.splice(stack.remoteAgents.indexOf(other), 1);
  });

  test('a partition longer than the lease: the retry runs; on return the stale attempt is stopped and its late result refused', { timeout: 180_000 }, async () => {
    const retried = await stack.createEvent({ name: 'outlives its lease', type: 'EVENT_TYPE_PYTHON', script: sleeper(30), network: true, retries: 1, target });
    const once = await stack.createEvent({ name: 'finishes while cut off', type: 'EVENT_TYPE_PYTHON', script: sleeper(12), network: true, retries: 0, target });
    const longJob = (await stack.runEvent(retried.id)).jobs[0].id;
    const shortJob = (await stack.runEvent(once.id)).jobs[0].id;
    await Promise.all([longJob, shortJob].map((id) => stack.waitForJob(id, (job) => job.status === 'JOB_STATUS_RUNNING', 60_000)));
    const cutOffId = await agentIdOf(cutOff);
    assert.equal((await stack.getJob(longJob)).agentId, cutOffId);
    assert.equal((await stack.getJob(shortJob)).agentId, cutOffId);

    proxy.partition();
    const partitionedAt = Date.now();
    const other = await stack.remoteAgent({ labels: { pool: 'partition' }, slots: 2, env });
    // The lease runs out: the job with a retry left goes to its second attempt; the one without fails.
    const failed = await stack.waitForTerminal(shortJob, 30_000);
    assert.equal(failed.status, 'JOB_STATUS_FAILED');
    assert.match(failed.error, /agent lost/);
    assert.ok(Date.now() - partitionedAt >= 9_000, 'not before the lease ran out');
    await stack.waitForJob(longJob, (job) => job.attempt === 2, 30_000);
    await sleep(Math.max(0, 16_000 - (Date.now() - partitionedAt)));
    proxy.heal();

    // The returning agent is told its attempt is stale and stops it.
    const deadline = Date.now() + 20_000;
    while (!cutOff.log().includes('attempt fenced out') && Date.now() < deadline) await sleep(200);
    assert.match(cutOff.log(), /attempt fenced out/);
    const job = await stack.waitForTerminal(longJob, 90_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.equal(job.attempt, 2);
    assert.deepEqual(counter.starts.get(longJob), [1, 2]);
    const stdout = (await stack.watchJob(longJob)).filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT' && m.log.attempt === 1);
    assert.deepEqual(stdout, [], 'nothing of the stale attempt was stored');

    // The short job finished during the partition; its result arrived late and was refused.
    await sleep(3_000);
    const still = await stack.getJob(shortJob);
    assert.equal(still.status, 'JOB_STATUS_FAILED');
    assert.match(still.error, /agent lost/);
    assert.deepEqual(counter.starts.get(shortJob), [1], 'a job without retries never started twice');
    await other.stop();
    stack.remoteAgents.splice(stack.remoteAgents.indexOf(other), 1);
  });
});
