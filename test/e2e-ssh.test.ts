// Events on servers that run nothing of ours, over SSH through the
// orchestrator agent, against real OpenSSH servers on loopback.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Stack, freshDatabase } from './harness.ts';
import { startSshd, type Sshd } from './sshd.ts';

describe('SSH servers', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let alpha: Sshd;
  let beta: Sshd;

  before(async () => {
    database = await freshDatabase('e2e_ssh');
    [alpha, beta] = await Promise.all([startSshd(), startSshd()]);
    stack = new Stack({ databaseUrl: database.url });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await Promise.all([alpha?.stop(), beta?.stop()]);
    await database?.drop();
  });

  const createServer = async (server: Record<string, unknown>) => (await stack.ok('cronium.api.v1.ServerService/CreateServer', { server })).server;

  /** A server registered with a key, tested and approved as an operator would. */
  async function readyServer(sshd: Sshd, name: string, auth: 'key' | 'password' = 'key') {
    const server = await createServer({
      name,
      host: sshd.host,
      port: sshd.port,
      username: sshd.username,
      ...(auth === 'key' ? { privateKey: sshd.privateKey } : { password: sshd.password }),
    });
    const probe = await stack.ok('cronium.api.v1.ServerService/TestServer', { id: server.id });
    assert.equal(probe.ok, true, JSON.stringify(probe));
    assert.equal(probe.hostKeyFingerprint, sshd.hostKeyFingerprint);
    return (await stack.ok('cronium.api.v1.ServerService/ApproveHostKey', { id: server.id, fingerprint: probe.hostKeyFingerprint })).server;
  }

  test('a new server is unusable until its host key is approved; credentials are never returned nor stored in clear', async () => {
    const server = await createServer({ name: 'alpha', host: alpha.host, port: alpha.port, username: alpha.username, privateKey: alpha.privateKey });
    assert.equal(server.status, 'SERVER_STATUS_HOST_KEY_UNAPPROVED');
    assert.equal(server.privateKey, undefined);
    assert.equal(server.hasPrivateKey, true);
    const event = await stack.createEvent({ name: 'too early', type: 'EVENT_TYPE_BASH', script: 'echo hi', target: { servers: { serverIds: [server.id] } } });
    const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_FAILED');
    assert.match(job.error, /host key not approved/);

    const probe = await stack.ok('cronium.api.v1.ServerService/TestServer', { id: server.id });
    assert.equal(probe.hostKeyFingerprint, alpha.hostKeyFingerprint);
    assert.match(probe.error, /not approved/);
    const approved = (await stack.ok('cronium.api.v1.ServerService/ApproveHostKey', { id: server.id, fingerprint: probe.hostKeyFingerprint })).server;
    assert.equal(approved.status, 'SERVER_STATUS_READY');
    const fetched = (await stack.ok('cronium.api.v1.ServerService/GetServer', { id: server.id })).server;
    assert.equal(fetched.privateKey, undefined);
    assert.equal(fetched.password, undefined);

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const { rows } = await client.query('select * from servers');
    await client.end();
    const keyBody = alpha.privateKey.split('\n')[1]!;
    for (const row of rows) {
      const text = JSON.stringify(row);
      assert.ok(!text.includes('PRIVATE KEY') && !text.includes(keyBody), 'no plaintext key in the table');
      assert.match(row.private_key_sealed, /^v1:/);
    }
  });

  test('bash, python and node run over SSH with output, condition, variables and live logs', async () => {
    const server = await readyServer(alpha, 'alpha ready');
    const target = { servers: { serverIds: [server.id] } };
    const bash = await stack.createEvent({ name: 'ssh bash', type: 'EVENT_TYPE_BASH', target, script: 'echo one\necho two >&2\ncronium_set_variable ssh_greeting "hello over ssh"\ncronium_output \'{"via": "bash"}\'' });
    const python = await stack.createEvent({ name: 'ssh python', type: 'EVENT_TYPE_PYTHON', target, script: 'import cronium\nprint("py", cronium.input()["n"])\ncronium.set_condition(True)\ncronium.output({"greeting": cronium.get_variable("ssh_greeting")})' });
    const node = await stack.createEvent({ name: 'ssh node', type: 'EVENT_TYPE_NODE', target, script: "const c = require('cronium');\nconsole.log('node', c.event().name);\nc.output({ via: 'node' });" });

    const bashJob = await stack.waitForTerminal((await stack.runEvent(bash.id)).jobs[0].id);
    assert.equal(bashJob.status, 'JOB_STATUS_SUCCEEDED', bashJob.error);
    assert.deepEqual(bashJob.output, { via: 'bash' });
    const logs = await stack.watchJob(bashJob.id);
    assert.equal(logs.filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join(''), 'one\n');
    assert.equal(logs.filter((m) => m.log?.stream === 'LOG_STREAM_STDERR').map((m) => m.log.data).join(''), 'two\n');

    const pyJob = await stack.waitForTerminal((await stack.runEvent(python.id, { n: 7 })).jobs[0].id);
    assert.equal(pyJob.status, 'JOB_STATUS_SUCCEEDED', pyJob.error);
    assert.equal(pyJob.condition, true);
    assert.deepEqual(pyJob.output, { greeting: 'hello over ssh' });

    const nodeJob = await stack.waitForTerminal((await stack.runEvent(node.id)).jobs[0].id);
    assert.equal(nodeJob.status, 'JOB_STATUS_SUCCEEDED', nodeJob.error);
    assert.deepEqual(nodeJob.output, { via: 'node' });

    const live = await stack.createEvent({ name: 'ssh live', type: 'EVENT_TYPE_BASH', target, script: 'echo first\nsleep 2\necho second' });
    const liveJob = (await stack.runEvent(live.id)).jobs[0].id;
    const early = await stack.watchJobUntil(liveJob, (m) => m.log?.data === 'first\n');
    assert.equal(early.at(-1).log.data, 'first\n');
    assert.equal((await stack.getJob(liveJob)).status, 'JOB_STATUS_RUNNING', 'the first line arrived while the script still ran');
    await stack.waitForTerminal(liveJob);
    const liveLogs = await stack.watchJob(liveJob);
    assert.equal(liveLogs.filter((m) => m.log).map((m) => m.log.data).join(''), 'first\nsecond\n');
  });

  test('password authentication works; a wrong key gives a clear authentication error', async () => {
    const server = await readyServer(beta, 'beta by password', 'password');
    const event = await stack.createEvent({ name: 'whoami', type: 'EVENT_TYPE_BASH', script: 'id -un', target: { servers: { serverIds: [server.id] } } });
    const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', job.error);

    const wrong = await createServer({ name: 'wrong key', host: beta.host, port: beta.port, username: beta.username, privateKey: alpha.privateKey, hostKeyFingerprint: beta.hostKeyFingerprint });
    const probe = await stack.ok('cronium.api.v1.ServerService/TestServer', { id: wrong.id });
    assert.equal(probe.ok ?? false, false, "JSON omits false");
    assert.match(probe.error, /authentication failed/);
    const bad = await stack.createEvent({ name: 'wrong key job', type: 'EVENT_TYPE_BASH', script: 'true', target: { servers: { serverIds: [wrong.id] } } });
    const failed = await stack.waitForTerminal((await stack.runEvent(bad.id)).jobs[0].id);
    assert.equal(failed.status, 'JOB_STATUS_FAILED');
    assert.match(failed.error, /authentication failed/);
  });

  test('three servers with one down: PARTIAL with exit 101', async () => {
    const a = await readyServer(alpha, 'three-a');
    const b = await readyServer(beta, 'three-b');
    const down = await createServer({ name: 'down', host: '127.0.0.1', port: 1, username: alpha.username, privateKey: alpha.privateKey, hostKeyFingerprint: alpha.hostKeyFingerprint });
    const event = await stack.createEvent({ name: 'everywhere', type: 'EVENT_TYPE_BASH', script: 'hostname', target: { servers: { serverIds: [a.id, b.id, down.id] } } });
    const run = await stack.runEvent(event.id);
    assert.equal(run.jobs.length, 3);
    const jobs = await Promise.all(run.jobs.map((job: any) => stack.waitForTerminal(job.id)));
    assert.deepEqual(jobs.map((job) => job.status).sort(), ['JOB_STATUS_FAILED', 'JOB_STATUS_SUCCEEDED', 'JOB_STATUS_SUCCEEDED']);
    assert.match(jobs.find((job) => job.status === 'JOB_STATUS_FAILED').error, /cannot connect/);
    const finished = (await stack.ok('cronium.api.v1.RunService/GetRun', { id: run.id })).run;
    assert.equal(finished.status, 'RUN_STATUS_PARTIAL');
    assert.equal(finished.exitCode, 101);
  });

  test('a changed host key is refused before authentication', async () => {
    const server = await readyServer(beta, 'beta rekeyed');
    await beta.regenerateHostKey();
    const event = await stack.createEvent({ name: 'after rekey', type: 'EVENT_TYPE_BASH', script: 'echo should-not-run', target: { servers: { serverIds: [server.id] } } });
    const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_FAILED');
    assert.match(job.error, /host key changed/);
    const probe = await stack.ok('cronium.api.v1.ServerService/TestServer', { id: server.id });
    assert.equal(probe.ok ?? false, false, "JSON omits false");
    assert.match(probe.error, /host key changed/);
  });

  test('bad input names the field', async () => {
    const noName = await stack.call('cronium.api.v1.ServerService/CreateServer', { server: { host: 'example.com', username: 'x', password: 'p' } });
    assert.equal(noName.body.code, 'invalid_argument');
    assert.match(noName.body.message, /server\.name/);
    const noCredential = await stack.call('cronium.api.v1.ServerService/CreateServer', { server: { name: 'n', host: 'example.com', username: 'x' } });
    assert.match(noCredential.body.message, /server\.privateKey/);
    const unknown = await stack.call('cronium.api.v1.EventService/CreateEvent', { event: { name: 'x', type: 'EVENT_TYPE_BASH', script: 'true', target: { servers: { serverIds: ['nope'] } } } });
    assert.equal(unknown.body.code, 'invalid_argument');
    assert.match(unknown.body.message, /serverIds/);
  });
});
