// Workflows on a real control plane, agent and Docker: the graph runs the
// right nodes in the right order with the right inputs; webhooks start
// executions and runs with the posted body; bad graphs are refused on save;
// a cancel stops a running node.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHmac } from 'node:crypto';
import { Stack, freshDatabase } from './harness.ts';

const W = 'cronium.api.v1.WorkflowService';
const PASS = 'cronium_output "{\\"got\\": $(cronium_input)}"';

describe('workflows', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  const events: Record<string, string> = {};

  // Postgres, so parents ending together really end in concurrent transactions (the engine on PGlite is in control-plane/test/workflows.test.ts).
  before(async () => {
    database = await freshDatabase('e2e_workflows');
    stack = await new Stack({ databaseUrl: database.url }).start();
    const make = async (name: string, script: string) => (events[name] = (await stack.createEvent({ name, type: 'EVENT_TYPE_BASH', script })).id);
    await make('pass', PASS);
    await make('pass, condition false', `${PASS}\ncronium_set_condition false`);
    await make('fail', `cronium_output '{"failed": true}'\nexit 3`);
    await make('sleep', 'sleep 60');
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
  });

  const node = (id: string, event: string) => ({ id, eventId: events[event] });
  const edge = (from: string, to: string, type: string) => ({ from, to, type: `EDGE_TYPE_${type}` });

  async function waitForExecution(id: string, predicate: (execution: any) => boolean, timeoutMs = 120_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    let execution: any;
    while (Date.now() < deadline) {
      execution = (await stack.ok(`${W}/GetExecution`, { id })).execution;
      if (predicate(execution)) return execution;
      await sleep(200);
    }
    throw new Error(`execution ${id} did not reach the expected state; last: ${JSON.stringify(execution)}`);
  }
  const finished = (execution: any) => execution.status !== 'EXECUTION_STATUS_RUNNING';

  test('a diamond with ON_FAILURE and ON_CONDITION branches runs the right nodes, in order, with the right inputs', { timeout: 180_000 }, async () => {
    const { workflow } = await stack.ok(`${W}/CreateWorkflow`, {
      workflow: {
        name: 'diamond',
        nodes: [node('A', 'pass, condition false'), node('B', 'pass'), node('C', 'pass'), node('D', 'pass'), node('E', 'pass'), node('F', 'fail'), node('G', 'pass'), node('H', 'pass'), node('Z', 'pass')],
        edges: [
          edge('A', 'B', 'ON_SUCCESS'),
          edge('A', 'C', 'ALWAYS'),
          edge('B', 'D', 'ON_SUCCESS'),
          edge('C', 'D', 'ON_SUCCESS'),
          edge('D', 'E', 'ON_FAILURE'),
          edge('D', 'F', 'ON_SUCCESS'),
          edge('F', 'H', 'ON_FAILURE'),
          edge('A', 'G', 'ON_CONDITION'),
          edge('G', 'Z', 'ALWAYS'),
        ],
      },
    });
    const { execution: started } = await stack.ok(`${W}/RunWorkflow`, { id: workflow.id, input: { order: 1 } });
    const execution = await waitForExecution(started.id, finished);
    const nodes = Object.fromEntries(execution.nodes.map((n: any) => [n.nodeId, n]));
    const statusOf = (id: string) => nodes[id].status.replace('NODE_STATUS_', '');
    assert.deepEqual(
      Object.fromEntries(Object.keys(nodes).map((id) => [id, statusOf(id)])),
      { A: 'SUCCEEDED', B: 'SUCCEEDED', C: 'SUCCEEDED', D: 'SUCCEEDED', E: 'SKIPPED', F: 'FAILED', G: 'SKIPPED', H: 'SUCCEEDED', Z: 'SKIPPED' },
    );
    // F failed, but an ON_FAILURE edge handled it.
    assert.equal(execution.status, 'EXECUTION_STATUS_SUCCEEDED');
    assert.deepEqual(execution.input, { order: 1 });

    const a = { got: { order: 1 } };
    assert.deepEqual(nodes.A.input, { order: 1 });
    assert.deepEqual(nodes.A.output, a);
    assert.equal(nodes.A.condition, false);
    assert.deepEqual(nodes.B.input, a);
    assert.deepEqual(nodes.C.input, a);
    assert.deepEqual(nodes.D.input, { B: { got: a }, C: { got: a } });
    assert.deepEqual(nodes.F.input, { got: { B: { got: a }, C: { got: a } } });
    assert.deepEqual(nodes.H.input, { failed: true });
    for (const id of ['E', 'G', 'Z']) assert.equal(nodes[id].runId ?? '', '', `${id} never ran`);

    const t = (id: string, field: 'startedAt' | 'finishedAt') => Date.parse(nodes[id][field]);
    assert.equal(t('B', 'startedAt'), t('C', 'startedAt'), 'B and C start together, when A ends');
    assert.ok(t('B', 'startedAt') >= t('A', 'finishedAt'));
    assert.ok(t('D', 'startedAt') >= Math.max(t('B', 'finishedAt'), t('C', 'finishedAt')), 'D waits for both parents');
    assert.ok(t('F', 'startedAt') >= t('D', 'finishedAt'));
    assert.ok(t('H', 'startedAt') >= t('F', 'finishedAt'));
    assert.ok(Date.parse(execution.finishedAt) >= t('H', 'finishedAt'));

    // Each node's run is a normal run; its job carries the output the node shows.
    for (const id of ['A', 'B', 'C', 'D', 'F', 'H']) {
      const { run } = await stack.ok('cronium.api.v1.RunService/GetRun', { id: nodes[id].runId });
      assert.deepEqual(run.jobs[0].output, nodes[id].output, `job output of ${id}`);
      assert.deepEqual(run.input ?? null, nodes[id].input ?? null, `run input of ${id}`);
    }
    const { run: failedRun } = await stack.ok('cronium.api.v1.RunService/GetRun', { id: nodes.F.runId });
    assert.equal(failedRun.jobs[0].exitCode, 3);
    const watched = await stack.watchJob(failedRun.jobs[0].id);
    assert.equal(watched.at(-1).job.status, 'JOB_STATUS_FAILED', "a node's job can be watched like any other");

    const { executions } = await stack.ok(`${W}/ListExecutions`, { workflowId: workflow.id });
    assert.deepEqual(executions.map((e: any) => e.id), [execution.id]);
  });

  test('webhooks start a workflow and run an event with the posted body; a wrong secret is refused', { timeout: 120_000 }, async () => {
    const { workflow } = await stack.ok(`${W}/CreateWorkflow`, {
      workflow: { name: 'hooked', nodes: [node('only', 'pass')], triggers: { webhook: { enabled: true } } },
    });
    const hook = workflow.triggers.webhook;
    assert.match(hook.secret, /^whs_/);
    assert.equal(hook.path, `/hooks/workflows/${hook.key}`);
    const shown = (await stack.ok(`${W}/GetWorkflow`, { id: workflow.id })).workflow;
    assert.equal(shown.triggers.webhook.key, hook.key);
    assert.equal(shown.triggers.webhook.secret, undefined, 'the secret is shown once');

    const post = (path: string, secret: string, body: string) =>
      fetch(`${stack.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-cronium-secret': secret }, body });
    const payload = { ref: 'refs/heads/main', commits: [1, 2] };
    assert.equal((await post(hook.path, `${hook.secret}x`, JSON.stringify(payload))).status, 401);
    assert.equal((await post(hook.path, '', JSON.stringify(payload))).status, 401);
    assert.equal((await post('/hooks/workflows/no-such-key', hook.secret, '{}')).status, 404);
    const bad = await post(hook.path, hook.secret, '{"ref": ');
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as any).error, /^body: not valid JSON/);
    const { executions: none } = await stack.ok(`${W}/ListExecutions`, { workflowId: workflow.id });
    assert.equal(none?.length ?? 0, 0, 'refused calls start nothing');

    const accepted = await post(hook.path, hook.secret, JSON.stringify(payload));
    assert.equal(accepted.status, 202);
    const { executionId } = (await accepted.json()) as any;
    const execution = await waitForExecution(executionId, finished);
    assert.equal(execution.status, 'EXECUTION_STATUS_SUCCEEDED');
    assert.equal(execution.trigger, 'webhook');
    assert.deepEqual(execution.input, payload);
    assert.deepEqual(execution.nodes[0].input, payload);
    assert.deepEqual(execution.nodes[0].output, { got: payload });

    // A signature of the body does as well as the secret; a wrong one is refused.
    const body = JSON.stringify({ signed: true });
    const sign = (text: string) => `sha256=${createHmac('sha256', hook.secret).update(text).digest('hex')}`;
    const signed = (signature: string) =>
      fetch(`${stack.baseUrl}${hook.path}`, { method: 'POST', headers: { 'x-cronium-signature-256': signature }, body });
    assert.equal((await signed(sign('{"signed": false}'))).status, 401);
    const bySignature = await signed(sign(body));
    assert.equal(bySignature.status, 202);
    const signedExecution = await waitForExecution(((await bySignature.json()) as any).executionId, finished);
    assert.deepEqual(signedExecution.input, { signed: true });

    // Rotating makes the old secret useless.
    const rotated = (await stack.ok(`${W}/RotateWorkflowWebhook`, { id: workflow.id })).workflow.triggers.webhook;
    assert.notEqual(rotated.key, hook.key);
    assert.equal((await post(hook.path, hook.secret, '{}')).status, 404, 'the old key is gone');
    assert.equal((await post(rotated.path, hook.secret, '{}')).status, 401, 'the old secret does not open the new key');
    assert.equal((await post(rotated.path, rotated.secret, '{}')).status, 202);

    // Three executions so far, newest first, two per page.
    const first = await stack.ok(`${W}/ListExecutions`, { workflowId: workflow.id, pageSize: 2 });
    const second = await stack.ok(`${W}/ListExecutions`, { workflowId: workflow.id, pageSize: 2, pageToken: first.nextPageToken });
    const listed = [...first.executions, ...second.executions];
    assert.equal(listed.length, 3);
    assert.equal(second.nextPageToken ?? '', '');
    assert.deepEqual(listed.map((e: any) => e.createdAt), listed.map((e: any) => e.createdAt).sort().reverse());
    assert.ok(listed.some((e: any) => e.id === executionId));

    // An update that keeps the webhook keeps its key and secret; a paused workflow refuses it.
    const current = (await stack.ok(`${W}/GetWorkflow`, { id: workflow.id })).workflow;
    const paused = (await stack.ok(`${W}/UpdateWorkflow`, { workflow: { ...current, status: 'WORKFLOW_STATUS_PAUSED' } })).workflow;
    assert.equal(paused.triggers.webhook.key, rotated.key);
    const refused = await post(rotated.path, rotated.secret, '{}');
    assert.equal(refused.status, 409);
    assert.match(((await refused.json()) as any).error, /paused/);

    // Events have a webhook of their own.
    const { event } = await stack.ok('cronium.api.v1.EventService/RotateEventWebhook', { id: events.pass });
    const eventHook = event.webhook;
    assert.equal(eventHook.path, `/hooks/events/${eventHook.key}`);
    assert.equal((await stack.ok('cronium.api.v1.EventService/GetEvent', { id: events.pass })).event.webhook.secret, undefined);
    assert.equal((await post(eventHook.path, hook.secret, '{}')).status, 401);
    const ran = await post(eventHook.path, eventHook.secret, JSON.stringify({ n: 7 }));
    assert.equal(ran.status, 202);
    const { runId, jobIds } = (await ran.json()) as any;
    const job = await stack.waitForTerminal(jobIds[0]);
    assert.equal(job.runId, runId);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
    assert.deepEqual(job.output, { got: { n: 7 } });
    await stack.ok('cronium.api.v1.EventService/DisableEventWebhook', { id: events.pass });
    assert.equal((await post(eventHook.path, eventHook.secret, '{}')).status, 404);
  });

  test('a cycle is refused on save naming the edge; so is a node whose event does not exist; nothing is written', async () => {
    const before = (await stack.ok(`${W}/ListWorkflows`, {})).workflows.length;
    const cyclic = await stack.call(`${W}/CreateWorkflow`, {
      workflow: { name: 'loop', nodes: [node('X', 'pass'), node('Y', 'pass'), node('Z', 'pass')], edges: [edge('X', 'Y', 'ALWAYS'), edge('Y', 'Z', 'ON_SUCCESS'), edge('Z', 'X', 'ON_FAILURE')] },
    });
    assert.equal(cyclic.status, 400);
    assert.equal(cyclic.body.code, 'invalid_argument');
    assert.equal(cyclic.body.message, 'workflow.edges[2]: Z → X closes a cycle: X → Y → Z → X');
    const unknown = await stack.call(`${W}/CreateWorkflow`, { workflow: { name: 'ghost', nodes: [node('X', 'pass'), { id: 'Y', eventId: 'no-such-event' }] } });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.message, /^workflow\.nodes\[1\]\.eventId: event "no-such-event" not found/);
    const duplicate = await stack.call(`${W}/CreateWorkflow`, { workflow: { name: 'twice', nodes: [node('X', 'pass'), node('X', 'fail')] } });
    assert.match(duplicate.body.message, /^workflow\.nodes\[1\]\.id: "X" is used by another node/);
    const dangling = await stack.call(`${W}/CreateWorkflow`, { workflow: { name: 'dangling', nodes: [node('X', 'pass')], edges: [edge('X', 'nowhere', 'ALWAYS')] } });
    assert.match(dangling.body.message, /^workflow\.edges\[0\]\.to: no node "nowhere"/);
    assert.equal((await stack.ok(`${W}/ListWorkflows`, {})).workflows.length, before);

    // An update that would make a cycle leaves the workflow as it was.
    const { workflow } = await stack.ok(`${W}/CreateWorkflow`, { workflow: { name: 'line', nodes: [node('X', 'pass'), node('Y', 'pass')], edges: [edge('X', 'Y', 'ALWAYS')] } });
    const update = await stack.call(`${W}/UpdateWorkflow`, { workflow: { ...workflow, edges: [...workflow.edges, edge('Y', 'X', 'ALWAYS')] } });
    assert.equal(update.status, 400);
    assert.match(update.body.message, /^workflow\.edges\[1\]: Y → X closes a cycle/);
    assert.deepEqual((await stack.ok(`${W}/GetWorkflow`, { id: workflow.id })).workflow.edges, workflow.edges);
  });

  test('a schedule trigger starts one execution per instant; a bad schedule is refused naming the field', { timeout: 60_000 }, async () => {
    const bad = await stack.call(`${W}/CreateWorkflow`, { workflow: { name: 'bad cron', nodes: [node('A', 'pass')], triggers: { schedule: { cron: '0 0 31 2 *' } } } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /^workflow\.triggers\.schedule\.cron: /);
    const { workflow } = await stack.ok(`${W}/CreateWorkflow`, {
      workflow: { name: 'every second', nodes: [node('A', 'pass')], triggers: { schedule: { cron: '* * * * * *', timezone: 'UTC' } } },
    });
    assert.equal(workflow.triggers.schedule.cron, '* * * * * *');
    await sleep(3_500);
    await stack.ok(`${W}/UpdateWorkflow`, { workflow: { ...workflow, status: 'WORKFLOW_STATUS_PAUSED' } });
    const executions = (await stack.ok(`${W}/ListExecutions`, { workflowId: workflow.id, pageSize: 100 })).executions;
    assert.ok(executions.length >= 2, `${executions.length} executions in 3.5 s`);
    const instants = executions.map((execution: any) => execution.input.scheduledAt).sort();
    assert.equal(new Set(instants).size, instants.length, 'no instant started twice');
    for (const execution of executions) assert.equal(execution.trigger, 'schedule');
    const done = await waitForExecution(executions[0].id, finished);
    assert.equal(done.status, 'EXECUTION_STATUS_SUCCEEDED');
  });

  test('CancelExecution stops the running node, cancels the pending ones, and the execution ends CANCELLED', { timeout: 120_000 }, async () => {
    const { workflow } = await stack.ok(`${W}/CreateWorkflow`, {
      workflow: { name: 'long', nodes: [node('S', 'sleep'), node('T', 'pass')], edges: [edge('S', 'T', 'ALWAYS')] },
    });
    const { execution: started } = await stack.ok(`${W}/RunWorkflow`, { id: workflow.id });
    const runId = started.nodes.find((n: any) => n.nodeId === 'S').runId;
    const { run } = await stack.ok('cronium.api.v1.RunService/GetRun', { id: runId });
    await stack.waitForJob(run.jobs[0].id, (job) => job.status === 'JOB_STATUS_RUNNING');
    const cancelAsked = Date.now();
    await stack.ok(`${W}/CancelExecution`, { id: started.id });
    const execution = await waitForExecution(started.id, finished, 60_000);
    assert.equal(execution.status, 'EXECUTION_STATUS_CANCELLED');
    assert.deepEqual(execution.nodes.map((n: any) => [n.nodeId, n.status]), [['S', 'NODE_STATUS_CANCELLED'], ['T', 'NODE_STATUS_CANCELLED']]);
    const job = await stack.getJob(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_CANCELLED');
    assert.ok(Date.now() - cancelAsked < 30_000, 'the sleeping job was stopped, not waited for');
  });
});
