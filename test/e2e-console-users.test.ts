// The console with users and roles, in a real browser (Debian's Chromium,
// headless) against a real control plane: the admin signs in with email and
// password and adds a user and a viewer; each signs in in their own browser
// context and sees what the API lets them see; API tokens, password changes,
// the audit log, and sign-out that ends the session at the API.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ensureConsoleBuild } from '../scripts/build-console.ts';
import { Stack, root } from './harness.ts';

const screenshots = join(root, '.cache', 'screenshots');

const ADMIN = { email: 'admin@localhost', password: 'admin-password-e2e', address: '203.0.113.1' };
const UMA = { email: 'uma@example.com', name: 'Uma', password: 'uma-password-1', address: '203.0.113.2' };
const VIC = { email: 'vic@example.com', name: 'Vic', password: 'vic-password-1', address: '203.0.113.3' };

let stack: Stack;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** Uncaught errors and Content-Security-Policy refusals in the pages. */
const pageErrors: string[] = [];
let admin: Page;
let uma: Page;
let vic: Page;

before(async () => {
  await ensureConsoleBuild();
  mkdirSync(screenshots, { recursive: true });
  // As behind a proxy: each browser's address comes in X-Forwarded-For, which the console is told to read.
  stack = await new Stack({ env: { CRONIUM_ADMIN_PASSWORD: ADMIN.password, CRONIUM_CONSOLE_ADDRESS_HEADER: 'x-forwarded-for' } }).start();
  browser = await chromium.launch({
    executablePath: process.env.CRONIUM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // The arguments of test/e2e-console.test.ts, and a password store of Chromium's own: without one, the first
    // password form of each context waits for a desktop keyring that a test machine does not run.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--password-store=basic'],
  });
  [admin, uma, vic] = await Promise.all([newPage(ADMIN.address), newPage(UMA.address), newPage(VIC.address)]);
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

/** A page in a browser context of its own: its own cookies, so its own session. */
async function newPage(address: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, extraHTTPHeaders: { 'x-forwarded-for': address } });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) pageErrors.push(message.text());
  });
  // Deletes and revocations ask first.
  page.on('dialog', (dialog) => void dialog.accept());
  return page;
}

const url = (path: string) => `${stack.baseUrl}${path}`;
const shot = (page: Page, name: string) => page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
const path = (page: Page) => new URL(page.url()).pathname;

/** Opens a sign-in or settings page and waits for its scripts, which would reset what was typed before them. */
async function open(page: Page, to: string): Promise<void> {
  await page.goto(url(to));
  await page.locator('[data-hydrated]').waitFor();
}

async function signIn(page: Page, who: { email: string; password: string }): Promise<void> {
  await open(page, '/login');
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

/** A call to the public API with curl-style JSON, as a script with the token would make it. */
async function api(method: string, body: unknown, token?: string): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url(`/api/cronium.api.v1.${method}`), { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** SignIn's request: only the email and the password. */
const credentials = (who: { email: string; password: string }) => ({ email: who.email, password: who.password });

async function sessionOf(who: { email: string; password: string }): Promise<string> {
  const { status, body } = await api('AuthService/SignIn', credentials(who));
  assert.equal(status, 200, JSON.stringify(body));
  return body.sessionToken;
}

/** What Vic, while a user, makes on the newer pages: a workflow and a run of it, a variable, a notification channel. */
const vics = { workflowId: '', executionId: '' };
async function makeVicsThings(token: string, eventId: string): Promise<void> {
  const made = async (method: string, body: unknown) => {
    const { status, body: answer } = await api(method, body, token);
    assert.equal(status, 200, `${method}: ${JSON.stringify(answer)}`);
    return answer;
  };
  vics.workflowId = (await made('WorkflowService/CreateWorkflow', { workflow: { name: 'vic-flow', nodes: [{ id: 'report', eventId }] } })).workflow.id;
  vics.executionId = (await made('WorkflowService/RunWorkflow', { id: vics.workflowId })).execution.id;
  await made('VariableService/SetVariable', { key: 'VIC_TARGET', value: 'staging' });
  await made('NotificationService/CreateChannel', { channel: { name: 'vic-alerts', slack: { webhookUrl: 'https://hooks.slack.invalid/vic' } } });
}

/** A form the page does not offer, posted as a browser would (no script): the page answers with what the action returned. */
async function forcePost(page: Page, action: string, fields: Record<string, string>): Promise<void> {
  const inputs = Object.entries(fields).map(([name, value]) => `<input type="hidden" name="${name}" value="${value}">`).join('');
  await page.evaluate(`document.body.insertAdjacentHTML('beforeend', '<form method="POST" action="?/${action}">${inputs}<button type="submit" id="forced">Forced</button></form>')`);
  await page.locator('#forced').click();
}

const userRow = (page: Page, email: string) => page.locator(`[data-testid=user-row][data-email="${email}"]`);

test('the admin signs in with email and password; a wrong password is refused clearly', async () => {
  await admin.goto(url('/events'));
  assert.equal(path(admin), '/login');
  await signIn(admin, { email: ADMIN.email, password: 'not-the-password' });
  await admin.getByRole('alert').filter({ hasText: 'Wrong email or password.' }).waitFor();
  assert.deepEqual(await admin.context().cookies(), []);

  await open(admin, '/login?next=/events');
  await admin.getByLabel('Email').fill(ADMIN.email);
  await admin.getByLabel('Password').fill(ADMIN.password);
  await admin.getByRole('button', { name: 'Sign in', exact: true }).click();
  await admin.getByRole('heading', { name: 'Events' }).waitFor();
  assert.equal(path(admin), '/events');
  assert.equal(await admin.getByTestId('my-role').textContent(), 'admin');
  const [cookie] = await admin.context().cookies();
  assert.ok(cookie, 'a session cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.ok(!cookie.value.includes(ADMIN.password), 'the password is not in the cookie');
  assert.ok(cookie.expires > Date.now() / 1000 && cookie.expires <= Date.now() / 1000 + 12 * 3600 + 60, 'the cookie ends with the session (12 h)');
  for (const name of ['Agents', 'Settings']) await admin.getByRole('navigation', { name: 'Main' }).getByRole('link', { name }).waitFor();
});

test('the admin adds a user and a viewer, and changes a role', async () => {
  await open(admin, '/settings/users');
  for (const [who, role] of [[UMA, 'user'], [VIC, 'viewer']] as const) {
    await admin.getByLabel('Email').fill(who.email);
    await admin.getByLabel('Name').fill(who.name);
    await admin.getByLabel('Role', { exact: true }).selectOption(role);
    await admin.getByLabel(/^Password/).fill(who.password);
    await admin.getByRole('button', { name: 'Add user' }).click();
    await admin.getByRole('status').filter({ hasText: `${who.email} can now sign in.` }).waitFor();
  }
  assert.equal(await admin.getByLabel(`Role of ${VIC.email}`, { exact: true }).inputValue(), 'viewer');
  assert.equal(await admin.getByLabel(`Role of ${UMA.email}`, { exact: true }).inputValue(), 'user');

  // Vic makes an event while a user, then becomes a viewer: it stays his, and he can no longer change it.
  await admin.getByLabel(`Role of ${VIC.email}`, { exact: true }).selectOption('user');
  await admin.getByRole('button', { name: `Change role of ${VIC.email}` }).click();
  await admin.getByRole('status').filter({ hasText: `${VIC.email} is now user.` }).waitFor();
  const created = await api('EventService/CreateEvent', { event: { name: 'vic-report', type: 'EVENT_TYPE_BASH', script: 'echo report' } }, await sessionOf(VIC));
  assert.equal(created.status, 200, JSON.stringify(created.body));
  await makeVicsThings(await sessionOf(VIC), created.body.event.id);
  await admin.getByLabel(`Role of ${VIC.email}`, { exact: true }).selectOption('viewer');
  await admin.getByRole('button', { name: `Change role of ${VIC.email}` }).click();
  await admin.getByRole('status').filter({ hasText: `${VIC.email} is now viewer.` }).waitFor();
  assert.equal(await admin.getByLabel(`Role of ${VIC.email}`, { exact: true }).inputValue(), 'viewer');
  await shot(admin, 'users');
});

test('a viewer sees their events without buttons that change them; a forced edit shows the API refusal', async () => {
  await signIn(vic, VIC);
  await vic.getByRole('heading', { name: 'Success rate' }).waitFor();
  assert.equal(await vic.getByTestId('my-role').textContent(), 'viewer');
  const nav = vic.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'Events' }).waitFor();
  assert.equal(await nav.getByRole('link', { name: 'Agents' }).count(), 0, 'no admin pages in the navigation');

  await vic.goto(url('/events'));
  await vic.getByRole('link', { name: 'vic-report' }).waitFor();
  assert.equal(await vic.getByRole('link', { name: 'New event' }).count(), 0);
  await vic.getByRole('link', { name: 'vic-report' }).click();
  await vic.getByRole('heading', { name: 'vic-report' }).waitFor();
  await vic.getByRole('status').filter({ hasText: 'does not let you change or run it' }).waitFor();
  for (const name of ['Run now', 'Delete', 'Save changes']) assert.equal(await vic.getByRole('button', { name }).count(), 0, `no ${name} button`);

  // A submit the page does not offer, as a hand-made POST: the API refuses it, and the page says so.
  await vic.getByLabel('Name').fill('renamed-by-viewer');
  await vic.evaluate(`document.querySelector('form[action="?/save"]').insertAdjacentHTML('beforeend', '<button type="submit" id="forced">Forced save</button>')`);
  await vic.locator('#forced').click();
  await vic.getByRole('alert').filter({ hasText: 'viewers cannot change anything' }).waitFor();
  const events = (await stack.ok('cronium.api.v1.EventService/ListEvents', {})).events.map((e: any) => e.name);
  assert.ok(events.includes('vic-report') && !events.includes('renamed-by-viewer'), 'the event is unchanged');

  for (const page of ['/agents', '/settings/users', '/settings/audit', '/events/new']) {
    const res = await vic.goto(url(page));
    assert.equal(res?.status(), 403, `${page} is not for viewers`);
    await vic.getByRole('heading', { name: 'Not allowed' }).waitFor();
  }
  await open(vic, '/settings/account');
  const tabs = vic.getByRole('navigation', { name: 'Settings' });
  await tabs.getByRole('link', { name: 'API tokens' }).waitFor();
  assert.equal(await tabs.getByRole('link', { name: 'Users' }).count(), 0);
  assert.equal(await tabs.getByRole('link', { name: 'Audit log' }).count(), 0);
  assert.equal(await vic.getByTestId('my-email').textContent(), VIC.email);
});

test('a viewer sees workflows, an execution, variables and channels without buttons that change them; forced changes are refused', async () => {
  const refused = () => vic.getByRole('alert').filter({ hasText: 'viewers cannot change anything' }).waitFor();
  const noButtons = async (names: string[]) => {
    for (const name of names) assert.equal(await vic.getByRole('button', { name, exact: true }).count(), 0, `no ${name} button on ${path(vic)}`);
  };

  await vic.goto(url('/workflows'));
  await vic.getByRole('link', { name: 'vic-flow' }).waitFor();
  assert.equal(await vic.getByRole('link', { name: 'New workflow' }).count(), 0);
  assert.equal((await vic.goto(url('/workflows/new')))?.status(), 403, '/workflows/new is not for viewers');

  await vic.goto(url(`/workflows/${vics.workflowId}`));
  await vic.getByRole('status').filter({ hasText: 'does not let you change or run it' }).waitFor();
  await vic.locator('.svelte-flow__node [data-node-id=report]').waitFor();
  await noButtons(['Delete', 'Run workflow', 'Turn webhook on', 'Add node', 'Add edge', 'Remove selected', 'Save workflow']);
  await vic.getByLabel('Name', { exact: true }).fill('renamed-by-viewer');
  await vic.evaluate(`document.querySelector('form[action="?/save"]').insertAdjacentHTML('beforeend', '<button type="submit" id="forced-save">Forced save</button>')`);
  await vic.locator('#forced-save').click();
  await refused();
  assert.equal((await stack.ok('cronium.api.v1.WorkflowService/GetWorkflow', { id: vics.workflowId })).workflow.name, 'vic-flow', 'the workflow is unchanged');

  await vic.goto(url(`/executions/${vics.executionId}`));
  await vic.getByTestId('execution-node').first().waitFor();
  await noButtons(['Cancel']);
  await forcePost(vic, 'cancel', {});
  await refused();

  await vic.goto(url('/variables'));
  await vic.getByTestId('variable-row').filter({ hasText: 'VIC_TARGET' }).waitFor();
  await noButtons(['Replace VIC_TARGET', 'Delete VIC_TARGET', 'Save variable']);
  await forcePost(vic, 'set', { key: 'VIC_TARGET', value: 'production' });
  await refused();
  await forcePost(vic, 'delete', { key: 'VIC_TARGET' });
  await refused();
  await vic.getByTestId('variable-row').filter({ hasText: 'staging' }).waitFor();

  await vic.goto(url('/notifications'));
  await vic.getByText('vic-alerts').waitFor();
  await noButtons(['Test vic-alerts', 'Delete vic-alerts', 'Add channel']);
  const { channels } = (await api('NotificationService/ListChannels', {}, await sessionOf(VIC))).body;
  await forcePost(vic, 'delete', { id: channels[0].id });
  await refused();
  await vic.getByText('vic-alerts').waitFor();
});

let umaEventId = '';

test("a user creates an event through the form; nobody but its owner and the admins sees it", async () => {
  await signIn(uma, UMA);
  await uma.getByRole('heading', { name: 'Success rate' }).waitFor();
  assert.equal(await uma.getByTestId('my-role').textContent(), 'user');
  assert.equal(await uma.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Agents' }).count(), 0);
  await uma.goto(url('/events'));
  await uma.getByText('No events yet').waitFor();
  await uma.getByRole('link', { name: 'New event' }).click();
  await uma.getByLabel('Name').fill('uma-job');
  await uma.getByRole('button', { name: 'Create event' }).click();
  await uma.getByText('Event created').waitFor();
  umaEventId = path(uma).split('/').pop()!;

  await uma.goto(url('/events'));
  await uma.getByRole('link', { name: 'uma-job' }).waitFor();
  assert.equal(await uma.getByRole('link', { name: 'vic-report' }).count(), 0, "Vic's event is not Uma's");
  await vic.goto(url('/events'));
  await vic.getByRole('link', { name: 'vic-report' }).waitFor();
  assert.equal(await vic.getByRole('link', { name: 'uma-job' }).count(), 0, "Uma's event is not Vic's");
  assert.equal((await vic.goto(url(`/events/${umaEventId}`)))?.status(), 404, "another user's event is not found");
  await admin.goto(url('/events'));
  await admin.getByRole('link', { name: 'uma-job' }).waitFor();
  await admin.getByRole('link', { name: 'vic-report' }).waitFor();
});

test('an API token made on the tokens page works against /api, is shown once, and stops when revoked', async () => {
  await open(uma, '/settings/tokens');
  await uma.getByText('No API tokens yet').waitFor();
  await uma.getByLabel('Name').fill('ci');
  await uma.getByLabel('Expires').selectOption('30');
  await uma.getByRole('button', { name: 'Create token' }).click();
  const secret = (await uma.getByTestId('new-token').textContent())!.trim();
  assert.match(secret, /^crn_\S+$/);
  await uma.getByRole('button', { name: 'Copy token' }).waitFor();
  await shot(uma, 'tokens');

  const listed = await api('EventService/ListEvents', {}, secret);
  assert.equal(listed.status, 200);
  assert.deepEqual(listed.body.events.map((e: any) => e.name), ['uma-job'], 'the token acts as Uma');

  await uma.reload();
  await uma.getByRole('cell', { name: /^ci/ }).waitFor();
  assert.equal(await uma.getByTestId('new-token').count(), 0, 'the secret is not shown again');
  assert.ok(!(await uma.content()).includes(secret));
  assert.notEqual(await uma.getByTestId('last-used').textContent(), 'never', 'the call shows as its last use');

  await uma.getByRole('button', { name: 'Revoke ci' }).click();
  await uma.getByRole('status').filter({ hasText: 'Token ci revoked.' }).waitFor();
  assert.equal((await api('EventService/ListEvents', {}, secret)).status, 401);
});

test('my account: a changed password is the one that signs in', async () => {
  const fresh = 'uma-password-2';
  await open(uma, '/settings/account');
  assert.equal(await uma.getByTestId('my-name').textContent(), UMA.name);
  await uma.getByLabel('Current password').fill(UMA.password);
  await uma.getByLabel(/^New password(?! again)/).fill(fresh);
  await uma.getByLabel('New password again').fill(fresh);
  await uma.getByRole('button', { name: 'Change password' }).click();
  await uma.getByRole('status').filter({ hasText: 'Password changed.' }).waitFor();
  assert.equal((await api('AuthService/SignIn', credentials(UMA))).status, 401, 'the old password no longer signs in');
  UMA.password = fresh;
  await sessionOf(UMA);
  // This session goes on.
  await uma.goto(url('/events'));
  await uma.getByRole('link', { name: 'uma-job' }).waitFor();
});

test('the audit log lists the sign-ins and the creates, and filters by user', async () => {
  await open(admin, '/settings/audit');
  const rows = admin.getByTestId('audit-row');
  await rows.first().waitFor();
  const text = (await rows.allTextContents()).join('\n');
  for (const method of ['AuthService/SignIn', 'UserService/CreateUser', 'UserService/UpdateUser', 'EventService/CreateEvent', 'TokenService/CreateToken', 'TokenService/RevokeToken', 'UserService/ChangePassword']) {
    assert.ok(text.includes(method), `the log has ${method}`);
  }
  assert.ok(text.includes('unauthenticated'), 'the failed sign-in is there');
  await shot(admin, 'audit');
  // The console passes the browser's user agent on.
  const signIns = await rows.filter({ hasText: 'AuthService/SignIn' }).allTextContents();
  assert.ok(signIns.some((row) => row.includes('HeadlessChrome')), 'the browser is named');
  // Where: the browser's address, not the console's loopback call.
  assert.ok(signIns.some((row) => row.includes(UMA.name) && row.includes(UMA.address)), "Uma's sign-in from her address");

  await admin.getByLabel('User', { exact: true }).selectOption({ label: UMA.name });
  await admin.getByRole('button', { name: 'Filter' }).click();
  await admin.waitForURL(/user=/);
  const umaRows = await admin.getByTestId('audit-row').allTextContents();
  assert.ok(umaRows.length >= 4, `Uma's sign-ins, event, token and password (${umaRows.length})`);
  assert.ok(umaRows.every((row) => row.includes(UMA.name)), 'only Uma');
  assert.ok(umaRows.some((row) => row.includes('EventService/CreateEvent') && row.includes(umaEventId)));
  assert.ok(!umaRows.some((row) => row.includes('UserService/CreateUser')));

  await admin.goto(url(`/settings/audit?object=${umaEventId}`));
  const eventRows = await admin.getByTestId('audit-row').allTextContents();
  assert.equal(eventRows.length, 1);
  assert.match(eventRows[0]!, /EventService\/CreateEvent/);
});

test('sign-out ends the session: a copy of the old cookie opens nothing', async () => {
  const [cookie] = await uma.context().cookies();
  const withCookie = () => fetch(url('/events'), { headers: { cookie: `${cookie!.name}=${cookie!.value}` }, redirect: 'manual' });
  assert.equal((await withCookie()).status, 200, 'the cookie works while signed in');
  await uma.getByRole('button', { name: 'Sign out' }).click();
  await uma.getByLabel('Email').waitFor();
  assert.deepEqual(await uma.context().cookies(), []);
  const after = await withCookie();
  assert.equal(after.status, 303);
  assert.match(after.headers.get('location') ?? '', /^\/login/);
});

test('the admin resets a password, disables, enables and deletes a user', async () => {
  await open(admin, '/settings/users');
  await userRow(admin, VIC.email).getByText('Reset password').click();
  await admin.getByLabel(`New password for ${VIC.email}`).fill('vic-password-2');
  await admin.getByRole('button', { name: `Reset password of ${VIC.email}` }).click();
  await admin.getByRole('status').filter({ hasText: `Password of ${VIC.email} reset` }).waitFor();
  await vic.goto(url('/events'));
  assert.equal(path(vic), '/login', "a reset ends the user's sessions");
  VIC.password = 'vic-password-2';

  await admin.getByRole('button', { name: `Disable ${VIC.email}` }).click();
  await admin.getByRole('status').filter({ hasText: `${VIC.email} is disabled` }).waitFor();
  assert.equal((await api('AuthService/SignIn', credentials(VIC))).status, 401, 'a disabled user cannot sign in');
  await admin.getByRole('button', { name: `Enable ${VIC.email}` }).click();
  await admin.getByRole('status').filter({ hasText: `${VIC.email} can sign in again.` }).waitFor();
  await sessionOf(VIC);

  await admin.getByRole('button', { name: `Delete ${VIC.email}` }).click();
  await admin.getByRole('status').filter({ hasText: 'User deleted.' }).waitFor();
  assert.equal(await userRow(admin, VIC.email).count(), 0);
  assert.equal(await admin.getByRole('button', { name: `Delete ${ADMIN.email}` }).count(), 0, 'admins cannot delete themselves');
});

test('repeated wrong passwords get the rate limit, in words', async () => {
  // Failed sign-ins count per email and per address; after a few the page says to wait.
  let message = '';
  for (let attempt = 0; attempt < 8 && !/Too many/.test(message); attempt++) {
    await signIn(uma, { email: UMA.email, password: `wrong-${attempt}` });
    message = (await uma.getByRole('alert').textContent()) ?? '';
  }
  assert.match(message, /Too many failed sign-ins\. Wait \d+ s, then try again\./);
  // The lock is on Uma's email and her browser's address, not on the console: others still sign in.
  const elsewhere = await newPage('198.51.100.9');
  await signIn(elsewhere, ADMIN);
  await elsewhere.getByRole('heading', { name: 'Success rate' }).or(elsewhere.getByRole('alert')).first().waitFor();
  assert.equal(path(elsewhere), '/', `signed in (${await elsewhere.getByRole('alert').allTextContents()})`);
  assert.deepEqual(pageErrors, [], 'no script errors or CSP refusals on any page');
});
