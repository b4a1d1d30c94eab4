// Jobs that never reach a working agent: an offer written to a stream whose
// agent is dead (it never answers), and a job accepted and reported started by
// an agent that then goes silent. Neither job hangs: the first is back in the
// queue within the offer timeout, the second within its lease, and both then
// run once on a live agent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { JobState } from '@cronium/proto/agent/v1';
import { Stack, freshDatabase } from './harness.ts';
import { StartCounter } from './history.ts';
import { assertKeptOnResume, connectByHand, enrollByHand, type AgentCredentials, type LinkClient, type LinkStream } from './link-client.ts';

const LEASE_MS = 10_000;

describe('jobs stuck before they reach an agent', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let counter: StartCounter;
  const target = { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['stuck'] }] } };

  before(async () => {
    counter = await new StartCounter().start();
    database = await freshDatabase('e2e_stuck');
    stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_RESTART_GRACE_MS: '1000', CRONIUM_OFFER_TIMEOUT_MS: '3000' } });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
    counter?.close();
  });

  /** An agent that connects, takes one offer, and then (as far as the control plane can tell) dies with its stream open. */
  async function deadAgent(): Promise<{ stream: LinkStream; client: LinkClient; credentials: AgentCredentials }> {
    const pkiDir = join(stack.dataDir, 'pki');
    const credentials = await enrollByHand(`localhost:${stack.agentPort}`, pkiDir, await stack.joinToken());
    return { ...(await connectByHand(`localhost:${stack.agentPort}`, credentials, { pool: 'stuck' })), credentials };
  }

  test('an offer to a dead stream goes back to the queue within the offer timeout, then runs once elsewhere', { timeout: 120_000 }, async () => {
    const { stream, client } = await deadAgent();
    const event = await stack.createEvent({ name: 'offered into the void', type: 'EVENT_TYPE_PYTHON', script: counter.script(1, 2), network: true, retries: 0, target });
    const jobId = (await stack.runEvent(event.id)).jobs[0].id;
    const offer = await stream.next((m) => m.kind.case === 'jobOffer' && m.kind.value.job?.jobId === jobId, 20_000);
    const offeredAt = Date.now();
    const deadId = offer.kind.case === 'jobOffer' ? (await stack.getJob(jobId)).agentId : '';
    // The stream is gone for good now, but the control plane cannot know (no FIN, no RST); nor is the job offered there again.
    await stack.waitForJob(jobId, (job) => job.status === 'JOB_STATUS_QUEUED', LEASE_MS);
    await new Promise((done) => setTimeout(done, 2_000));
    const waiting = await stack.getJob(jobId);
    assert.equal(waiting.status, 'JOB_STATUS_QUEUED', `not offered to the silent agent ${deadId} again`);
    assert.ok(Date.now() - offeredAt < LEASE_MS, 'back in the queue within the lease');
    stream.close();
    client.close();
    const live = await stack.remoteAgent({ labels: { pool: 'stuck' }, slots: 1, env: { CRONIUM_DOCKER_NETWORK: 'host' } });
    const job = await stack.waitForTerminal(jobId, 60_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.equal(job.attempt, 1, 'an unanswered offer does not use up an attempt');
    assert.deepEqual(counter.starts.get(jobId), [1]);
    await live.stop();
    stack.remoteAgents.splice(stack.remoteAgents.indexOf(live), 1);
  });

  test('an accept sent on its own holds the offer past its deadline: the job is neither requeued nor offered again', { timeout: 60_000 }, async () => {
    const { stream, client } = await deadAgent();
    const event = await stack.createEvent({ name: 'accepted, not started yet', type: 'EVENT_TYPE_BASH', script: 'true', retries: 0, target });
    const jobId = (await stack.runEvent(event.id)).jobs[0].id;
    const offer = await stream.next((m) => m.kind.case === 'jobOffer' && m.kind.value.job?.jobId === jobId, 20_000);
    const ref = offer.kind.case === 'jobOffer' ? offer.kind.value.job! : undefined;
    stream.send({ case: 'jobAccept', value: { job: ref } });
    await new Promise((done) => setTimeout(done, 5_000)); // longer than the 3 s offer timeout
    assert.equal((await stack.getJob(jobId)).status, 'JOB_STATUS_OFFERED', 'the accepted offer stays with its agent');
    assert.equal(stream.received.filter((m) => m.kind.case === 'jobOffer' && m.kind.value.job?.jobId === jobId).length, 1, 'offered once');
    stream.succeed(ref!);
    const job = await stack.waitForTerminal(jobId, 30_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
    assert.equal(job.attempt, 1);
    stream.close();
    client.close();
  });

  test('a job reported started by an agent that then goes silent is requeued when its lease runs out', { timeout: 120_000 }, async () => {
    const { stream, client } = await deadAgent();
    const event = await stack.createEvent({ name: 'started, then silence', type: 'EVENT_TYPE_PYTHON', script: counter.script(1, 2), network: true, retries: 1, target });
    const jobId = (await stack.runEvent(event.id)).jobs[0].id;
    const offer = await stream.next((m) => m.kind.case === 'jobOffer' && m.kind.value.job?.jobId === jobId, 20_000);
    const ref = offer.kind.case === 'jobOffer' ? offer.kind.value.job! : undefined;
    stream.send({ case: 'jobAccept', value: { job: ref } });
    stream.send({ case: 'jobStatus', value: { job: ref, state: JobState.STARTED } });
    await stack.waitForJob(jobId, (job) => job.status === 'JOB_STATUS_RUNNING', 10_000);
    const silentFrom = Date.now();
    const live = await stack.remoteAgent({ labels: { pool: 'stuck' }, slots: 1, env: { CRONIUM_DOCKER_NETWORK: 'host' } });
    const retried = await stack.waitForJob(jobId, (job) => job.attempt === 2, LEASE_MS + 10_000);
    assert.match(retried.error, /agent lost/);
    assert.ok(Date.now() - silentFrom >= LEASE_MS - 2_000, 'not before the lease (renewed by the start) ran out');
    const job = await stack.waitForTerminal(jobId, 60_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.deepEqual(counter.starts.get(jobId), [2], 'the silent attempt never ran; the retry ran once');
    stream.close();
    client.close();
    await live.stop();
    stack.remoteAgents.splice(stack.remoteAgents.indexOf(live), 1);
  });

  test('an accept lost with a killed control plane: the agent that started the job keeps it when it reconnects after the offer timeout', { timeout: 120_000 }, async () => {
    const { stream, client, credentials } = await deadAgent();
    const event = await stack.createEvent({ name: 'accept lost', type: 'EVENT_TYPE_BASH', script: 'true', retries: 0, target });
    const jobId = (await stack.runEvent(event.id)).jobs[0].id;
    const offer = await stream.next((m) => m.kind.case === 'jobOffer' && m.kind.value.job?.jobId === jobId, 20_000);
    const ref = offer.kind.case === 'jobOffer' ? offer.kind.value.job! : undefined;
    // The agent starts the job and sends its accept, but the control plane dies before it reads it.
    await stack.killControlPlane();
    stream.close();
    client.close();
    await stack.startControlPlane();
    await new Promise((done) => setTimeout(done, 5_000)); // longer than the 3 s offer timeout
    await assertKeptOnResume(stack, `localhost:${stack.agentPort}`, credentials, { pool: 'stuck' }, jobId, ref!);
  });
});
