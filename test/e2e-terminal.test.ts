// Interactive terminals in a real browser (Debian's Chromium) through the agent
// mesh to real OpenSSH servers: the orchestrator agent carries the terminal to
// a server on 127.0.0.1; a remote agent (the built binary) carries it to a
// server on 127.0.0.2 that only it is routed to (server label via=site=branch),
// and that the control plane never connects to (its host key is pinned at
// creation, not probed). The browser is signed in with a session from
// AuthService/SignIn, which the gateway checks like any API call; the
// recording replays; users, viewers and ended sessions are refused.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { EncryptJWT } from 'jose';
import WebSocket from 'ws';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ensureConsoleBuild } from '../scripts/build-console.ts';
import { ADMIN_TOKEN, Stack, freshDatabase, root, type RemoteAgent } from './harness.ts';
import { startSshd, type Sshd } from './sshd.ts';

const run = promisify(execFile);
const screenshots = join(root, '.cache', 'screenshots');
const profile = mkdtempSync(join(tmpdir(), 'cronium-chromium-'));
let stack: Stack;
let database: Awaited<ReturnType<typeof freshDatabase>>;
let browser: BrowserContext;
let near: Sshd;
let far: Sshd;
let branchAgent: RemoteAgent;
const servers: Record<string, { id: string; name: string }> = {};
const ADMIN_PASSWORD = 'terminal-admin-pass';
/** The console's cookie key, given so the test can seal a signed-in cookie. */
const CONSOLE_KEY = randomBytes(32);
/** Credentials of a plain user and a viewer: a session token and an API token each. */
let userSession: string;
let viewerToken: string;

async function signIn(email: string, password: string): Promise<string> {
  const { status, body } = await stack.call('cronium.api.v1.AuthService/SignIn', { email, password }, null);
  assert.equal(status, 200, JSON.stringify(body));
  return body.sessionToken;
}

/**
 * A browser signed in with a session token: the cookie the console sets at
 * sign-in (its sign-in form is the console tests' subject, not this one's).
 */
async function signInBrowser(context: BrowserContext, sessionToken: string): Promise<void> {
  const jwt = await new EncryptJWT({ token: sessionToken, kind: 'session' }).setProtectedHeader({ alg: 'dir', enc: 'A256GCM' }).setIssuedAt().setExpirationTime('1h').encrypt(CONSOLE_KEY);
  await context.addCookies([{ name: 'cronium_session', value: jwt, url: stack.baseUrl, httpOnly: true, sameSite: 'Strict' }]);
}

before(async () => {
  await ensureConsoleBuild();
  database = await freshDatabase('e2e_terminal');
  [near, far] = await Promise.all([startSshd(), startSshd({ host: '127.0.0.2' })]);
  stack = await new Stack({ databaseUrl: database.url, env: { CRONIUM_ADMIN_PASSWORD: ADMIN_PASSWORD, CRONIUM_SESSION_KEY: CONSOLE_KEY.toString('base64') } }).start();
  branchAgent = await stack.remoteAgent({ labels: { site: 'branch' }, env: { CRONIUM_AGENT_ENABLE_SSH: '1', CRONIUM_AGENT_ENABLE_TERMINAL: '1' } });
  const nearServer = (await stack.ok('cronium.api.v1.ServerService/CreateServer', { server: { name: 'near', host: near.host, port: near.port, username: near.username, privateKey: near.privateKey } })).server;
  const probe = await stack.ok('cronium.api.v1.ServerService/TestServer', { id: nearServer.id });
  await stack.ok('cronium.api.v1.ServerService/ApproveHostKey', { id: nearServer.id, fingerprint: probe.hostKeyFingerprint });
  servers.near = nearServer;
  // Pinned at creation: nothing on the control plane ever dials 127.0.0.2.
  servers.far = (
    await stack.ok('cronium.api.v1.ServerService/CreateServer', {
      server: { name: 'far', host: far.host, port: far.port, username: far.username, privateKey: far.privateKey, hostKeyFingerprint: far.hostKeyFingerprint, labels: { via: 'site=branch' } },
    })
  ).server;
  await stack.ok('cronium.api.v1.UserService/CreateUser', { email: 'una@example.com', role: 'ROLE_USER', password: 'una-password-1' });
  await stack.ok('cronium.api.v1.UserService/CreateUser', { email: 'vic@example.com', role: 'ROLE_VIEWER', password: 'vic-password-1' });
  userSession = await signIn('una@example.com', 'una-password-1');
  const viewer = await stack.call('cronium.api.v1.TokenService/CreateToken', { name: 'vic script' }, await signIn('vic@example.com', 'vic-password-1'));
  assert.equal(viewer.status, 200, JSON.stringify(viewer.body));
  viewerToken = viewer.body.secret;

  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CRONIUM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 860 },
  });
  await signInBrowser(browser, await signIn('admin@localhost', ADMIN_PASSWORD));
  const page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(`${stack.baseUrl}/`);
  await page.getByRole('heading', { name: 'Dashboard' }).or(page.getByRole('heading', { name: 'Events' })).first().waitFor();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  await Promise.all([near?.stop(), far?.stop()]);
  await database?.drop();
  rmSync(profile, { recursive: true, force: true });
});

/** The text on the terminal's screen. */
const screen = (page: Page) => page.locator('[data-testid=terminal] .xterm-rows').innerText();

async function waitForScreen(page: Page, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = await screen(page);
    const match = pattern.exec(text);
    if (match) return match;
    await page.waitForTimeout(100);
  }
  throw new Error(`${pattern} not on the terminal within ${timeoutMs} ms; it shows:\n${text}`);
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Opens a terminal from the Servers (or Agents) page in a new tab, as an operator would. */
async function openTerminal(name: string, from = '/servers'): Promise<Page> {
  const page = await browser.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`${stack.baseUrl}${from}`);
  await page.getByRole('link', { name: `Terminal on ${name}` }).click();
  await page.getByTestId('terminal-status').filter({ hasText: 'Connected to' }).waitFor();
  await page.locator('[data-testid=terminal] .xterm-helper-textarea').focus();
  return page;
}

/** A paste as the browser delivers it (a paste event with the clipboard's text). */
async function paste(page: Page, text: string): Promise<void> {
  await page.locator('[data-testid=terminal] .xterm-helper-textarea').evaluate((textarea, pasted) => {
    // Runs in the page (DOM types are not in this project's TypeScript libs).
    const dom = globalThis as unknown as { DataTransfer: new () => { setData(type: string, data: string): void }; ClipboardEvent: new (type: string, init: object) => Event };
    const clipboardData = new dom.DataTransfer();
    clipboardData.setData('text/plain', pasted);
    textarea.dispatchEvent(new dom.ClipboardEvent('paste', { clipboardData, bubbles: true, cancelable: true }));
  }, text);
}

/** Arithmetic, resize, Unicode, Ctrl-C and a large paste; returns the shell's pid on the server. */
async function exercise(page: Page): Promise<number> {
  await page.keyboard.type('echo $((6*7))\n');
  await waitForScreen(page, /^42\s*$/m);

  await page.keyboard.type('echo SIZE1 $(stty size)\n');
  const [, rows1, cols1] = await waitForScreen(page, /^SIZE1 (\d+) (\d+)\s*$/m);
  await page.setViewportSize({ width: 760, height: 560 });
  await page.waitForTimeout(500);
  await page.keyboard.type('echo SIZE2 $(stty size)\n');
  const [, rows2, cols2] = await waitForScreen(page, /^SIZE2 (\d+) (\d+)\s*$/m);
  assert.ok(Number(cols2) < Number(cols1) && Number(rows2) < Number(rows1), `stty size follows the window: ${rows1}x${cols1} then ${rows2}x${cols2}`);

  // The test users' sshd sessions start in the POSIX locale, where readline mangles non-ASCII input.
  await page.keyboard.type('export LC_ALL=C.UTF-8\n');
  await page.keyboard.type('echo "héllo wörld ✓ 日本"\n');
  await waitForScreen(page, /^héllo wörld ✓ 日本\s*$/m);

  await page.keyboard.type('sleep 300\n');
  await page.waitForTimeout(300);
  await page.keyboard.press('Control+C');
  await page.keyboard.type('echo after-$((1+1))\n');
  await waitForScreen(page, /^after-2\s*$/m);

  // 1000 lines of 100 bytes: more than the 64 KiB flow-control window on every hop
  // (larger pastes over SSH hit an ssh2 bug: see docs/terminal.md).
  await page.keyboard.type('stty -echo; wc -c; stty echo\n');
  await page.waitForTimeout(300);
  await paste(page, `${'x'.repeat(99)}\n`.repeat(1000));
  await page.keyboard.press('Control+D');
  await waitForScreen(page, /^\s*100000\s*$/m, 60_000);

  await page.keyboard.type('echo PID $$\n');
  const [, pid] = await waitForScreen(page, /^PID (\d+)\s*$/m);
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, 'terminal.png') });
  return Number(pid);
}

/** pids holding a TCP connection to host:port. */
async function connectionOwners(host: string, port: number): Promise<number[]> {
  const { stdout } = await run('ss', ['-tnpH', 'state', 'established', 'dst', `${host}:${port}`]);
  return [...stdout.matchAll(/pid=(\d+)/g)].map((match) => Number(match[1]));
}

test('a terminal to a server through the orchestrator agent: 42, resize, Unicode, Ctrl-C, paste; closing the tab ends the shell', async () => {
  const page = await openTerminal('near');
  const pid = await exercise(page);
  assert.ok(existsSync(`/proc/${pid}`), 'the shell runs on the server');
  await page.close();
  await until('the shell to end after the tab closed', async () => !existsSync(`/proc/${pid}`) && (await near.jobProcesses()).length === 0);
});

test('a terminal on the host of an agent that allows it (enable_terminal), opened from the Agents page', async () => {
  const agents = await stack.agents();
  const branch = agents.find((agent: any) => agent.labels?.site === 'branch');
  assert.ok(branch.executors.includes('terminal'), 'the agent says it allows terminals');
  const page = await browser.newPage();
  await page.goto(`${stack.baseUrl}/agents`);
  assert.equal(await page.getByRole('link', { name: /^Terminal on / }).count(), 1, 'only the agent that allows it offers a terminal');
  await page.close();
  const terminal = await openTerminal(branch.name, '/agents');
  await terminal.keyboard.type('echo $((6*7)); echo PID $$\n');
  await waitForScreen(terminal, /^42\s*$/m);
  const [, pid] = await waitForScreen(terminal, /^PID (\d+)\s*$/m);
  await terminal.close();
  await until('the local shell to end', async () => !existsSync(`/proc/${pid}`));
});

test('a terminal to a server only a remote agent reaches, through that agent; an agent restart ends it with a clear message', async () => {
  const page = await openTerminal('far');
  const owners = await connectionOwners(far.host, far.port);
  assert.deepEqual(owners, [branchAgent.process!.pid], 'the only SSH connection to the far server is the remote agent’s');
  const pid = await exercise(page);
  await page.close();
  await until('the shell to end after the tab closed', async () => !existsSync(`/proc/${pid}`) && (await far.jobProcesses()).length === 0);

  const again = await openTerminal('far');
  await again.keyboard.type('echo PID $$\n');
  const [, second] = await waitForScreen(again, /^PID (\d+)\s*$/m);
  await branchAgent.kill('SIGKILL');
  await again.getByTestId('terminal-ended').filter({ hasText: 'the agent disconnected' }).waitFor();
  await until('the shell to end with its agent', async () => !existsSync(`/proc/${second}`));
  await again.close();
});

test('every terminal is in the audit list, and its recording replays the session', async () => {
  const { recordings } = await stack.ok('cronium.api.v1.TerminalService/ListRecordings', {});
  assert.equal(recordings.length, 4);
  const [last, second, local, first] = recordings;
  assert.equal(local.targetKind, 'agent');
  assert.equal(first.targetName, 'near');
  assert.equal(first.openedBy, 'admin');
  assert.equal(first.endReason, 'closed by the browser');
  assert.equal(second.targetName, 'far');
  assert.equal(second.agentId, (await stack.agents()).find((agent: any) => agent.labels?.site === 'branch').id);
  assert.equal(last.endReason, 'the agent disconnected');
  const { asciicast } = await stack.ok('cronium.api.v1.TerminalService/GetRecording', { id: first.id });
  const [header, ...events] = asciicast.trim().split('\n').map((line: string) => JSON.parse(line));
  assert.equal(header.version, 2);
  assert.ok(events.some(([, code]: [number, string]) => code === 'r'), 'the resize is recorded');
  const output = events.filter(([, code]: [number, string]) => code === 'o').map(([, , data]: [number, string, string]) => data).join('');
  assert.match(output, /echo \$\(\(6\*7\)\)\r\n(\x1b\[\?2004l\r)?42\r\n/);

  const page = browser.pages()[0]!;
  await page.goto(`${stack.baseUrl}/terminals`);
  await page.getByRole('link', { name: /^Replay/ }).last().click();
  await page.getByTestId('replay-status').filter({ hasText: 'Replay finished' }).waitFor({ timeout: 60_000 });
  const replayed = await page.locator('[data-testid=replay] .xterm-rows').innerText();
  await page.screenshot({ path: join(screenshots, 'terminal-replay.png'), fullPage: true });
  assert.match(replayed, /^héllo wörld ✓ 日本\s*$/m);
  assert.match(replayed, /^PID \d+\s*$/m);
});

/** Opens the terminal WebSocket as a script would; resolves with the first control message and the close code. */
function scriptTerminal(headers: Record<string, string>): Promise<{ message?: any; code?: number; status?: number }> {
  return new Promise((resolve) => {
    const socket = new WebSocket(`ws://127.0.0.1:${stack.httpPort}/terminal/ws?server=${servers.near!.id}`, { headers });
    let message: any;
    socket.on('message', (data, binary) => {
      if (!binary && !message) message = JSON.parse(String(data));
    });
    socket.on('close', (code) => resolve({ message, code }));
    socket.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode }));
    socket.on('error', () => {});
  });
}

test('a user’s session, a viewer’s token, a signed-out session, no credentials, and a foreign page are refused', async () => {
  const user = await scriptTerminal({ authorization: `Bearer ${userSession}` });
  assert.equal(user.message?.code, 'permission_denied');
  const viewer = await scriptTerminal({ authorization: `Bearer ${viewerToken}` });
  assert.equal(viewer.message?.code, 'permission_denied');
  const ended = await signIn('admin@localhost', ADMIN_PASSWORD);
  assert.equal((await stack.call('cronium.api.v1.AuthService/SignOut', {}, ended)).status, 200);
  const signedOut = await scriptTerminal({ authorization: `Bearer ${ended}` });
  assert.equal(signedOut.message?.code, 'unauthenticated');
  const nobody = await scriptTerminal({});
  assert.equal(nobody.message?.code, 'unauthenticated');
  const foreign = await scriptTerminal({ authorization: `Bearer ${ADMIN_TOKEN}`, origin: 'https://evil.example' });
  assert.equal(foreign.status, 403);
  // The browser's cookie, sent from a page elsewhere (cross-site WebSocket hijacking).
  const cookie = (await browser.cookies()).find((c) => c.name === 'cronium_session')!;
  const hijack = await scriptTerminal({ cookie: `cronium_session=${cookie.value}`, origin: 'https://evil.example' });
  assert.equal(hijack.status, 403);
  const listed = await stack.call('cronium.api.v1.TerminalService/ListRecordings', {}, userSession);
  assert.equal(listed.status, 403);
  // None of these opened a terminal.
  assert.equal((await stack.ok('cronium.api.v1.TerminalService/ListRecordings', {})).recordings.length, 4);
});

test('at most 3 terminals per user: the fourth is refused', async () => {
  const sockets = await Promise.all(
    [1, 2, 3].map(
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const socket = new WebSocket(`ws://127.0.0.1:${stack.httpPort}/terminal/ws?server=${servers.near!.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
          socket.on('message', (data, binary) => !binary && JSON.parse(String(data)).type === 'opened' && resolve(socket));
          socket.on('close', () => reject(new Error('closed before it opened')));
        }),
    ),
  );
  const fourth = await scriptTerminal({ authorization: `Bearer ${ADMIN_TOKEN}` });
  assert.equal(fourth.message?.code, 'resource_exhausted');
  assert.match(fourth.message?.message, /at most 3 open terminals per user/);
  for (const socket of sockets) socket.close();
  await until('the three shells to end', async () => (await near.jobProcesses()).length === 0);
});

test('idle and lifetime limits close terminals with the reason (embedded PGlite store)', async () => {
  const limited = await new Stack({ env: { CRONIUM_TERMINAL_IDLE_SECONDS: '3', CRONIUM_TERMINAL_MAX_SECONDS: '8' } }).start();
  try {
    const { server } = await limited.ok('cronium.api.v1.ServerService/CreateServer', {
      server: { name: 'near', host: near.host, port: near.port, username: near.username, privateKey: near.privateKey, hostKeyFingerprint: near.hostKeyFingerprint },
    });
    const open = (typing: boolean) =>
      new Promise<{ reason: string; afterMs: number }>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${limited.httpPort}/terminal/ws?server=${server.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
        let openedAt = 0;
        let keys: NodeJS.Timeout | undefined;
        socket.on('message', (data, binary) => {
          if (binary) return;
          const message = JSON.parse(String(data));
          if (message.type === 'opened') {
            openedAt = Date.now();
            if (typing) keys = setInterval(() => socket.send(Buffer.from(':\r')), 1000);
          }
          if (message.type === 'closed') {
            clearInterval(keys);
            resolve({ reason: message.reason, afterMs: Date.now() - openedAt });
          }
        });
      });
    const [idle, busy] = await Promise.all([open(false), open(true)]);
    assert.equal(idle.reason, 'closed after 3 seconds without input');
    assert.ok(idle.afterMs >= 2_500, `idle closed after ${idle.afterMs} ms`);
    assert.equal(busy.reason, 'reached the 8 seconds limit');
    assert.ok(busy.afterMs >= 7_000, `the busy one lasted ${busy.afterMs} ms`);
    const { recordings } = await limited.ok('cronium.api.v1.TerminalService/ListRecordings', {});
    assert.deepEqual(recordings.map((r: any) => r.endReason).sort(), ['closed after 3 seconds without input', 'reached the 8 seconds limit']);
    assert.ok(recordings.every((r: any) => Number(r.outputBytes) > 0), 'the prompts were recorded');
  } finally {
    await limited.stop();
  }
  await until('the shells to end', async () => (await near.jobProcesses()).length === 0);
});

test('a control-plane restart ends the terminal with a message that says so, and the shell with it', async () => {
  const page = await openTerminal('near');
  await page.keyboard.type('echo PID $$\n');
  const [, pid] = await waitForScreen(page, /^PID (\d+)\s*$/m);
  stack.controlPlane!.kill('SIGTERM');
  await page.getByTestId('terminal-ended').filter({ hasText: 'the control plane is restarting' }).waitFor();
  await until('the shell to end', async () => !existsSync(`/proc/${pid}`));
  await page.close();
});
