import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ADMIN_TOKEN, freshDatabase, freePort, Stack } from './harness.ts';

const API = 'cronium.api.v1';

/** Only the control plane: these tests run no jobs. */
async function startApi(stack: Stack): Promise<Stack> {
  stack.httpPort = await freePort();
  stack.grpcPort = await freePort();
  stack.agentPort = await freePort();
  await stack.startControlPlane();
  return stack;
}

interface Answer {
  status: number;
  body: any;
  headers: Headers;
}

function client(stack: Stack) {
  const call = async (method: string, body: unknown, token: string | null, headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await fetch(`${stack.baseUrl}/api/${API}.${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'users-test/1', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json(), headers: res.headers };
  };
  const ok = async (method: string, body: unknown, token: string | null, headers?: Record<string, string>) => {
    const answer = await call(method, body, token, headers);
    assert.equal(answer.status, 200, `${method}: ${JSON.stringify(answer.body)}`);
    return answer.body;
  };
  const signIn = async (email: string, password: string): Promise<string> => (await ok('AuthService/SignIn', { email, password }, null)).sessionToken;
  const addUser = async (email: string, role: string, password = `${email}-pass-word`) => {
    const { user } = await ok('UserService/CreateUser', { email, name: email.split('@')[0], role, password }, ADMIN_TOKEN);
    return { user, token: await signIn(email, password), password };
  };
  return { call, ok, signIn, addUser };
}

describe('users, roles, tokens, audit and idempotency', { timeout: 300_000 }, () => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let stack: Stack;
  let db: pg.Client;
  let api: ReturnType<typeof client>;
  let alice: Awaited<ReturnType<ReturnType<typeof client>['addUser']>>;
  let bob: typeof alice;
  let val: typeof alice;

  before(async () => {
    database = await freshDatabase('users');
    stack = await startApi(
      new Stack({ databaseUrl: database.url, env: { CRONIUM_ADMIN_PASSWORD: 'first-admin-pass', CRONIUM_SIGNIN_ATTEMPTS_PER_MINUTE: '1000' } }),
    );
    db = new pg.Client({ connectionString: database.url });
    await db.connect();
    api = client(stack);
    alice = await api.addUser('alice@example.com', 'ROLE_USER');
    bob = await api.addUser('bob@example.com', 'ROLE_USER');
    val = await api.addUser('val@example.com', 'ROLE_VIEWER');
  });

  after(async () => {
    await db?.end();
    await stack?.stop();
    await database?.drop();
  });

  const audit = async (filter: Record<string, string>) => (await api.ok('AuditService/ListAuditEvents', { pageSize: 500, ...filter }, ADMIN_TOKEN)).events as any[];

  test('the first admin signs in with CRONIUM_ADMIN_PASSWORD and owns what the admin token made', async () => {
    const session = await api.signIn('admin@localhost', 'first-admin-pass');
    const me = await api.ok('AuthService/WhoAmI', {}, session);
    assert.equal(me.user.id, 'admin');
    assert.equal(me.role, 'ROLE_ADMIN');
    assert.equal(me.credential, 'session');
    const viaToken = await api.ok('AuthService/WhoAmI', {}, ADMIN_TOKEN);
    assert.equal(viaToken.user.id, 'admin');
    assert.equal(viaToken.credential, 'token');
  });

  test("two users and a viewer: each sees and changes only their own; another's ids answer not_found", async () => {
    const { event } = await api.ok('EventService/CreateEvent', { event: { name: 'alice job', type: 'EVENT_TYPE_BASH', script: 'true' } }, alice.token);
    const { run } = await api.ok('EventService/RunEvent', { id: event.id }, alice.token);
    const { workflow } = await api.ok('WorkflowService/CreateWorkflow', { workflow: { name: 'alice flow', nodes: [{ id: 'a', eventId: event.id }] } }, alice.token);
    const { server } = await api.ok('ServerService/CreateServer', { server: { name: 'box', host: 'example.com', username: 'deploy', password: 'ssh-pass' } }, alice.token);
    const { channel } = await api.ok('NotificationService/CreateChannel', { channel: { name: 'hook', webhook: { url: 'http://127.0.0.1:9/x' } } }, alice.token);
    await api.ok('VariableService/SetVariable', { key: 'ALICE_ONLY', value: 'a' }, alice.token);
    const { execution } = await api.ok('WorkflowService/RunWorkflow', { id: workflow.id }, alice.token);

    const notFound = async (method: string, body: unknown) => {
      const answer = await api.call(method, body, bob.token);
      assert.equal(answer.status, 404, `${method} as bob: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.code, 'not_found');
    };
    await notFound('EventService/GetEvent', { id: event.id });
    await notFound('EventService/UpdateEvent', { event: { id: event.id, name: 'taken', type: 'EVENT_TYPE_BASH', script: 'true' } });
    await notFound('EventService/RunEvent', { id: event.id });
    await notFound('EventService/DeleteEvent', { id: event.id });
    await notFound('RunService/GetRun', { id: run.id });
    await notFound('RunService/CancelRun', { id: run.id });
    await notFound('JobService/GetJob', { id: run.jobs[0].id });
    await notFound('JobService/CancelJob', { id: run.jobs[0].id });
    await notFound('WorkflowService/GetWorkflow', { id: workflow.id });
    await notFound('WorkflowService/RunWorkflow', { id: workflow.id });
    await notFound('WorkflowService/DeleteWorkflow', { id: workflow.id });
    await notFound('WorkflowService/RotateWorkflowWebhook', { id: workflow.id });
    await notFound('WorkflowService/GetExecution', { id: execution.id });
    await notFound('WorkflowService/CancelExecution', { id: execution.id });
    await notFound('EventService/RotateEventWebhook', { id: event.id });
    await notFound('ServerService/UpdateServer', { server: { id: server.id, name: 'x', host: 'example.com', username: 'x', password: 'p' } });
    await notFound('ServerService/TestServer', { id: server.id });
    await notFound('ServerService/ApproveHostKey', { id: server.id, fingerprint: `SHA256:${'A'.repeat(43)}` });
    await notFound('NotificationService/UpdateChannel', { channel: { id: channel.id, name: 'x', webhook: { url: 'http://127.0.0.1:9/y' } } });
    await notFound('NotificationService/TestChannel', { id: channel.id });
    await notFound('ServerService/GetServer', { id: server.id });
    await notFound('ServerService/DeleteServer', { id: server.id });
    await notFound('NotificationService/GetChannel', { id: channel.id });
    await notFound('NotificationService/DeleteChannel', { id: channel.id });
    await notFound('VariableService/GetVariable', { key: 'ALICE_ONLY' });
    await notFound('VariableService/DeleteVariable', { key: 'ALICE_ONLY' });
    // Bob's events and runs cannot point at Alice's objects either.
    const borrowed = await api.call('WorkflowService/CreateWorkflow', { workflow: { name: 'borrowed', nodes: [{ id: 'a', eventId: event.id }] } }, bob.token);
    assert.equal(borrowed.status, 400, JSON.stringify(borrowed.body));

    const lists = [
      ['EventService/ListEvents', 'events'],
      ['RunService/ListRuns', 'runs'],
      ['JobService/ListJobs', 'jobs'],
      ['WorkflowService/ListWorkflows', 'workflows'],
      ['WorkflowService/ListExecutions', 'executions'],
      ['ServerService/ListServers', 'servers'],
      ['NotificationService/ListChannels', 'channels'],
      ['VariableService/ListVariables', 'variables'],
    ] as const;
    for (const [method, field] of lists) {
      assert.deepEqual((await api.ok(method, {}, bob.token))[field] ?? [], [], `${method} as bob`);
      assert.ok(((await api.ok(method, {}, alice.token))[field] ?? []).length > 0, `${method} as alice`);
    }

    // The viewer reads (nothing of theirs) and changes nothing.
    assert.deepEqual((await api.ok('EventService/ListEvents', {}, val.token)).events ?? [], []);
    for (const [method, body] of [
      ['EventService/CreateEvent', { event: { name: 'v', type: 'EVENT_TYPE_BASH', script: 'true' } }],
      ['VariableService/SetVariable', { key: 'V', value: 'v' }],
      ['ServerService/CreateServer', { server: { name: 'v', host: 'example.com', username: 'v', password: 'p' } }],
      ['NotificationService/CreateChannel', { channel: { name: 'v', webhook: { url: 'http://127.0.0.1:9/v' } } }],
      ['WorkflowService/CreateWorkflow', { workflow: { name: 'v', nodes: [] } }],
      ['ServerService/TestServer', { id: server.id }],
      ['RunService/CancelRun', { id: run.id }],
    ] as const) {
      const answer = await api.call(method, body, val.token);
      assert.equal(answer.status, 403, `${method} as viewer: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.code, 'permission_denied');
    }

    // Agents, users and the audit log are for admins.
    for (const method of ['AgentService/ListAgents', 'UserService/ListUsers', 'AuditService/ListAuditEvents']) {
      assert.equal((await api.call(method, {}, alice.token)).body.code, 'permission_denied', method);
    }
    assert.equal((await api.call('UserService/CreateUser', { email: 'x@example.com', password: 'long-enough-pw' }, alice.token)).body.code, 'permission_denied');

    // An admin sees and changes everyone's.
    assert.equal((await api.ok('EventService/GetEvent', { id: event.id }, ADMIN_TOKEN)).event.name, 'alice job');
    await api.ok('RunService/CancelRun', { id: run.id }, alice.token);
  });

  test('sign-in: a wrong password and an unknown email get the same answer after similar work; sign-out ends the session', async () => {
    const timed = async (email: string, password: string) => {
      const started = performance.now();
      const answer = await api.call('AuthService/SignIn', { email, password }, null);
      return { ...answer, ms: performance.now() - started };
    };
    const wrong = await timed('alice@example.com', 'not-her-password');
    const unknown = await timed('nobody@example.com', 'not-her-password');
    assert.equal(wrong.status, 401);
    assert.deepEqual(unknown.body, wrong.body);
    assert.equal(wrong.body.code, 'unauthenticated');
    // Both run scrypt once: the unknown email is not answered in a fraction of the time.
    assert.ok(unknown.ms > wrong.ms / 4, `unknown ${unknown.ms} ms, wrong ${wrong.ms} ms`);

    const session = await api.signIn('ALICE@example.com', alice.password);
    assert.equal(session.split('.').length, 3);
    const me = await api.ok('AuthService/WhoAmI', {}, session);
    assert.equal(me.user.email, 'alice@example.com');
    await api.ok('AuthService/SignOut', {}, session);
    assert.equal((await api.call('AuthService/WhoAmI', {}, session)).status, 401);
    // A forged token (signed with another key) is refused.
    const [header, payload] = session.split('.');
    assert.equal((await api.call('AuthService/WhoAmI', {}, `${header}.${payload}.${'A'.repeat(43)}`)).status, 401);

    // A disabled user cannot sign in, and their sessions stop.
    const carol = await api.addUser('carol@example.com', 'ROLE_USER');
    await api.ok('UserService/UpdateUser', { id: carol.user.id, disabled: true }, ADMIN_TOKEN);
    assert.equal((await api.call('AuthService/WhoAmI', {}, carol.token)).status, 401);
    assert.equal((await api.call('AuthService/SignIn', { email: 'carol@example.com', password: carol.password }, null)).status, 401);

    // Changing one's password: the old one stops working, the new one signs in.
    const dave = await api.addUser('dave@example.com', 'ROLE_USER');
    const wrongCurrent = await api.call('UserService/ChangePassword', { currentPassword: 'nope', newPassword: 'dave-new-password' }, dave.token);
    assert.match(wrongCurrent.body.message, /^currentPassword: /);
    await api.ok('UserService/ChangePassword', { currentPassword: dave.password, newPassword: 'dave-new-password' }, dave.token);
    assert.equal((await api.call('AuthService/SignIn', { email: 'dave@example.com', password: dave.password }, null)).status, 401);
    await api.signIn('dave@example.com', 'dave-new-password');
  });

  test('API tokens: shown once, stored hashed, role at most the caller’s, last use recorded, revoked and expired ones refused', async () => {
    const created = await api.ok('TokenService/CreateToken', { name: 'ci' }, alice.token);
    assert.match(created.secret, /^crn_/);
    assert.equal(created.token.role, 'ROLE_USER');
    const stored = await db.query('select token_hash from api_tokens where id = $1', [created.token.id]);
    assert.equal(stored.rows[0].token_hash, createHash('sha256').update(created.secret).digest('hex'));
    const dump = await db.query("select string_agg(t::text, ' ') as all from api_tokens t");
    assert.ok(!dump.rows[0].all.includes(created.secret));

    assert.equal((await api.ok('AuthService/WhoAmI', {}, created.secret)).user.id, alice.user.id);
    const listed = await api.ok('TokenService/ListTokens', {}, alice.token);
    assert.ok(!JSON.stringify(listed).includes(created.secret));
    const mine = listed.tokens.find((token: any) => token.id === created.token.id);
    assert.ok(mine.lastUsedAt, 'last use recorded');
    assert.ok(!(await api.ok('TokenService/ListTokens', {}, bob.token)).tokens?.some((token: any) => token.id === created.token.id));

    // A read-only token of a user reads but does not change; no token above one's own role.
    const readOnly = await api.ok('TokenService/CreateToken', { name: 'dashboards', role: 'ROLE_VIEWER' }, alice.token);
    assert.equal((await api.call('EventService/CreateEvent', { event: { name: 'x', type: 'EVENT_TYPE_BASH', script: 'true' } }, readOnly.secret)).body.code, 'permission_denied');
    assert.equal((await api.call('TokenService/CreateToken', { name: 'up', role: 'ROLE_ADMIN' }, alice.token)).body.code, 'permission_denied');
    assert.equal((await api.call('TokenService/CreateToken', { name: 'up', role: 'ROLE_USER' }, val.token)).body.code, 'permission_denied');

    // Bob cannot revoke Alice's token; Alice can.
    assert.equal((await api.call('TokenService/RevokeToken', { id: created.token.id }, bob.token)).body.code, 'not_found');
    await api.ok('TokenService/RevokeToken', { id: created.token.id }, alice.token);
    assert.equal((await api.call('AuthService/WhoAmI', {}, created.secret)).status, 401);

    const shortLived = await api.ok('TokenService/CreateToken', { name: 'short', expiresAt: new Date(Date.now() + 2_000).toISOString() }, alice.token);
    await api.ok('AuthService/WhoAmI', {}, shortLived.secret);
    await sleep(3_000);
    assert.equal((await api.call('AuthService/WhoAmI', {}, shortLived.secret)).status, 401);
    assert.match((await api.call('TokenService/CreateToken', { name: 'past', expiresAt: '2020-01-01T00:00:00Z' }, alice.token)).body.message, /^expiresAt: /);
  });

  test('audit log: who, what, when and from where for each change, without secret values; a failed change leaves no row', async () => {
    const { event } = await api.ok('EventService/CreateEvent', { event: { name: 'audited', type: 'EVENT_TYPE_BASH', script: 'echo hi' } }, bob.token);
    await api.ok('EventService/UpdateEvent', { event: { id: event.id, name: 'audited 2', type: 'EVENT_TYPE_BASH', script: 'echo hi' } }, bob.token);
    const { run } = await api.ok('EventService/RunEvent', { id: event.id }, bob.token);
    await api.ok('RunService/CancelRun', { id: run.id }, bob.token);
    await api.ok('VariableService/SetVariable', { key: 'BOB_SECRET', value: 'hunter2-do-not-log', secret: true }, bob.token);
    const { server } = await api.ok('ServerService/CreateServer', { server: { name: 'b', host: 'example.com', username: 'b', password: 'ssh-pass-do-not-log' } }, bob.token);
    await api.ok('ServerService/ApproveHostKey', { id: server.id, fingerprint: `SHA256:${'B'.repeat(43)}` }, bob.token);
    const { token } = await api.ok('TokenService/CreateToken', { name: 'to revoke' }, bob.token);
    await api.ok('TokenService/RevokeToken', { id: token.id }, bob.token);
    const hook = (await api.ok('EventService/RotateEventWebhook', { id: event.id }, bob.token)).event.webhook;
    const hooked = await fetch(`${stack.baseUrl}${hook.path}`, { method: 'POST', headers: { 'x-cronium-secret': hook.secret, 'user-agent': 'hook-sender/2' }, body: '{}' });
    assert.equal(hooked.status, 202);
    const { runId: hookRunId } = (await hooked.json()) as { runId: string };
    await api.ok('EventService/DeleteEvent', { id: event.id }, bob.token);

    const onEvent = await audit({ objectType: 'event', objectId: event.id });
    assert.deepEqual(onEvent.map((row) => row.method.split('/')[1]).reverse(), ['CreateEvent', 'UpdateEvent', 'RotateEventWebhook', 'DeleteEvent']);
    const created = onEvent.at(-1);
    assert.equal(created.userId, bob.user.id);
    assert.equal(created.remoteAddress.replace(/^::ffff:/, ''), '127.0.0.1');
    assert.equal(created.userAgent, 'users-test/1');
    assert.ok(created.credentialId);
    assert.ok(created.fields.includes('event.script'), JSON.stringify(created.fields));
    assert.ok(Date.now() - Date.parse(created.time) < 120_000);
    const onRun = await audit({ objectType: 'run', objectId: run.id });
    assert.deepEqual(onRun.map((row) => row.method.split('/')[1]).reverse(), ['RunEvent', 'CancelRun']);
    // A webhook acts for the event's owner; its row names it, without the key or secret.
    const [fromHook] = await audit({ objectType: 'run', objectId: hookRunId });
    assert.deepEqual([fromHook.method, fromHook.userId, fromHook.credentialId, fromHook.userAgent], ['POST /hooks/events', bob.user.id, 'webhook', 'hook-sender/2']);

    const methodsOn = async (objectType: string, objectId: string) => (await audit({ objectType, objectId })).map((row) => row.method.split('/')[1]).reverse();
    assert.deepEqual(await methodsOn('server', server.id), ['CreateServer', 'ApproveHostKey']);
    assert.deepEqual(await methodsOn('token', token.id), ['CreateToken', 'RevokeToken']);
    const [madeBob] = await audit({ objectType: 'user', objectId: bob.user.id });
    assert.deepEqual([madeBob.method, madeBob.userId, madeBob.credentialId], ['cronium.api.v1.UserService/CreateUser', 'admin', 'admin-from-env']);
    assert.deepEqual(madeBob.fields, ['email', 'name', 'role', 'password']);
    const everything = JSON.stringify(await audit({ userId: bob.user.id }));
    assert.ok(everything.includes('VariableService/SetVariable') && everything.includes('ServerService/CreateServer'));
    for (const secret of ['hunter2', 'ssh-pass-do-not-log', 'echo hi', hook.secret, hook.key]) assert.ok(!everything.includes(secret), secret);
    const dump = await db.query("select string_agg(a::text, ' ') as all from audit_events a");
    assert.ok(!dump.rows[0].all.includes('hunter2') && !dump.rows[0].all.includes(alice.password));

    // Sign-ins, failed ones too (with the address they came from).
    await api.signIn('bob@example.com', bob.password);
    await api.call('AuthService/SignIn', { email: 'bob@example.com', password: 'wrong-password' }, null);
    const signIns = (await audit({ objectType: 'session', userId: bob.user.id })).filter((row) => row.method.endsWith('/SignIn'));
    assert.deepEqual(signIns.slice(0, 2).map((row) => row.outcome), ['unauthenticated', 'ok']);

    // A change refused inside its transaction (nothing to delete) leaves no audit row; neither does a refused input.
    const before = (await audit({ userId: bob.user.id })).length;
    assert.equal((await api.call('VariableService/DeleteVariable', { key: 'NOT_THERE' }, bob.token)).status, 404);
    assert.equal((await api.call('EventService/CreateEvent', { event: { name: '', type: 'EVENT_TYPE_BASH' } }, bob.token)).status, 400);
    assert.equal((await audit({ userId: bob.user.id })).length, before);

    const page = await api.ok('AuditService/ListAuditEvents', { pageSize: 2, userId: bob.user.id }, ADMIN_TOKEN);
    assert.equal(page.events.length, 2);
    const next = await api.ok('AuditService/ListAuditEvents', { pageSize: 2, userId: bob.user.id, pageToken: page.nextPageToken }, ADMIN_TOKEN);
    assert.ok(Number(next.events[0].id) < Number(page.events[1].id));
  });

  test('Idempotency-Key: the same key answers the same run or object, once; another body with it is refused', async () => {
    const { event } = await api.ok('EventService/CreateEvent', { event: { name: 'once', type: 'EVENT_TYPE_BASH', script: 'true' } }, alice.token);
    const key = { 'idempotency-key': 'run-once-1' };
    const answers = await Promise.all([1, 2, 3, 4].map(() => api.ok('EventService/RunEvent', { id: event.id }, alice.token, key)));
    assert.equal(new Set(answers.map((answer) => answer.run.id)).size, 1, JSON.stringify(answers.map((answer) => answer.run.id)));
    const again = await api.call('EventService/RunEvent', { id: event.id }, alice.token, key);
    assert.equal(again.body.run.id, answers[0].run.id);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal((await api.ok('RunService/ListRuns', { eventId: event.id }, alice.token)).runs.length, 1);

    const other = await api.call('EventService/RunEvent', { id: event.id, input: { different: true } }, alice.token, key);
    assert.equal(other.body.code, 'failed_precondition');
    assert.equal((await api.ok('RunService/ListRuns', { eventId: event.id }, alice.token)).runs.length, 1);

    const body = { event: { name: 'made once', type: 'EVENT_TYPE_BASH', script: 'true' } };
    const first = await api.ok('EventService/CreateEvent', body, alice.token, { 'idempotency-key': 'create-1' });
    const second = await api.ok('EventService/CreateEvent', body, alice.token, { 'idempotency-key': 'create-1' });
    assert.equal(second.event.id, first.event.id);
    // Keys are per caller: Bob's same key is his own.
    const bobs = await api.ok('EventService/CreateEvent', body, bob.token, { 'idempotency-key': 'create-1' });
    assert.notEqual(bobs.event.id, first.event.id);
    const named = (await api.ok('EventService/ListEvents', {}, alice.token)).events.filter((e: any) => e.name === 'made once');
    assert.equal(named.length, 1);
    const expiry = await db.query("select extract(epoch from expires_at - created_at) as s from idempotency_keys where key = 'create-1' limit 1");
    assert.equal(Math.round(Number(expiry.rows[0].s) / 3600), 24);
    assert.equal((await api.call('TokenService/CreateToken', { name: 'x' }, alice.token, { 'idempotency-key': 'k' })).body.code, 'invalid_argument');

    // An answer holding a secret shown once (a workflow's webhook secret) is kept sealed, and answered again the same.
    const hooked = { workflow: { name: 'hooked once', nodes: [{ id: 'a', eventId: event.id }], triggers: { webhook: { enabled: true } } } };
    const made = await api.ok('WorkflowService/CreateWorkflow', hooked, alice.token, { 'idempotency-key': 'hooked-1' });
    const remade = await api.ok('WorkflowService/CreateWorkflow', hooked, alice.token, { 'idempotency-key': 'hooked-1' });
    assert.match(made.workflow.triggers.webhook.secret, /^whs_/);
    assert.equal(remade.workflow.triggers.webhook.secret, made.workflow.triggers.webhook.secret);
    const kept = await db.query("select string_agg(k::text, ' ') as all from idempotency_keys k");
    assert.ok(!kept.rows[0].all.includes(made.workflow.triggers.webhook.secret));
  });
});

describe('limits', { timeout: 300_000 }, () => {
  let stack: Stack;
  let api: ReturnType<typeof client>;

  before(async () => {
    stack = await startApi(new Stack({ env: { CRONIUM_API_RATE: '1', CRONIUM_API_BURST: '4', CRONIUM_SESSION_HOURS: '0.002' } }));
    api = client(stack);
  });
  after(async () => stack?.stop());

  test('without CRONIUM_ADMIN_PASSWORD the first start prints a generated one once, and it signs in', async () => {
    const output = readFileSync(join(stack.dataDir, 'control-plane.log'), 'utf8');
    const password = /password: (\S+)/.exec(output)?.[1];
    assert.ok(password, output);
    assert.equal(output.split(password).length, 2, 'printed once, never logged');
    const me = await api.ok('AuthService/WhoAmI', {}, await api.signIn('admin@localhost', password));
    assert.equal(me.role, 'ROLE_ADMIN');
  });

  test('sign-in attempts, API calls per credential and request sizes are limited; sessions expire', async () => {
    const password = 'erin-password-1';
    await api.ok('UserService/CreateUser', { email: 'erin@example.com', password }, ADMIN_TOKEN);
    const session = await api.signIn('erin@example.com', password);
    const signedInAt = Date.now();

    const answers: Answer[] = [];
    for (let i = 0; i < 8; i++) answers.push(await api.call('AuthService/WhoAmI', {}, session));
    const limited = answers.find((answer) => answer.status === 429);
    assert.ok(limited, JSON.stringify(answers.map((answer) => answer.status)));
    assert.equal(answers.filter((answer) => answer.status === 200).length >= 4, true);
    assert.equal(limited.body.code, 'resource_exhausted');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);

    for (let i = 0; i < 5; i++) assert.equal((await api.call('AuthService/SignIn', { email: 'erin@example.com', password: 'guess-guess' }, null)).status, 401);
    const blocked = await api.call('AuthService/SignIn', { email: 'erin@example.com', password }, null);
    assert.equal(blocked.status, 429);
    // Five failures lock the email for 60/5 = 12 s.
    assert.ok(Number(blocked.headers.get('retry-after')) >= 8, String(blocked.headers.get('retry-after')));

    const huge = JSON.stringify({ event: { name: 'big', type: 'EVENT_TYPE_BASH', script: 'x'.repeat(5 * 1024 * 1024) } });
    const tooBig = await api.call('EventService/CreateEvent', huge, ADMIN_TOKEN);
    assert.equal(tooBig.body.code, 'resource_exhausted', JSON.stringify(tooBig.body));
    const hook = await fetch(`${stack.baseUrl}/hooks/events/nokey`, { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024) });
    assert.equal(hook.status, 413);

    // CRONIUM_SESSION_HOURS=0.002: 7.2 s.
    await sleep(Math.max(0, signedInAt + 9_000 - Date.now()));
    const expired = await api.call('AuthService/WhoAmI', {}, session);
    assert.equal(expired.status, 401, JSON.stringify(expired.body));
  });
});

describe('sessions across replicas', { timeout: 300_000 }, () => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let a: Stack;
  let b: Stack;

  before(async () => {
    database = await freshDatabase('users_replicas');
    // Replicas share the database and the master key; the session signing key comes from the database.
    const env = { CRONIUM_ENCRYPTION_KEY: randomBytes(32).toString('base64') };
    [a, b] = await Promise.all([startApi(new Stack({ databaseUrl: database.url, env })), startApi(new Stack({ databaseUrl: database.url, env }))]);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await database?.drop();
  });

  test('a session made on one replica works on the other, and signing out on one ends it on both', async () => {
    const onA = client(a);
    const onB = client(b);
    await onA.ok('UserService/CreateUser', { email: 'fay@example.com', password: 'fay-password-1' }, ADMIN_TOKEN);
    const session = await onA.signIn('fay@example.com', 'fay-password-1');
    assert.equal((await onB.ok('AuthService/WhoAmI', {}, session)).user.email, 'fay@example.com');
    await onB.ok('AuthService/SignOut', {}, session);
    assert.equal((await onB.call('AuthService/WhoAmI', {}, session)).status, 401);
    // A replica trusts what it checked for at most 5 s.
    const deadline = Date.now() + 15_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      status = (await onA.call('AuthService/WhoAmI', {}, session)).status;
      if (status === 200) await sleep(500);
    }
    assert.equal(status, 401);
  });
});
