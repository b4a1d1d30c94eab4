// Remote agents on real processes and real mTLS: enrollment with one-time
// tokens, label routing and fan-out, drain and revoke, refused identities.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RemoteAgent, Stack, freshDatabase } from './harness.ts';

describe('remote agents', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let eu: RemoteAgent;
  let us: RemoteAgent;
  let web1: RemoteAgent;
  let web2: RemoteAgent;
  let web3: RemoteAgent;

  before(async () => {
    database = await freshDatabase('e2e_agents');
    stack = new Stack({ databaseUrl: database.url });
    await stack.start();
    [eu, us, web1, web2, web3] = await Promise.all([
      stack.remoteAgent({ labels: { zone: 'eu', disk: 'ssd' } }),
      stack.remoteAgent({ labels: { zone: 'us' } }),
      stack.remoteAgent({ pinned: { role: 'web' }, labels: { cores: '8' } }),
      stack.remoteAgent({ pinned: { role: 'web' }, labels: { cores: '2' } }),
      stack.remoteAgent({ pinned: { role: 'web' }, labels: { cores: '4' } }),
    ]);
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
  });

  const idOf = (agent: RemoteAgent) =>
    new X509Certificate(readFileSync(join(agent.dataDir, 'client.crt'))).subject.replace('CN=', '');

  test('enrolled agents are listed online with their labels; the certificate names only the agent id', async () => {
    const agents = await stack.agents();
    const byId = new Map(agents.map((a: any) => [a.id, a]));
    for (const agent of [eu, us, web1, web2, web3]) {
      const listed: any = byId.get(idOf(agent));
      assert.ok(listed, `${idOf(agent)} listed`);
      assert.equal(listed.status, 'AGENT_STATUS_ONLINE');
      assert.equal(listed.mode, 'remote-executor');
      assert.deepEqual(listed.executors.sort(), ['docker', 'http']);
    }
    assert.equal((byId.get(idOf(eu)) as any).labels.zone, 'eu');
    assert.equal((byId.get(idOf(web1)) as any).pinnedLabels.role, 'web');
    const cert = new X509Certificate(readFileSync(join(eu.dataDir, 'client.crt')));
    assert.equal(cert.subject, `CN=${idOf(eu)}`);
    assert.equal(cert.subjectAltName, undefined);
  });

  test('a job whose selector matches one agent runs there and never elsewhere', async () => {
    const event = await stack.createEvent({
      name: 'eu only',
      type: 'EVENT_TYPE_BASH',
      script: 'echo on-eu',
      target: { selector: { required: [{ key: 'zone', op: 'LABEL_OP_EQ', values: ['eu'] }, { key: 'disk', op: 'LABEL_OP_EXISTS' }] } },
    });
    for (let i = 0; i < 4; i++) {
      const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
      assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
      assert.equal(job.agentId, idOf(eu));
    }
  });

  test('preferred terms pick the best matching agent', async () => {
    const event = await stack.createEvent({
      name: 'prefer many cores',
      type: 'EVENT_TYPE_BASH',
      script: 'true',
      target: {
        selector: {
          required: [{ key: 'role', op: 'LABEL_OP_EQ', values: ['web'] }, { key: 'cores', op: 'LABEL_OP_GT', values: ['3'] }],
          preferred: [{ term: { key: 'cores', op: 'LABEL_OP_IN', values: ['8'] }, weight: 10 }],
        },
      },
    });
    const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
    assert.equal(job.agentId, idOf(web1));
  });

  test('count 2 of three matching agents runs exactly two jobs on two agents; all runs one on each', async () => {
    const two = await stack.createEvent({
      name: 'two webs',
      type: 'EVENT_TYPE_BASH',
      script: 'echo fan',
      target: { selector: { required: [{ key: 'role', op: 'LABEL_OP_EQ', values: ['web'] }], count: 2 } },
    });
    const run = await stack.runEvent(two.id);
    assert.equal(run.jobs.length, 2, JSON.stringify(run));
    const jobs = await Promise.all(run.jobs.map((job: any) => stack.waitForTerminal(job.id)));
    const agents = new Set(jobs.map((job) => job.agentId));
    assert.equal(agents.size, 2, JSON.stringify(jobs));
    for (const id of agents) assert.ok([web1, web2, web3].map(idOf).includes(id as string));

    const every = await stack.createEvent({
      name: 'all webs',
      type: 'EVENT_TYPE_BASH',
      script: 'echo fan',
      target: { selector: { required: [{ key: 'role', op: 'LABEL_OP_EQ', values: ['web'] }], all: true } },
    });
    const all = await stack.runEvent(every.id);
    const allJobs = await Promise.all(all.jobs.map((job: any) => stack.waitForTerminal(job.id)));
    assert.deepEqual(allJobs.map((job) => job.agentId).sort(), [web1, web2, web3].map(idOf).sort(), JSON.stringify({ allJobs, agents: await stack.agents() }));
    const finished = (await stack.ok('cronium.api.v1.RunService/GetRun', { id: all.id })).run;
    assert.equal(finished.status, 'RUN_STATUS_SUCCEEDED');
  });

  test('a run with mixed results across agents is PARTIAL with exit 100 + failures', async () => {
    const event = await stack.createEvent({
      name: 'fails on one agent',
      type: 'EVENT_TYPE_BASH',
      script: `[ "$CRONIUM_AGENT_ID" = "${idOf(web2)}" ] && exit 7\necho fine`,
      target: { selector: { required: [{ key: 'role', op: 'LABEL_OP_EQ', values: ['web'] }], all: true } },
    });
    const run = await stack.runEvent(event.id);
    const jobs = await Promise.all(run.jobs.map((job: any) => stack.waitForTerminal(job.id)));
    assert.deepEqual(jobs.map((job) => job.status).sort(), ['JOB_STATUS_FAILED', 'JOB_STATUS_SUCCEEDED', 'JOB_STATUS_SUCCEEDED']);
    const finished = (await stack.ok('cronium.api.v1.RunService/GetRun', { id: run.id })).run;
    assert.equal(finished.status, 'RUN_STATUS_PARTIAL');
    assert.equal(finished.exitCode, 101);
  });

  test('a job nothing matches waits with a reason, then fails after its scheduling timeout', async () => {
    const event = await stack.createEvent({
      name: 'mars',
      type: 'EVENT_TYPE_BASH',
      script: 'true',
      schedulingTimeoutSeconds: 3,
      target: { selector: { required: [{ key: 'zone', op: 'LABEL_OP_EQ', values: ['mars'] }] } },
    });
    const run = await stack.runEvent(event.id);
    const waiting = await stack.getJob(run.jobs[0].id);
    assert.equal(waiting.status, 'JOB_STATUS_QUEUED');
    assert.match(waiting.waitingReason, /no connected agent/);
    const job = await stack.waitForTerminal(run.jobs[0].id, 20_000);
    assert.equal(job.status, 'JOB_STATUS_FAILED');
    assert.match(job.error, /not scheduled within 3 s/);
  });

  test('a join token works once; an expired or foreign token is refused', async () => {
    const token = await stack.joinToken({}, 600);
    const first = new RemoteAgent(`localhost:${stack.agentPort}`, ['--join-token', token]).start();
    stack.remoteAgents.push(first);
    await first.connected();
    const replay = new RemoteAgent(`localhost:${stack.agentPort}`, ['--join-token', token]).start();
    stack.remoteAgents.push(replay);
    assert.equal(await replay.exited(), 2);
    assert.match(replay.log(), /already used or expired/);

    const short = await stack.joinToken({}, 1);
    await sleep(2100);
    const late = new RemoteAgent(`localhost:${stack.agentPort}`, ['--join-token', short]).start();
    stack.remoteAgents.push(late);
    assert.equal(await late.exited(), 2);
    assert.match(late.log(), /refused/);

    const forged = token.slice(0, token.lastIndexOf('.') + 1) + 'AAAA' + token.slice(token.lastIndexOf('.') + 5);
    const bad = new RemoteAgent(`localhost:${stack.agentPort}`, ['--join-token', forged]).start();
    stack.remoteAgents.push(bad);
    assert.equal(await bad.exited(), 2);
  });

  test('a token with maxUses 2 enrolls two agents, each with its own id, and refuses a third', async () => {
    const { token } = await stack.ok('cronium.api.v1.AgentService/CreateJoinToken', { labels: { fleet: 'daemonset' }, maxUses: 2 });
    const fleet = [0, 1].map(() => new RemoteAgent(`localhost:${stack.agentPort}`, ['--join-token', token]).start());
    stack.remoteAgents.push(...fleet);
    await Promise.all(fleet.map((agent) => agent.connected()));
    const ids = fleet.map(idOf);
    assert.notEqual(ids[0], ids[1], 'each agent has its own identity');
    const listed = new Map((await stack.agents()).map((agent: any) => [agent.id, agent]));
    for (const id of ids) assert.equal((listed.get(id) as any)?.pinnedLabels.fleet, 'daemonset', `${id} carries the token's pinned labels`);
    const third = new RemoteAgent(`localhost:${stack.agentPort}`, ['--join-token', token]).start();
    stack.remoteAgents.push(third);
    assert.equal(await third.exited(), 2);
    assert.match(third.log(), /already used or expired/);
    const { status, body } = await stack.call('cronium.api.v1.AgentService/CreateJoinToken', { maxUses: 10_001 });
    assert.equal(status, 400);
    assert.match(body.message, /maxUses/);
  });

  test('a client certificate from another CA is refused', async () => {
    const other = new Stack();
    const { loadOrCreateCa, writeAgentCredentials } = await import('../control-plane/src/pki/ca.ts');
    const foreignCa = await loadOrCreateCa(join(other.dataDir, 'pki'));
    const rogue = new RemoteAgent(`localhost:${stack.agentPort}`, []);
    // A certificate for a real agent id, but signed by a CA the control plane does not trust.
    writeAgentCredentials(rogue.dataDir, await foreignCa.issueAgent(idOf(eu)), readFileSync(join(eu.dataDir, 'ca.crt'), 'utf8'));
    rogue.start();
    stack.remoteAgents.push(rogue);
    const deadline = Date.now() + 30_000;
    while (!/disconnected from control plane/.test(rogue.log()) && Date.now() < deadline) await sleep(100);
    assert.match(rogue.log(), /disconnected from control plane/);
    assert.doesNotMatch(rogue.log(), /connected to control plane/);
    await rogue.kill();
    await other.stop();
  });

  test('drain stops new offers; revoke closes the stream at once and refuses the agent after', async () => {
    const usId = idOf(us);
    const drained = (await stack.ok('cronium.api.v1.AgentService/DrainAgent', { id: usId })).agent;
    assert.equal(drained.status, 'AGENT_STATUS_DRAINING');
    const event = await stack.createEvent({
      name: 'us only',
      type: 'EVENT_TYPE_BASH',
      script: 'true',
      schedulingTimeoutSeconds: 60,
      target: { selector: { required: [{ key: 'zone', op: 'LABEL_OP_EQ', values: ['us'] }] } },
    });
    const run = await stack.runEvent(event.id);
    await sleep(1500);
    assert.equal((await stack.getJob(run.jobs[0].id)).status, 'JOB_STATUS_QUEUED');
    await stack.ok('cronium.api.v1.JobService/CancelJob', { id: run.jobs[0].id });

    const revoked = (await stack.ok('cronium.api.v1.AgentService/RevokeAgent', { id: usId })).agent;
    assert.equal(revoked.status, 'AGENT_STATUS_REVOKED');
    const deadline = Date.now() + 5000;
    while (!/revoked/.test(us.log()) && Date.now() < deadline) await sleep(100);
    assert.match(us.log(), /revoked/);
    await sleep(2500); // it keeps trying to reconnect and is refused
    const connects = us.log().split('\n').filter((l) => l.includes('connected to control plane')).length;
    assert.equal(connects, 1, 'never connected again after revocation');
    assert.equal((await stack.agents()).find((a: any) => a.id === usId).status, 'AGENT_STATUS_REVOKED');
  });

  test('a client can reach the agent port only with TLS', async () => {
    await new Promise<void>((resolve) => {
      const socket = tlsConnect({ port: stack.agentPort, host: '127.0.0.1', rejectUnauthorized: false }, () => {
        assert.ok(socket.getPeerCertificate().subject);
        socket.end();
        resolve();
      });
    });
  });
});

describe('certificate renewal', () => {
  let stack: Stack;
  before(async () => {
    // Certificates live 18 s, so the agent renews after 12 s.
    stack = new Stack({ env: { CRONIUM_AGENT_CERT_HOURS: '0.005' } });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
  });

  test('an agent renews its certificate over the mTLS link and reconnects with the new one', { timeout: 90_000 }, async () => {
    const agent = new RemoteAgent(`localhost:${stack.agentPort}`, ['--join-token', await stack.joinToken(), '--labels', 'renew=yes']).start();
    stack.remoteAgents.push(agent);
    const certPath = join(agent.dataDir, 'client.crt');
    // Read the enrolled certificate as soon as it is written, before any renewal can replace it.
    while (!existsSync(certPath)) await sleep(20);
    await sleep(50);
    const first = new X509Certificate(readFileSync(certPath));
    await agent.connected();
    const deadline = Date.now() + 30_000;
    while (!/certificate renewed/.test(agent.log()) && Date.now() < deadline) await sleep(200);
    assert.match(agent.log(), /certificate renewed/);
    const renewed = new X509Certificate(readFileSync(certPath));
    assert.notEqual(renewed.serialNumber, first.serialNumber);
    assert.equal(renewed.subject, first.subject, 'the same agent id');
    assert.ok(renewed.checkIssued(new X509Certificate(readFileSync(join(agent.dataDir, 'ca.crt')))));
    assert.ok(Date.parse(renewed.validTo) > Date.parse(first.validTo));

    // The first certificate has expired by now: only the renewed one can connect.
    while (Date.now() < Date.parse(first.validTo) + 500) await sleep(200);
    await agent.kill('SIGKILL');
    agent.start();
    await agent.connected();
    const event = await stack.createEvent({
      name: 'after renewal',
      type: 'EVENT_TYPE_BASH',
      script: 'echo renewed',
      target: { selector: { required: [{ key: 'renew', op: 'LABEL_OP_EQ', values: ['yes'] }] } },
    });
    const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
  });
});
