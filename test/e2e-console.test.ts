// The console in a real browser (Debian's Chromium, headless) against a real
// control plane and agent: sign in, create a Bash event through the form, run
// it, watch its log arrive live, and find it in the runs list and dashboard.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EncryptJWT } from 'jose';
import type { BrowserContext, Page } from 'playwright-core';
import { ensureConsoleBuild } from '../scripts/build-console.ts';
import { openBrowser, type ConsoleBrowser } from './console-browser.ts';
import { ADMIN_TOKEN, Stack } from './harness.ts';
import { startSshd } from './sshd.ts';

let stack: Stack;
let chromium: ConsoleBrowser;
let browser: BrowserContext;
let page: Page;
let pageErrors: string[] = [];

before(async () => {
  await ensureConsoleBuild();
  stack = await new Stack().start();
  chromium = await openBrowser();
  ({ browser, page, pageErrors } = chromium);
});

after(async () => {
  await chromium?.close();
  await stack?.stop();
});

const shot = (name: string) => chromium.shot(name);
const url = (path: string) => `${stack.baseUrl}${path}`;

test('a wrong token is refused; the admin token signs in with an HttpOnly, SameSite=Strict cookie', async () => {
  await page.goto(url('/events'));
  assert.match(new URL(page.url()).pathname, /^\/login$/);
  // Email and password is the main form (test/e2e-console-users.test.ts); the token is the second way.
  await page.locator('[data-hydrated]').waitFor();
  await page.getByText('Sign in with an API token').click();
  await page.getByLabel('API token').fill('not-a-real-token');
  await page.getByRole('button', { name: 'Sign in with token' }).click();
  await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor();
  assert.equal((await browser.cookies()).length, 0);
  await shot('sign-in');

  await page.getByLabel('API token').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in with token' }).click();
  await page.getByRole('heading', { name: 'Events' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/events', 'back where sign-in was asked');
  const [cookie] = await browser.cookies();
  assert.ok(cookie, 'a session cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.ok(!cookie.value.includes(ADMIN_TOKEN), 'the token is not readable in the cookie');
  assert.ok(cookie.expires > Date.now() / 1000, 'the cookie expires');
});

test('the API keeps /api; the browser proxy refuses calls without a session', async () => {
  const unknown = await fetch(url('/api/cronium.api.v1.Nope/Nothing'), { method: 'POST', body: '{}' });
  assert.equal(unknown.status, 404);
  assert.match(await unknown.text(), /the API is under \/api/);
  const proxy = await fetch(url('/console-api/cronium.api.v1.JobService/ListJobs'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  assert.equal(proxy.status, 401);
});

let jobUrl = '';

test('create a Bash event through the form, run it, and watch its log live', async () => {
  await page.goto(url('/events'));
  await page.getByText('No events yet').waitFor();
  await page.getByRole('link', { name: 'New event' }).click();
  await page.getByLabel('Name').fill('console-hello');
  // The script goes through the CodeMirror editor, as an operator types it.
  const editor = page.locator('[data-testid=code-editor] .cm-content');
  await editor.click();
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.press('Delete');
  await page.keyboard.type("for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 1; done\n");
  await page.keyboard.type("printf '\\033[31mred-text\\033[0m\\n'\n");
  await page.keyboard.type('echo warn-1 >&2\ncronium_output 7\n');
  assert.ok(await page.locator('.cm-editor .cm-line span').count() > 0, 'the script is highlighted');
  await page.getByLabel('Retries').fill('1');
  await page.getByLabel('Cron', { exact: true }).check();
  await page.getByLabel('Cron schedule').fill('0 3 * * *');
  await page.getByLabel('Timezone').fill('Europe/Paris');
  await shot('event-form');
  await page.getByRole('button', { name: 'Create event' }).click();
  await page.getByText('Event created').waitFor();

  const [event] = (await stack.ok('cronium.api.v1.EventService/ListEvents', {})).events;
  assert.equal(event.name, 'console-hello');
  assert.equal(event.type, 'EVENT_TYPE_BASH');
  assert.match(event.script, /echo line-\$i; sleep 1; done\nprintf/);
  assert.deepEqual(event.schedule, { cron: '0 3 * * *', timezone: 'Europe/Paris' });
  assert.equal(event.retries, 1);

  await page.getByLabel(/^Input/).fill('{"who": "browser"}');
  await page.getByRole('button', { name: 'Run now' }).click();
  await page.waitForURL(/\/jobs\//);
  jobUrl = page.url();
  const log = page.getByTestId('job-log');
  // Live: the first line shows while the job is still running.
  await log.getByText('line-2').waitFor();
  const jobId = jobUrl.split('/jobs/')[1]!;
  assert.equal((await stack.getJob(jobId)).status, 'JOB_STATUS_RUNNING', 'lines arrive before the job ends');
  assert.match(await page.getByTestId('job-status').innerText(), /running/);
  await shot('job-running');

  // A reload replays the log so far and keeps following.
  await page.reload();
  await log.getByText('line-1').waitFor();
  await page.locator('[data-log-state=live]').waitFor();
  await log.getByText('line-8').waitFor({ timeout: 30_000 });
  await page.getByTestId('job-status').getByText('succeeded').waitFor({ timeout: 30_000 });
  assert.match(await log.locator('[data-stream=stderr]').innerText(), /warn-1/, 'stderr told apart');
  const red = log.locator('span', { hasText: 'red-text' }).last();
  assert.match((await red.getAttribute('style')) ?? '', /color/, 'ANSI colours rendered');
  assert.equal((await page.getByTestId('job-output').innerText()).trim(), '7');
  assert.match(await page.locator('dl').innerText(), /local-orchestrator/);
  const line1 = await log.getByText('line-1').count();
  assert.equal(line1, 1, 'no line twice after the reload');
  await page.locator('[data-log-state=ended]').waitFor();
  await shot('job');
});

test('the run shows in the runs list and on the dashboard', async () => {
  await page.goto(url('/runs'));
  const row = page.locator('tr', { hasText: 'console-hello' });
  await row.getByText('succeeded').waitFor();
  await shot('runs');
  await page.goto(url('/'));
  assert.equal(await page.getByTestId('runs-24h').innerText(), '1');
  assert.equal(await page.getByTestId('count-succeeded').innerText(), '1');
  assert.equal(await page.getByTestId('success-rate').innerText(), '100 %');
  assert.match(await page.getByTestId('duration-p50').innerText(), /^\d+(\.\d)? s p50$/, 'the run\'s duration is shown');
  assert.ok(Number(await page.getByTestId('agents-online').innerText()) >= 1);
  await shot('dashboard');
  const missing = await page.goto(url('/jobs/00000000-0000-4000-8000-000000000000'));
  assert.equal(missing?.status(), 404);
  await page.getByRole('heading', { name: 'Not found' }).waitFor();
});

test('create a join token and see the install command', async () => {
  await page.goto(url('/agents'));
  await page.locator('tr', { hasText: 'local-orchestrator' }).getByText('online').waitFor();
  await page.getByLabel(/^Pinned labels/).fill('pool=web');
  await page.getByRole('button', { name: 'Create join token' }).click();
  const command = await page.getByTestId('install-command').locator('pre').innerText();
  assert.match(command, new RegExp(`^sh install\\.sh --binary \\./cronium-agent --control-plane 127\\.0\\.0\\.1:${stack.agentPort} --join-token \\S+ --labels pool=web$`));
  await shot('agents');
});

test('re-run a job, then cancel the new one while it runs', async () => {
  await page.goto(jobUrl);
  await page.getByRole('button', { name: 'Re-run' }).click();
  await page.waitForURL((u) => u.pathname.startsWith('/jobs/') && u.href !== jobUrl);
  await page.getByTestId('job-log').getByText('line-1').waitFor();
  const jobId = page.url().split('/jobs/')[1]!;
  const { run } = await stack.ok('cronium.api.v1.RunService/GetRun', { id: (await stack.getJob(jobId)).runId });
  assert.deepEqual(run.input, { who: 'browser' }, 'the re-run has the same input');
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.getByTestId('job-status').getByText('cancelled').waitFor({ timeout: 30_000 });
  assert.equal((await stack.getJob(jobId)).status, 'JOB_STATUS_CANCELLED');
  await page.getByRole('button', { name: 'Cancel' }).waitFor({ state: 'detached' });
});

test('edit the event: the form saves onto the stored event', async () => {
  await page.goto(url('/events'));
  await page.getByRole('searchbox', { name: 'Search events' }).fill('hello');
  await page.getByRole('link', { name: 'console-hello' }).click();
  await page.getByLabel('Retries').fill('3');
  await page.getByLabel('Environment').fill('GREETING=hi');
  await page.getByRole('button', { name: 'Add label term' }).click();
  await page.getByLabel('Label key 1').fill('executor-test');
  await page.getByLabel('Operator 1').selectOption('EXISTS');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.getByText('Saved.').waitFor();
  const [event] = (await stack.ok('cronium.api.v1.EventService/ListEvents', {})).events;
  assert.equal(event.retries, 3);
  assert.deepEqual(event.env, { GREETING: 'hi' });
  assert.deepEqual(event.target.selector.required, [{ key: 'executor-test', op: 'LABEL_OP_EXISTS' }]);
  assert.match(event.script, /cronium_output 7/, 'the script is kept');
});

test('add an SSH server, test it, and approve its host key', async () => {
  const sshd = await startSshd();
  try {
    await page.goto(url('/servers'));
    await page.getByText('No servers yet').waitFor();
    await page.getByLabel('Name').fill('box-1');
    await page.getByLabel('Host').fill(sshd.host);
    await page.getByLabel('Port').fill(String(sshd.port));
    await page.getByLabel('User').fill(sshd.username);
    await page.getByLabel(/^Private key/).fill(sshd.privateKey);
    await page.getByRole('button', { name: 'Add server' }).click();
    const row = page.locator('tr', { hasText: 'box-1' });
    await row.getByText('host key unapproved').waitFor();
    await row.getByRole('button', { name: 'Test box-1' }).click();
    await page.getByText(`Host key ${sshd.hostKeyFingerprint}`).waitFor();
    await page.getByText('Connected and signed in').waitFor();
    page.once('dialog', (dialog) => void dialog.accept());
    await row.getByRole('button', { name: 'Approve host key of box-1' }).click();
    await row.getByText('ready').waitFor();
    const [server] = (await stack.ok('cronium.api.v1.ServerService/ListServers', {})).servers;
    assert.equal(server.hostKeyFingerprint, sshd.hostKeyFingerprint);
    await shot('servers');
  } finally {
    await sshd.stop();
  }
});

test('drain, then revoke an agent', async () => {
  await page.goto(url('/agents'));
  const row = page.locator('tr', { hasText: 'local-orchestrator' });
  await row.getByRole('button', { name: /^Drain/ }).click();
  await row.getByText('draining').waitFor();
  page.once('dialog', (dialog) => void dialog.accept());
  await row.getByRole('button', { name: /^Revoke/ }).click();
  await row.getByText('revoked').waitFor();
  const [agent] = await stack.agents();
  assert.equal(agent.status, 'AGENT_STATUS_REVOKED');
});

test('phone width, dark theme, and sign out', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(jobUrl);
  await page.getByTestId('job-status').getByText('succeeded').waitFor();
  await page.locator('[data-log-state=ended]').waitFor();
  // A string: this file is type-checked without the DOM library.
  const overflow = async () => Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
  assert.ok((await overflow()) <= 1, `no sideways scrolling of the job page at phone width (${await overflow()} px)`);
  await shot('job-phone-dark');
  for (const path of ['/', '/events', '/events/new', '/runs', '/agents', '/servers']) {
    await page.goto(url(path));
    assert.ok((await overflow()) <= 1, `no sideways scrolling of ${path} at phone width (${await overflow()} px)`);
  }
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Email').waitFor();
  await page.goto(url('/'));
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.deepEqual(pageErrors, [], 'no script errors or CSP refusals on any page');
});

test('a session whose token the API no longer accepts leads back to sign-in', async () => {
  // A well-formed session (sealed with the console's key) around a token the API refuses, as after a revocation.
  const key = new Uint8Array(Buffer.from(readFileSync(join(stack.dataDir, 'console-session.key'), 'utf8').trim(), 'base64'));
  const value = await new EncryptJWT({ token: 'crn_revoked' }).setProtectedHeader({ alg: 'dir', enc: 'A256GCM' }).setExpirationTime('1h').encrypt(key);
  await browser.addCookies([{ name: 'cronium_session', value, url: stack.baseUrl, httpOnly: true, sameSite: 'Strict' }]);
  await page.goto(url('/events'));
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.deepEqual(await browser.cookies(), [], 'the dead session is deleted');
});
