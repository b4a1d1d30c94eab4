// The console's newer pages in a real browser against a real control plane and
// agent: variables, notification channels and deliveries, the full event form
// (schedule preview, policies, target reach, actions), workflows (the DAG
// editor, a run coloured by status, the webhook), a job's attempts and a
// 100,000-line log, and no page asking the API more than once a second idle.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Page, Request } from 'playwright-core';
import { ensureConsoleBuild } from '../scripts/build-console.ts';
import { openBrowser, watchErrors, type ConsoleBrowser } from './console-browser.ts';
import { ADMIN_TOKEN, Stack } from './harness.ts';
import { HttpReceiver } from './receivers.ts';

let stack: Stack;
let chromium: ConsoleBrowser;
let page: Page;
let receiver: HttpReceiver;
const url = (path: string) => `${stack.baseUrl}${path}`;
/** The webhook's URL and secret from the curl line shown once after turning it on. */
async function revealedWebhook(): Promise<[string, string]> {
  const curl = await page.getByTestId('webhook-secret').locator('pre').innerText();
  const [, hookUrl, secret] = curl.match(/curl -X POST (\S+) \\\s+-H 'X-Cronium-Secret: (\S+)'/)!;
  return [hookUrl!, secret!];
}

/** Pages the idle check visits, besides the fixed ones. */
const visited: string[] = [];

before(async () => {
  await ensureConsoleBuild();
  receiver = await new HttpReceiver().start();
  stack = await new Stack({ agentArgs: ['--labels', 'zone=eu'] }).start();
  chromium = await openBrowser();
  page = chromium.page;
  // The pages here do more per step than the first file's; a loaded host gets more time.
  page.setDefaultTimeout(30_000);
  await page.goto(url('/login'));
  // Email and password is the main form; the token is the second way (test/e2e-console.test.ts).
  await page.locator('[data-hydrated]').waitFor();
  await page.getByText('Sign in with an API token').click();
  await page.getByLabel('API token').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in with token' }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
});

after(async () => {
  await chromium?.close();
  await stack?.stop();
  await receiver?.stop();
});

test('variables: a secret value is never shown; set, replace and delete', async () => {
  await page.goto(url('/variables'));
  await page.getByText('No variables yet').waitFor();
  await page.getByLabel(/^Key/).fill('DEPLOY_TARGET');
  await page.getByLabel('Value').fill('staging');
  await page.getByRole('button', { name: 'Save variable' }).click();
  await page.locator('tr', { hasText: 'DEPLOY_TARGET' }).getByText('staging').waitFor();
  await page.getByLabel(/^Key/).fill('API_SECRET');
  await page.getByLabel('Value').fill('s3cret-value');
  await page.getByRole('checkbox', { name: /Secret/ }).check();
  await page.getByRole('button', { name: 'Save variable' }).click();
  await page.locator('tr', { hasText: 'API_SECRET' }).getByText('secret (hidden)').waitFor();
  await page.reload();
  assert.ok(!(await page.content()).includes('s3cret-value'), 'the secret is nowhere in the page');

  await page.getByRole('button', { name: 'Replace DEPLOY_TARGET' }).click();
  assert.equal(await page.getByLabel(/^Key/).inputValue(), 'DEPLOY_TARGET');
  await page.getByLabel('Value').fill('production');
  await page.getByRole('button', { name: 'Save variable' }).click();
  await page.locator('tr', { hasText: 'DEPLOY_TARGET' }).getByText('production').waitFor();
  page.once('dialog', (dialog) => void dialog.accept());
  await page.getByRole('button', { name: 'Delete DEPLOY_TARGET' }).click();
  await page.getByText('DEPLOY_TARGET deleted.').waitFor();
  const { variables } = await stack.ok('cronium.api.v1.VariableService/ListVariables', {});
  assert.deepEqual(variables.map((v: { key: string; secret?: boolean }) => [v.key, v.secret]), [['API_SECRET', true]]);
  await chromium.shot('variables');
});

test('notification channels: created with write-only credentials, tested for real', async () => {
  await page.goto(url('/notifications'));
  await page.getByLabel('Name', { exact: true }).fill('ops-hook');
  await page.getByLabel(/^URL/).fill(receiver.url('/ops'));
  await page.getByLabel(/^Headers/).fill('Authorization: Bearer hook-token-1');
  await page.getByLabel(/^Signing secret/).fill('hmac-key-1');
  await page.getByRole('button', { name: 'Add channel' }).click();
  const row = page.locator('tr', { hasText: 'ops-hook' });
  await row.getByText('signed (HMAC); headers: Authorization').waitFor();
  const html = await page.content();
  for (const secret of ['hook-token-1', 'hmac-key-1', receiver.url('/ops')]) assert.ok(!html.includes(secret), `${secret} is not shown`);
  await row.getByRole('button', { name: 'Test ops-hook' }).click();
  await page.getByTestId('channel-test-result').getByText('delivered').waitFor();
  const [sent] = receiver.on('/ops');
  assert.ok(sent, 'the test message reached the receiver');
  assert.equal(sent.headers.authorization, 'Bearer hook-token-1');
  assert.match(String(sent.headers['x-cronium-signature']), /^sha256=[0-9a-f]{64}$/);
});

let eventId = '';

test('the event form: next fire times while typing, inline errors, policies, target reach and actions', async () => {
  const follower = await stack.createEvent({ name: 'follow-up', type: 'EVENT_TYPE_BASH', script: 'echo next' });
  await page.goto(url('/events/new'));
  await page.getByLabel('Name').fill('console-full');
  await page.getByLabel('Cron', { exact: true }).check();
  const preview = page.getByTestId('schedule-preview');
  await page.getByLabel('Cron schedule').fill('*/5 * * * *');
  await preview.locator('li').nth(4).waitFor();
  const fires = await preview.locator('li').evaluateAll((items) => items.map((li) => li.getAttribute('data-fire')));
  assert.equal(fires.length, 5);
  for (const fire of fires) assert.equal(new Date(fire!).getUTCMinutes() % 5, 0, 'every fire on a 5-minute mark');

  await page.getByLabel('Cron schedule').fill('61 * * * *');
  await page.getByTestId('schedule-error').waitFor();
  assert.match(await page.getByTestId('schedule-error').innerText(), /cron/i, 'the scheduler says what is wrong');
  assert.equal(await page.getByLabel('Cron schedule').getAttribute('aria-invalid'), 'true');

  await page.getByLabel('Once', { exact: true }).check();
  await page.getByLabel(/^Run at/).fill('2030-01-02T03:04:05');
  await preview.locator('li').first().waitFor();
  assert.equal(await preview.locator('li').count(), 1, 'a one-shot fires once');
  const expected = await page.evaluate("new Date('2030-01-02T03:04:05').toISOString()");
  assert.equal(await preview.locator('li').getAttribute('data-fire'), expected, 'at the local time typed');
  await page.getByLabel(/^Run at/).fill('');

  await page.getByLabel('Every…').check();
  await page.getByLabel('Every', { exact: true }).fill('2');
  await page.getByLabel('Unit').selectOption('HOURS');
  await page.getByTestId('schedule-error').waitFor({ state: 'detached' });
  await preview.locator('li').nth(4).waitFor();
  const interval = (await preview.locator('li').evaluateAll((items) => items.map((li) => Date.parse(li.getAttribute('data-fire')!)))) as number[];
  assert.equal(interval[1]! - interval[0]!, 2 * 3600_000, 'fires two hours apart');

  await page.getByLabel('Retries').fill('2');
  await page.getByLabel(/^Retry delay/).fill('5');
  await page.getByLabel(/^Maximum runs/).fill('3');
  await page.getByLabel(/^Missed runs/).selectOption('SKIP');
  await page.getByLabel(/^Overlap/).selectOption('FORBID');

  const reach = page.getByTestId('agent-match-count');
  assert.match(await reach.innerText(), /^1 of 1 agent matches \(1 online\)/);
  await page.getByRole('button', { name: 'Add label term' }).click();
  await page.getByLabel('Label key 1').fill('zone');
  await page.getByLabel('Values 1').fill('us');
  await reach.getByText('0 of 1 agent matches').waitFor();
  await page.getByLabel('Values 1').fill('eu');
  await reach.getByText('1 of 1 agent matches').waitFor();

  await page.getByRole('button', { name: 'Add action' }).click();
  await page.getByLabel('When 1').selectOption('ON_SUCCESS');
  await page.getByLabel('Event 1').selectOption({ label: 'follow-up' });
  await page.getByRole('button', { name: 'Add action' }).click();
  await page.getByLabel('When 2').selectOption('ALWAYS');
  await page.getByLabel('Do 2').selectOption('notify');
  await page.getByLabel('Channel 2').selectOption({ label: 'ops-hook' });
  await page.getByLabel('Message template 2').fill('{{event.name}} ended {{run.status}}');
  await chromium.shot('event-form-full');
  await page.getByRole('button', { name: 'Create event' }).click();
  await page.getByText('Event created').or(page.locator('form [role=alert]')).first().waitFor({ timeout: 40_000 });
  assert.equal(await page.locator('form [role=alert]').count(), 0, `no error: ${await page.locator('form [role=alert]').allInnerTexts()}`);
  eventId = new URL(page.url()).pathname.split('/').pop()!;
  visited.push(`/events/${eventId}`);

  const { event } = await stack.ok('cronium.api.v1.EventService/GetEvent', { id: eventId });
  assert.deepEqual(event.schedule.interval, { every: 2, unit: 'INTERVAL_UNIT_HOURS' });
  assert.equal(event.schedule.cron, undefined);
  assert.equal(event.retries, 2);
  assert.equal(event.retryDelaySeconds, 5);
  assert.equal(event.maxExecutions, 3);
  assert.equal(event.missedFirePolicy, 'MISSED_FIRE_SKIP');
  assert.equal(event.concurrencyPolicy, 'CONCURRENCY_FORBID');
  assert.deepEqual(event.target.selector.required, [{ key: 'zone', op: 'LABEL_OP_EQ', values: ['eu'] }]);
  assert.deepEqual(event.actions, [
    { trigger: 'ACTION_ON_SUCCESS', runEvent: { eventId: follower.id } },
    { trigger: 'ACTION_ALWAYS', notify: { channelId: (await stack.ok('cronium.api.v1.NotificationService/ListChannels', {})).channels[0].id, template: '{{event.name}} ended {{run.status}}' } },
  ]);

  // The saved form shows what was saved; its run queues a delivery, listed on the notifications page.
  await page.reload();
  assert.equal(await page.getByLabel('Every', { exact: true }).inputValue(), '2');
  assert.equal(await page.getByLabel('Channel 2').inputValue(), event.actions[1].notify.channelId);
  const { run } = await stack.ok('cronium.api.v1.EventService/RunEvent', { id: eventId });
  await stack.waitForTerminal(run.jobs[0].id);
  await page.goto(url('/notifications'));
  const delivery = page.getByTestId('delivery-row').filter({ hasText: 'console-full' });
  await delivery.waitFor();
  for (let i = 0; i < 20 && !(await delivery.getByText('delivered').count()); i++) {
    await new Promise((r) => setTimeout(r, 500));
    await page.reload();
  }
  await delivery.getByText('delivered').waitFor();
  await chromium.shot('notifications');
});

test('workflows: draw a DAG, save it (a cycle is refused inline), run it and watch its nodes', async () => {
  const make = (name: string, script: string) => stack.createEvent({ name, type: 'EVENT_TYPE_BASH', script });
  await make('build', 'echo building; sleep 2');
  await make('ship', 'echo shipping');
  await make('page-oncall', 'echo paging');
  await page.goto(url('/workflows'));
  await page.getByText('No workflows yet').waitFor();
  await page.getByRole('link', { name: 'New workflow' }).click();
  await page.getByLabel('Name').fill('release');
  for (const name of ['build', 'ship', 'page-oncall']) {
    await page.getByLabel('Add a node that runs').selectOption({ label: name });
    await page.getByRole('button', { name: 'Add node' }).click();
  }
  await page.locator('.svelte-flow__node').nth(2).waitFor();
  // Connect build → ship by dragging between the handles, as on a screen.
  await page.getByLabel('New edges').selectOption('ON_SUCCESS');
  const source = page.locator('[data-node-id=build] .svelte-flow__handle.source');
  const target = page.locator('[data-node-id=ship] .svelte-flow__handle.target');
  await source.hover();
  await page.mouse.down();
  const box = (await target.boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 10 });
  await page.mouse.up();
  await page.getByTestId('edge-row').filter({ hasText: 'build → ship' }).waitFor();
  // A node can be named apart from its event.
  await page.locator('.svelte-flow__node [data-node-id=ship]').click();
  await page.getByLabel('Name of node ship').fill('Ship to prod');
  await page.keyboard.press('Tab');
  await page.locator('.svelte-flow__node [data-node-id=ship]').getByText('Ship to prod').waitFor();
  // build → page-oncall with the form.
  await page.getByLabel('New edges').selectOption('ON_FAILURE');
  await page.getByLabel('From node').selectOption('build');
  await page.getByLabel('To node').selectOption('page-oncall');
  await page.getByRole('button', { name: 'Add edge' }).click();
  const failureEdge = page.locator('.svelte-flow__edge.edge-on-failure path').first();
  assert.match((await failureEdge.getAttribute('style')) ?? '', /stroke-dasharray/, 'an ON_FAILURE edge is dashed');
  const successEdge = page.locator('.svelte-flow__edge.edge-on-success path').first();
  assert.doesNotMatch((await successEdge.getAttribute('style')) ?? '', /stroke-dasharray/, 'an ON_SUCCESS edge is solid');
  await page.getByRole('button', { name: 'Create workflow' }).click();
  await page.getByText('Workflow created').waitFor();
  const workflowPath = new URL(page.url()).pathname;
  visited.push(workflowPath);
  await chromium.shot('workflow-editor');
  const [stored] = (await stack.ok('cronium.api.v1.WorkflowService/ListWorkflows', {})).workflows;
  assert.equal(stored.nodes.find((n: { id: string }) => n.id === 'ship').name, 'Ship to prod');
  assert.deepEqual(stored.edges, [
    { from: 'build', to: 'ship', type: 'EDGE_TYPE_ON_SUCCESS' },
    { from: 'build', to: 'page-oncall', type: 'EDGE_TYPE_ON_FAILURE' },
  ]);

  // ship → build closes a cycle: the API refuses it and the editor says why, keeping the drawing.
  await page.getByLabel('New edges').selectOption('ALWAYS');
  await page.getByLabel('From node').selectOption('ship');
  await page.getByLabel('To node').selectOption('build');
  await page.getByRole('button', { name: 'Add edge' }).click();
  await page.getByRole('button', { name: 'Save workflow' }).click();
  assert.match(await page.getByTestId('workflow-error').innerText(), /workflow\.edges\[2\]: ship → build closes a cycle/);
  assert.equal(await page.getByTestId('edge-row').count(), 3, 'the drawing is kept');
  const culprit = page.getByTestId('edge-row').filter({ hasText: 'ship → build' });
  assert.equal(await culprit.getAttribute('aria-selected'), 'true', 'the edge the API named is selected');
  await chromium.shot('workflow-cycle');
  await page.getByRole('button', { name: 'Remove selected' }).click();
  await culprit.waitFor({ state: 'detached' });
  await page.getByRole('button', { name: 'Save workflow' }).click();
  await page.getByText('Saved.').waitFor();
  assert.equal((await stack.ok('cronium.api.v1.WorkflowService/GetWorkflow', { id: stored.id })).workflow.edges.length, 2);

  // The webhook: its secret shows once, and it starts the workflow.
  await page.getByRole('button', { name: 'Turn webhook on' }).click();
  const [hookUrl, secret] = await revealedWebhook();
  await page.reload();
  assert.ok(!(await page.content()).includes(secret!), 'the secret is not shown again');

  await page.getByLabel(/^Input/).fill('{"ref": "v1"}');
  const whileRunning: number[] = [];
  const countPolls = (request: Request) => void (request.url().includes('GetExecution') && whileRunning.push(Date.now()));
  page.on('request', countPolls);
  await page.getByRole('button', { name: 'Run workflow' }).click();
  await page.waitForURL(/\/executions\//);
  const landed = Date.now();
  visited.push(new URL(page.url()).pathname);
  const node = (id: string) => page.locator(`.svelte-flow__node [data-node-id="${id}"]`);
  await node('build').and(page.locator('[data-status=running]')).waitFor({ timeout: 30_000 });
  await page.getByTestId('execution-status').getByText('succeeded').waitFor({ timeout: 60_000 });
  page.off('request', countPolls);
  const seconds = (Date.now() - landed) / 1000;
  assert.ok(whileRunning.length >= 1 && whileRunning.length <= Math.ceil(seconds) + 1, `${whileRunning.length} polls in ${seconds.toFixed(1)} s: at most one a second`);
  assert.equal(await node('build').getAttribute('data-status'), 'succeeded');
  assert.equal(await node('ship').getAttribute('data-status'), 'succeeded');
  assert.equal(await node('page-oncall').getAttribute('data-status'), 'skipped');
  await chromium.shot('execution');
  // Finished: no more polling.
  const polls: string[] = [];
  const onRequest = (request: Request) => void (request.url().includes('GetExecution') && polls.push(request.url()));
  page.on('request', onRequest);
  await new Promise((r) => setTimeout(r, 2500));
  page.off('request', onRequest);
  assert.deepEqual(polls, [], 'a finished execution is not polled');
  // Each node links to its run's log.
  await page.getByTestId('execution-node').filter({ hasText: 'ship' }).getByRole('link', { name: 'run and log' }).click();
  await page.waitForURL(/\/jobs\//);
  await page.getByTestId('job-log').getByText('shipping').waitFor();

  const hook = await fetch(hookUrl!, { method: 'POST', headers: { 'x-cronium-secret': secret!, 'content-type': 'application/json' }, body: '{}' });
  assert.ok(hook.ok, `the webhook starts the workflow (${hook.status})`);
  const { executions } = await stack.ok('cronium.api.v1.WorkflowService/ListExecutions', { workflowId: stored.id });
  assert.deepEqual(executions.map((e: { trigger: string }) => e.trigger).sort(), ['manual', 'webhook']);
  await page.goto(url(workflowPath));
  await page.getByRole('link', { name: executions[0].id.slice(0, 8) }).waitFor();
});

test('cancel an execution while it runs, then delete its workflow', async () => {
  const slow = await stack.createEvent({ name: 'slow', type: 'EVENT_TYPE_BASH', script: 'echo started; sleep 60' });
  const { workflow } = await stack.ok('cronium.api.v1.WorkflowService/CreateWorkflow', {
    workflow: { name: 'slow-flow', nodes: [{ id: 'wait', eventId: slow.id }] },
  });
  await page.goto(url(`/workflows/${workflow.id}`));
  await page.getByRole('button', { name: 'Run workflow' }).click();
  await page.waitForURL(/\/executions\//);
  await page.locator('.svelte-flow__node [data-node-id=wait][data-status=running]').waitFor({ timeout: 30_000 });
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.getByTestId('execution-status').getByText('cancelled').waitFor({ timeout: 30_000 });
  await page.locator('.svelte-flow__node [data-node-id=wait][data-status=cancelled]').waitFor();

  await page.goto(url(`/workflows/${workflow.id}`));
  page.once('dialog', (dialog) => void dialog.accept());
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.waitForURL((u) => u.pathname === '/workflows');
  assert.equal(await page.getByRole('link', { name: 'slow-flow' }).count(), 0);
  const { workflows } = await stack.ok('cronium.api.v1.WorkflowService/ListWorkflows', {});
  assert.ok(!workflows.some((w: { id: string }) => w.id === workflow.id), 'deleted');
});

test('a job lists its attempts; a 100,000-line log stays virtual and follows the tail', async () => {
  const flaky = await stack.createEvent({ name: 'flaky', type: 'EVENT_TYPE_BASH', script: 'echo try; exit 3', retries: 1, retryDelaySeconds: 1 });
  const { run: flakyRun } = await stack.ok('cronium.api.v1.EventService/RunEvent', { id: flaky.id });
  await stack.waitForTerminal(flakyRun.jobs[0].id);
  await page.goto(url(`/jobs/${flakyRun.jobs[0].id}`));
  const attempts = page.getByTestId('attempt-row');
  assert.equal(await attempts.count(), 2);
  assert.match(await attempts.nth(0).innerText(), /^1\s+failed[\s\S]*3/);
  await page.getByTestId('job-log').getByText('── attempt 2 ──').waitFor();

  const long = await stack.createEvent({ name: 'long-log', type: 'EVENT_TYPE_BASH', script: "seq 1 100000 | sed 's/^/line-/'" });
  const { run } = await stack.ok('cronium.api.v1.EventService/RunEvent', { id: long.id });
  const jobId = run.jobs[0].id;
  await stack.waitForTerminal(jobId, 120_000);
  visited.push(`/jobs/${jobId}`);
  await page.goto(url(`/jobs/${jobId}`));
  await page.locator('[data-log-state=ended]').waitFor({ timeout: 60_000 });
  const log = page.getByTestId('job-log');
  await log.getByText('line-100000', { exact: true }).waitFor();
  assert.match(await page.getByTestId('log-line-count').innerText(), /100,001 lines/, 'every line and the attempt marker');
  const rendered = await log.locator('.line').count();
  assert.ok(rendered > 5 && rendered < 500, `only the lines in view are in the page (${rendered})`);
  await chromium.shot('job-long-log');
  // Scrolling to the top brings the first lines in, and offers the way back to the tail.
  const first = log.getByText('line-1', { exact: true });
  for (let i = 0; i < 20 && !(await first.isVisible()); i++) {
    await log.evaluate((element) => element.scrollTo(0, 0));
    await new Promise((r) => setTimeout(r, 300));
  }
  await first.waitFor();
  await page.getByRole('button', { name: /Jump to the latest line/ }).click();
  await log.getByText('line-100000', { exact: true }).waitFor();
});

test("an event's page lists its schedule's fires", async () => {
  const ticking = await stack.createEvent({
    name: 'ticking', type: 'EVENT_TYPE_BASH', script: 'true', maxExecutions: 2,
    schedule: { interval: { every: 1, unit: 'INTERVAL_UNIT_SECONDS' } },
  });
  const deadline = Date.now() + 30_000;
  let fires: unknown[] = [];
  while (fires.length < 2 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    fires = (await stack.ok('cronium.api.v1.EventService/ListScheduleFires', { eventId: ticking.id })).fires ?? [];
  }
  await page.goto(url(`/events/${ticking.id}`));
  const rows = page.getByTestId('fire-row');
  assert.equal(await rows.count(), 2);
  assert.equal(await rows.getByRole('link', { name: 'run' }).count(), 2, 'each fire made a run');
});

test("an event's webhook: on with its secret shown once, then off", async () => {
  const hooked = await stack.createEvent({ name: 'hooked', type: 'EVENT_TYPE_BASH', script: 'cronium_input' });
  await page.goto(url(`/events/${hooked.id}`));
  await page.getByRole('button', { name: 'Turn webhook on' }).click();
  const [hookUrl, secret] = await revealedWebhook();
  const call = () => fetch(hookUrl!, { method: 'POST', headers: { 'x-cronium-secret': secret!, 'content-type': 'application/json' }, body: '{"via": "hook"}' });
  assert.ok((await call()).ok, 'the webhook runs the event');
  await page.reload();
  assert.ok(!(await page.content()).includes(secret!), 'the secret is not shown again');
  await page.getByText(/^On: POST/).waitFor();
  await page.getByRole('button', { name: 'Turn off' }).click();
  await page.getByText(/^Off\./).waitFor();
  assert.equal((await call()).ok, false, 'off: the webhook is refused');
  const { runs } = await stack.ok('cronium.api.v1.RunService/ListRuns', { eventId: hooked.id });
  assert.equal(runs.length, 1);
  assert.deepEqual(runs[0].input, { via: 'hook' });
});

test('no page asks for more than one request a second while idle', async () => {
  const pages = ['/', '/events', '/events/new', '/runs', '/agents', '/servers', '/workflows', '/workflows/new', '/variables', '/notifications', ...visited];
  const tabs = await Promise.all(pages.map(() => chromium.browser.newPage()));
  const errors: string[] = [];
  const counts = new Map<Page, number>();
  try {
    await Promise.all(tabs.map(async (tab, i) => {
      watchErrors(tab, errors);
      await tab.goto(url(pages[i]!), { waitUntil: 'networkidle' });
    }));
    // Counting starts once every page has loaded (and the job pages have replayed their logs).
    for (const tab of tabs) tab.on('request', () => counts.set(tab, (counts.get(tab) ?? 0) + 1));
    await new Promise((r) => setTimeout(r, 5000));
    const busy = tabs.map((tab, i) => [pages[i], counts.get(tab) ?? 0] as const).filter(([, n]) => n > 5);
    assert.deepEqual(busy, [], 'at most 5 requests in 5 s on each page');
  } finally {
    await Promise.all(tabs.map((tab) => tab.close()));
  }
  assert.deepEqual([...chromium.pageErrors, ...errors], [], 'no script errors or CSP refusals');
});

test('the new pages fit a phone in the dark theme', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.emulateMedia({ colorScheme: 'dark' });
  try {
    // A string: this file is type-checked without the DOM library.
    const overflow = async () => Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
    for (const path of ['/workflows', '/workflows/new', '/variables', '/notifications', ...visited]) {
      await page.goto(url(path));
      assert.ok((await overflow()) <= 1, `no sideways scrolling of ${path} at phone width (${await overflow()} px)`);
    }
  } finally {
    await page.setViewportSize({ width: 1280, height: 860 });
    await page.emulateMedia({ colorScheme: 'light' });
  }
});
