// SshExecutor, SshPool and the fingerprint helpers against real OpenSSH
// servers (test/sshd.ts: Debian's sshd on loopback ports, one test user per
// server, root needed). Three servers stand for several: A for the job
// tests (run concurrently), B for the host key change, C for timeout/cancel
// and pool behaviour (serial, so "no process left" checks are exact).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startSshd, type Sshd } from '../../test/sshd.ts';
import {
  fingerprintOf,
  isSafeRemoteDir,
  keyTypeOf,
  normalizeFingerprint,
  SshExecutor,
  SshPool,
} from '../src/executors/ssh.ts';
import type { SshExecutorOptions } from '../src/executors/ssh.ts';
import { shellQuote } from '../src/executors/shell-env.ts';
import type { ExecutionResult, JobKind, JobSpec, LogStreamName, RunContext, SshTarget } from '../src/job.ts';

const RUNTIME_DIR = fileURLToPath(new URL('../runtime', import.meta.url));

function targetOf(server: Sshd, extra: Partial<SshTarget> = {}): SshTarget {
  return {
    serverId: `srv-${server.port}`,
    host: server.host,
    port: server.port,
    username: server.username,
    privateKey: server.privateKey,
    password: '',
    hostKeyFingerprint: server.hostKeyFingerprint,
    ...extra,
  };
}

function spec(kind: JobKind, script: string, ssh: SshTarget, extra: Partial<JobSpec> = {}): JobSpec {
  return {
    jobId: `test-ssh-${randomUUID()}`,
    attempt: 1,
    eventId: 'evt-1',
    runId: 'run-1',
    eventName: 'ssh test',
    kind,
    script,
    env: {},
    timeoutSeconds: 30,
    input: null,
    variables: {},
    memoryBytes: 0,
    cpus: 0,
    network: false,
    ssh,
    ...extra,
  };
}

interface Run {
  result: ExecutionResult;
  logs: Record<LogStreamName, string>;
  started: number;
  /** performance.now() when ctx.started() was called, and when run() returned. */
  startedAt: number;
  endedAt: number;
  ms: number;
}

async function run(
  exec: SshExecutor,
  s: JobSpec,
  opts: { signal?: AbortSignal; onLog?: (stream: LogStreamName, text: string) => void; logDelayMs?: number } = {},
): Promise<Run> {
  const logs: Record<LogStreamName, string> = { stdout: '', stderr: '', system: '' };
  let started = 0;
  let startedAt = 0;
  const ctx: RunContext = {
    signal: opts.signal ?? new AbortController().signal,
    async log(stream, data) {
      if (opts.logDelayMs) await new Promise((resolve) => setTimeout(resolve, opts.logDelayMs));
      logs[stream] += data.toString('utf8');
      opts.onLog?.(stream, logs[stream]);
    },
    started() {
      started++;
      startedAt = performance.now();
    },
  };
  const t0 = performance.now();
  const result = await exec.run(s, ctx);
  const endedAt = performance.now();
  return { result, logs, started, startedAt, endedAt, ms: endedAt - t0 };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 1));
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let A: Sshd;
let B: Sshd;
let C: Sshd;
const executors: SshExecutor[] = [];
function executor(opts: Partial<SshExecutorOptions> = {}): SshExecutor {
  const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, stopGraceSeconds: 2, ...opts });
  executors.push(e);
  return e;
}

/** Nothing left on server C: no job process, no job folder. */
async function assertNothingLeft(server: Sshd): Promise<void> {
  // The wrapper's last kill is asynchronous on the server; give it a moment.
  let procs = await server.jobProcesses();
  for (let i = 0; i < 20 && procs.length > 0; i++) {
    await sleep(100);
    procs = await server.jobProcesses();
  }
  assert.deepEqual(procs, [], 'no process of the job left');
  assert.deepEqual(await readdir(server.tmpDir), [], 'no job folder left');
}

before(async () => {
  [A, B, C] = await Promise.all([startSshd({ users: 2 }), startSshd({ extraConfig: ['MaxSessions 2'] }), startSshd()]);
});

after(async () => {
  for (const e of executors) await e.close();
  await Promise.all([A?.stop(), B?.stop(), C?.stop()]);
});

describe('SshExecutor jobs (server A)', { concurrency: 4, timeout: 120_000 }, () => {
  let exec: SshExecutor;
  before(() => {
    exec = executor();
  });
  after(async () => {
    assert.deepEqual(await readdir(A.tmpDir), [], 'every job folder removed from server A');
  });

  test('bash: output lines, separate streams, cronium_output, input, event, variables', async () => {
    const s = spec(
      'bash',
      [
        'echo one; echo two; echo three',
        'echo oops >&2',
        'test "$(id -un)" = "$EXPECTED_USER" || echo "wrong user $(id -un)" >&2',
        'cronium_input > "$TMPDIR/in-$$.json" && grep -q \'"x":1\' "$TMPDIR/in-$$.json" && echo input-ok; rm -f "$TMPDIR/in-$$.json"',
        'cronium_event | grep -q \'"jobId"\' && echo event-ok',
        'echo "greeting=$(cronium_get_variable greeting)"',
        'cronium_set_variable "bad/key" x 2>/dev/null || echo bad-key-rejected',
        'cronium_set_variable counter 41',
        'cronium_set_condition true',
        'cronium_output \'{"n": 3}\'',
      ].join('\n'),
      targetOf(A),
      { input: { x: 1 }, variables: { greeting: 'hello world' }, env: { EXPECTED_USER: A.username } },
    );
    const r = await run(exec, s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr + r.logs.system);
    assert.equal(r.result.exitCode, 0);
    assert.equal(r.logs.stdout, 'one\ntwo\nthree\ninput-ok\nevent-ok\ngreeting=hello world\nbad-key-rejected\n');
    assert.equal(r.logs.stderr, 'oops\n');
    assert.equal(r.logs.system, '');
    assert.deepEqual(r.result.output, { n: 3 });
    assert.equal(r.result.condition, true);
    assert.deepEqual(r.result.variablesSet, { counter: '41' });
    assert.equal(r.result.oomKilled, false);
    assert.equal(r.started, 1);
  });

  test('python: output, condition, variables round trip, input, event', async () => {
    const s = spec(
      'python',
      [
        'import cronium',
        'cronium.set_variable("counter", "41")',
        'n = int(cronium.get_variable("counter")) + 1',
        'cronium.setVariable("obj", {"a": [1, 2]})',
        'ev = cronium.event()',
        'cronium.output({"n": n, "input": cronium.input(), "job": ev["jobId"], "attempt": ev["attempt"],',
        '                "seed": cronium.getVariable("seed"), "missing": cronium.get_variable("nope")})',
        'cronium.set_condition(True)',
        'print("done")',
      ].join('\n'),
      targetOf(A),
      { input: { items: [1, 2] }, variables: { seed: 's' }, attempt: 2 },
    );
    const r = await run(exec, s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.logs.stdout, 'done\n');
    assert.deepEqual(r.result.output, { n: 42, input: { items: [1, 2] }, job: s.jobId, attempt: 2, seed: 's', missing: null });
    assert.equal(r.result.condition, true);
    assert.deepEqual(r.result.variablesSet, { counter: '41', obj: '{"a": [1, 2]}' });
  });

  test('node: require("cronium") output, condition, variables', async () => {
    const s = spec(
      'node',
      [
        "const cronium = require('cronium');",
        "cronium.setVariable('k', 'v1');",
        "cronium.setVariable('num', 7);",
        "cronium.output({ got: cronium.getVariable('k'), input: cronium.input(), name: cronium.event().name });",
        'cronium.setCondition(false);',
        "try { cronium.setVariable('../x', 1) } catch (e) { console.error('rejected') }",
        "console.log('node ok');",
      ].join('\n'),
      targetOf(A),
      { input: 'text input' },
    );
    const r = await run(exec, s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.logs.stdout, 'node ok\n');
    assert.equal(r.logs.stderr, 'rejected\n');
    assert.deepEqual(r.result.output, { got: 'v1', input: 'text input', name: 'ssh test' });
    assert.equal(r.result.condition, false);
    assert.deepEqual(r.result.variablesSet, { k: 'v1', num: '7' });
  });

  test('non-zero exit → failed with the exit code; non-JSON output kept as text', async () => {
    const r = await run(exec, spec('bash', 'cronium_output "plain text"\nexit 3', targetOf(A)));
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.exitCode, 3);
    assert.equal(r.result.error, 'exit code 3');
    assert.equal(r.result.output, 'plain text');
  });

  test('logs arrive while the script still runs', async () => {
    let firstAt = 0;
    const r = await run(exec, spec('bash', 'echo first; sleep 1.5; echo second >&2', targetOf(A)), {
      onLog(stream, text) {
        if (stream === 'stdout' && text.includes('first') && !firstAt) firstAt = performance.now();
      },
    });
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.logs.stdout, 'first\n');
    assert.equal(r.logs.stderr, 'second\n');
    assert.ok(firstAt > 0 && r.endedAt - firstAt > 1000, `first line logged ${(r.endedAt - firstAt).toFixed(0)} ms before the end`);
  });

  test('environment values reach the script byte for byte (quotes, newlines, $, backticks)', async () => {
    const env = {
      QUOTES: `it's "quoted" '' \\ end`,
      NEWLINES: 'line1\nline2\n',
      DOLLAR: '$(id) ${HOME} `id` $$ ;&|<>*?',
      EMPTY: '',
    };
    const script = Object.keys(env)
      .map((k) => `printf '%s' "$${k}" > "$CRONIUM_JOB_DIR/variables-set/${k}"`)
      .join('\n');
    const r = await run(exec, spec('bash', script, targetOf(A), { env }));
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.deepEqual(r.result.variablesSet, env);
  });

  test('password authentication', async () => {
    const r = await run(exec, spec('bash', 'id -un', targetOf(A, { privateKey: '', password: A.password })));
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr + r.logs.system);
    assert.equal(r.logs.stdout, `${A.username}\n`);
  });

  test('a wrong key gives a clear authentication error', async () => {
    // users[1]'s key is valid, but not authorized for users[0].
    const r = await run(exec, spec('bash', 'echo should-not-run', targetOf(A, { privateKey: A.users[1]!.privateKey })));
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.error, `authentication failed for user ${A.username} on 127.0.0.1:${A.port}`);
    assert.equal(r.logs.system, r.result.error + '\n');
    assert.equal(r.logs.stdout, '');
    assert.equal(r.started, 0);
  });

  test('a wrong password gives a clear authentication error', async () => {
    const r = await run(exec, spec('bash', 'true', targetOf(A, { privateKey: '', password: 'not-the-password' })));
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.error, `authentication failed for user ${A.username} on 127.0.0.1:${A.port}`);
  });

  test('a server that is down → failed with ECONNREFUSED, not a throw', async () => {
    const port = await closedPort();
    const r = await run(exec, spec('bash', 'true', targetOf(A, { port })));
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.error, `cannot connect to 127.0.0.1:${port}: ECONNREFUSED`);
    assert.equal(r.started, 0);
  });

  test('no user string reaches a shell line: names like `foo;uptime` run nothing', async () => {
    const marker = `${A.tmpDir}/injected-${randomUUID()}`;
    const inject = [`;touch ${marker};`, `$(touch ${marker})`, `\`touch ${marker}\``, `'; touch ${marker}; '`, `\ntouch ${marker}\n`];
    const s = spec(
      'bash',
      [
        'cd "$CRONIUM_JOB_DIR"',
        "touch 'foo;uptime' 'x$(uptime)' \"$TMPDIR/foo;uptime-$$\"",
        "touch \"variables-set/foo;uptime\" 'variables-set/$(uptime)'",
        "mkdir 'dir;uptime' && touch 'dir;uptime/a;b'",
        'ls -1 | grep uptime',
        'rm -f "$TMPDIR/foo;uptime-$$"',
        'printf "%s" "$INJECT_0" > variables-set/env0',
      ].join('\n'),
      targetOf(A),
      {
        env: { INJECT_0: inject[0]!, INJECT_1: inject[1]!, INJECT_2: inject[2]!, INJECT_3: inject[3]!, INJECT_4: inject[4]!, 'A;touch': 'x' },
        variables: { v1: inject[1]!, v2: inject[3]!, 'bad;key': 'x' },
        input: { cmd: inject[0]!, other: inject[1]! },
        eventName: inject[3]!,
      },
    );
    const r = await run(exec, s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr + r.logs.system);
    assert.equal(r.logs.stdout, 'dir;uptime\nfoo;uptime\nx$(uptime)\n');
    assert.doesNotMatch(r.logs.stdout + r.logs.stderr, /load average/);
    assert.deepEqual(r.result.variablesSet, { env0: inject[0] }, 'files with invalid names in variables-set are ignored');
    assert.match(r.logs.system, /skipped variables with invalid keys: bad;key/);
    assert.match(r.logs.system, /skipped environment variables with invalid names: A;touch/);
    assert.equal(existsSync(marker), false, 'no injected command ran');
  });

  test('a planted symlink is not followed when reading results', async () => {
    const s = spec('bash', 'ln -s /etc/hostname "$CRONIUM_JOB_DIR/output"\nln -s /etc/passwd "$CRONIUM_JOB_DIR/variables-set/pw"', targetOf(A));
    const r = await run(exec, s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.result.output, undefined);
    assert.deepEqual(r.result.variablesSet, {});
    assert.match(r.logs.system, /output is a symlink; ignored/);
  });

  test('slow ctx.log applies backpressure and loses nothing', async () => {
    const r = await run(exec, spec('bash', 'seq 1 100000; echo end >&2', targetOf(A)), { logDelayMs: 2 });
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    const expected = Array.from({ length: 100000 }, (_, i) => `${i + 1}\n`).join('');
    assert.equal(r.logs.stdout.length, expected.length);
    assert.equal(r.logs.stdout, expected);
    assert.equal(r.logs.stderr, 'end\n');
  });

  test('a missing interpreter is an ordinary failure', async () => {
    const r = await run(exec, spec('python', 'print(1)', targetOf(A), { env: { PATH: '/nonexistent' } }));
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.exitCode, 127);
    assert.match(r.logs.stderr, /python3.*not found/);
  });

  test('fingerprintOf matches ssh-keygen -l -E sha256', async () => {
    const pub = (await readFile(`${A.dir}/ssh_host_ed25519_key.pub`, 'utf8')).split(' ');
    assert.equal(fingerprintOf(Buffer.from(pub[1]!, 'base64')), A.hostKeyFingerprint);
    assert.equal(keyTypeOf(Buffer.from(pub[1]!, 'base64')), 'ssh-ed25519');
    assert.equal(keyTypeOf(Buffer.from('nonsense')), '');
    assert.match(A.hostKeyFingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  test('normalizeFingerprint, isSafeRemoteDir, shellQuote', () => {
    const fp = A.hostKeyFingerprint;
    assert.equal(normalizeFingerprint(` ${fp}= `), fp);
    assert.equal(normalizeFingerprint(fp.slice(7)), '');
    assert.equal(normalizeFingerprint('MD5:aa:bb'), '');
    assert.ok(isSafeRemoteDir('/tmp/cronium-job.Ab12Cd34Ef'));
    for (const bad of ['tmp/cronium-job.x', '/tmp/../etc/cronium-job.x', '/tmp/cronium-job.x;id', '/tmp/x', '/tmp//cronium-job.x', '/tmp/cronium-job.a b', '/tmp/$(id)/cronium-job.x']) {
      assert.equal(isSafeRemoteDir(bad), false, bad);
    }
    assert.equal(shellQuote(`a'b`), `'a'\\''b'`);
  });
});

describe('host key pinning, session limits (server B)', { timeout: 60_000 }, () => {
  test('a changed host key is refused before authentication', async () => {
    const exec = executor();
    const pinned = B.hostKeyFingerprint;
    const first = await run(exec, spec('bash', 'echo ok', targetOf(B)));
    assert.equal(first.result.outcome, 'succeeded', first.logs.stderr + first.logs.system);

    await B.regenerateHostKey(); // also drops the pooled connection
    const logFrom = B.log().length;
    const presented = B.hostKeyFingerprint;
    assert.notEqual(presented, pinned);

    const r = await run(exec, spec('bash', 'echo should-not-run', targetOf(B, { hostKeyFingerprint: pinned })));
    assert.equal(r.result.outcome, 'failed');
    assert.equal(
      r.result.error,
      `host key changed for 127.0.0.1:${B.port}: expected ${pinned}, got ${presented} (ssh-ed25519); refused before authentication`,
    );
    assert.equal(r.started, 0);
    assert.equal(r.logs.stdout, '');
    await sleep(200); // let sshd write its log
    const log = B.log().slice(logFrom);
    assert.match(log, /Connection from 127\.0\.0\.1/, 'the connection reached sshd');
    assert.doesNotMatch(log, /Accepted|Failed|Postponed|Invalid user|authenticat|userauth/i, 'no authentication attempt');

    const again = await run(exec, spec('bash', 'echo ok', targetOf(B, { hostKeyFingerprint: presented })));
    assert.equal(again.result.outcome, 'succeeded', again.logs.system);
    assert.equal(again.logs.stdout, 'ok\n');
  });

  test('a channel the server refuses (its MaxSessions 2 is below the pool cap) fails that job only', async () => {
    const pool = new SshPool({ maxConnectionsPerServer: 1 });
    const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
    const slow = run(e, spec('bash', 'sleep 1; echo slow-done', targetOf(B)));
    for (let i = 0; i < 100 && pool.stats().channels < 2; i++) await sleep(20); // SFTP + the slow job's exec
    const refused = await run(e, spec('bash', 'echo hi', targetOf(B)));
    assert.equal(refused.result.outcome, 'failed');
    assert.match(refused.result.error, new RegExp(`^cannot run a command on 127\\.0\\.0\\.1:${B.port}: .*open failed`, 'i'));
    const r = await slow;
    assert.equal(r.result.outcome, 'succeeded', r.logs.system);
    assert.equal(r.logs.stdout, 'slow-done\n');
    const stats = pool.stats();
    await pool.close();
    assert.equal(stats.connects, 1, 'the shared connection was kept');
    assert.equal(stats.dropped, 0);
  });

  test('a target without a valid pinned key is refused', async () => {
    const r = await run(executor(), spec('bash', 'true', targetOf(B, { hostKeyFingerprint: '' })));
    assert.equal(r.result.outcome, 'failed');
    assert.match(r.result.error, /no valid pinned host key for 127\.0\.0\.1:\d+/);
  });
});

describe('timeout and cancel (server C)', { timeout: 120_000 }, () => {
  test('timeout → timed_out; the process group and the folder are gone', async () => {
    const exec = executor({ stopGraceSeconds: 2 });
    const s = spec('bash', 'echo start; sleep 300 & sleep 200', targetOf(C), { timeoutSeconds: 2 });
    const r = await run(exec, s);
    const elapsed = r.endedAt - r.startedAt;
    assert.equal(r.result.outcome, 'timed_out');
    assert.equal(r.result.error, 'timed out after 2s');
    assert.equal(r.result.exitCode, 143, 'killed by SIGTERM');
    assert.equal(r.logs.stdout, 'start\n');
    assert.ok(elapsed >= 2000 && elapsed < 5000, `took ${elapsed.toFixed(0)} ms`);
    await assertNothingLeft(C);
  });

  test('cancel sends SIGTERM first: the script can clean up', async () => {
    const exec = executor({ stopGraceSeconds: 30 });
    const ac = new AbortController();
    let abortedAt = 0;
    const s = spec('bash', "trap 'echo got TERM >&2; exit 0' TERM\necho ready\nsleep 60 & wait", targetOf(C));
    const r = await run(exec, s, {
      signal: ac.signal,
      onLog(stream, text) {
        if (stream === 'stdout' && text.includes('ready') && !abortedAt) {
          abortedAt = performance.now();
          ac.abort();
        }
      },
    });
    const took = r.endedAt - abortedAt;
    assert.equal(r.result.outcome, 'cancelled');
    assert.equal(r.result.error, 'cancelled');
    assert.equal(r.logs.stderr, 'got TERM\n');
    assert.ok(took < 15_000, `stopped by SIGTERM, not after the 30 s grace period (took ${took.toFixed(0)} ms)`);
    await assertNothingLeft(C);
  });

  test('cancel escalates to SIGKILL after the grace period', async () => {
    const exec = executor({ stopGraceSeconds: 1 });
    const ac = new AbortController();
    let abortedAt = 0;
    const s = spec('bash', "trap '' TERM\necho ready\nwhile :; do sleep 0.2; done", targetOf(C));
    const r = await run(exec, s, {
      signal: ac.signal,
      onLog(stream, text) {
        if (stream === 'stdout' && text.includes('ready') && !abortedAt) {
          abortedAt = performance.now();
          ac.abort();
        }
      },
    });
    const took = r.endedAt - abortedAt;
    assert.equal(r.result.outcome, 'cancelled');
    assert.equal(r.result.exitCode, 137, 'killed by SIGKILL');
    assert.ok(took >= 1000 && took < 5000, `stopped ${took.toFixed(0)} ms after cancel`);
    await assertNothingLeft(C);
  });

  test('processes a finished job leaves in its group are killed', async () => {
    const r = await run(executor(), spec('bash', 'sleep 300 &\nsleep 301 </dev/null >/dev/null 2>&1 &\necho done', targetOf(C)));
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.logs.stdout, 'done\n');
    assert.ok(r.ms < 10_000);
    await assertNothingLeft(C);
  });

  test('a folder the job made read-only is still removed', async () => {
    const r = await run(executor(), spec('bash', 'mkdir -p "$CRONIUM_JOB_DIR/ro/inner" && touch "$CRONIUM_JOB_DIR/ro/inner/f" && chmod 500 "$CRONIUM_JOB_DIR/ro" "$CRONIUM_JOB_DIR/ro/inner"\nexit 4', targetOf(C)));
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.exitCode, 4);
    assert.doesNotMatch(r.logs.system, /could not remove/);
    await assertNothingLeft(C);
  });

  test('cancelled before start → nothing runs', async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await run(executor(), spec('bash', 'echo hi', targetOf(C)), { signal: ac.signal });
    assert.equal(r.result.outcome, 'cancelled');
    assert.equal(r.started, 0);
    await assertNothingLeft(C);
  });
});

describe('login shell quirks (server C)', { timeout: 60_000 }, () => {
  test('output from ~/.bashrc (sourced by bash for ssh commands) does not confuse the setup', async () => {
    const bashrc = `/home/${C.username}/.bashrc`;
    const saved = await readFile(bashrc, 'utf8').catch(() => '');
    await writeFile(bashrc, 'echo noise-from-bashrc\necho /tmp/fake-dir\n' + saved);
    try {
      const r = await run(executor(), spec('bash', 'echo hi', targetOf(C)));
      assert.equal(r.result.outcome, 'succeeded', r.logs.system);
      assert.equal(r.logs.stdout, 'hi\n');
    } finally {
      await writeFile(bashrc, saved);
    }
    await assertNothingLeft(C);
  });
});

describe('SshPool (server C)', { timeout: 120_000 }, () => {
  // Speed is the ssh-job benchmark's to measure (a timed assert fails on a loaded machine); this shows the reuse.
  test('later jobs reuse the first connection: one connect for six jobs', async (t) => {
    const fresh: number[] = [];
    const pooled: number[] = [];
    const job = () => spec('bash', 'true', targetOf(C));
    for (let i = 0; i < 5; i++) {
      // Fresh: a new pool per job, so each pays connect + auth + SFTP start.
      const pool = new SshPool();
      const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
      const r = await run(e, job());
      assert.equal(r.result.outcome, 'succeeded', r.logs.system);
      fresh.push(r.ms);
      await pool.close();
    }
    const pool = new SshPool();
    const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
    const first = await run(e, job());
    assert.equal(first.result.outcome, 'succeeded');
    for (let i = 0; i < 5; i++) {
      const r = await run(e, job());
      assert.equal(r.result.outcome, 'succeeded', r.logs.system);
      pooled.push(r.ms);
    }
    const stats = pool.stats(targetOf(C));
    await pool.close();
    assert.equal(stats.connects, 1, 'one connection for six jobs');
    assert.equal(stats.acquires, 6);
    assert.equal(stats.reuses, 5);
    t.diagnostic(`fresh connection: median ${median(fresh).toFixed(1)} ms (${fresh.map((x) => x.toFixed(0)).join(', ')})`);
    t.diagnostic(`pooled connection: median ${median(pooled).toFixed(1)} ms (${pooled.map((x) => x.toFixed(0)).join(', ')})`);
    await assertNothingLeft(C);
  });

  test('caps: connections per server and jobs per connection', async () => {
    // 3 channels per connection = SFTP + spare + 1 job; 2 connections → 2 jobs at once.
    const pool = new SshPool({ maxConnectionsPerServer: 2, maxChannelsPerConnection: 3 });
    const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
    let peakLeases = 0;
    let peakConnections = 0;
    let peakChannels = 0;
    const jobs = Array.from({ length: 5 }, () => run(e, spec('bash', 'sleep 0.4', targetOf(C))));
    // Sample the pool while the jobs run.
    const sampler = setInterval(() => {
      const s = pool.stats();
      peakLeases = Math.max(peakLeases, s.leases);
      peakConnections = Math.max(peakConnections, s.connections + s.connecting);
      peakChannels = Math.max(peakChannels, s.channels);
    }, 10);
    const t0 = performance.now();
    const results = await Promise.all(jobs);
    const took = performance.now() - t0;
    clearInterval(sampler);
    for (const r of results) assert.equal(r.result.outcome, 'succeeded', r.logs.system);
    const stats = pool.stats();
    await pool.close();
    assert.equal(stats.connects, 2);
    assert.equal(peakConnections, 2);
    assert.equal(peakLeases, 2);
    assert.ok(peakChannels <= 2 * 3, `at most 3 channels per connection (saw ${peakChannels} on 2)`);
    assert.ok(took >= 3 * 400, `5 jobs of 0.4 s, 2 at a time, took ${took.toFixed(0)} ms`);
    await assertNothingLeft(C);
  });

  test('a dead connection is dropped, not reused', async () => {
    const pool = new SshPool();
    const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
    assert.equal((await run(e, spec('bash', 'true', targetOf(C)))).result.outcome, 'succeeded');
    assert.equal(pool.stats().connections, 1);
    await C.killConnections();
    for (let i = 0; i < 50 && pool.stats().connections > 0; i++) await sleep(20);
    assert.equal(pool.stats().connections, 0, 'the closed connection left the pool');
    const r = await run(e, spec('bash', 'echo again', targetOf(C)));
    assert.equal(r.result.outcome, 'succeeded', r.logs.system);
    const stats = pool.stats();
    await pool.close();
    assert.equal(stats.connects, 2);
    assert.equal(stats.dropped, 1);
    await assertNothingLeft(C);
  });

  test('an unresponsive connection fails its health check and is replaced', async () => {
    const pool = new SshPool({ healthCheckAfterIdleMs: 0, healthCheckTimeoutMs: 300 });
    const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
    assert.equal((await run(e, spec('bash', 'true', targetOf(C)))).result.outcome, 'succeeded');
    const frozen = await C.connectionPids();
    assert.ok(frozen.length >= 1);
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    try {
      const r = await run(e, spec('bash', 'echo fresh', targetOf(C)));
      assert.equal(r.result.outcome, 'succeeded', r.logs.system);
      assert.equal(r.logs.stdout, 'fresh\n');
      const stats = pool.stats();
      assert.equal(stats.connects, 2);
      assert.equal(stats.dropped, 1);
    } finally {
      for (const pid of frozen) process.kill(pid, 'SIGKILL');
      await pool.close();
    }
    await assertNothingLeft(C);
  });

  test('idle connections close', async () => {
    const pool = new SshPool({ idleTimeoutMs: 300 });
    const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
    assert.equal((await run(e, spec('bash', 'true', targetOf(C)))).result.outcome, 'succeeded');
    assert.equal(pool.stats().connections, 1);
    await sleep(700);
    assert.equal(pool.stats().connections, 0);
    await pool.close();
  });

  test('reconnects back off after failures; callers meanwhile share one attempt', async () => {
    const port = await closedPort();
    const pool = new SshPool({ backoffInitialMs: 400, backoffMaxMs: 1000 });
    const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
    const target = targetOf(C, { port });
    const first = await run(e, spec('bash', 'true', target));
    assert.equal(first.result.error, `cannot connect to 127.0.0.1:${port}: ECONNREFUSED`);
    const [second, third] = await Promise.all([run(e, spec('bash', 'true', target)), run(e, spec('bash', 'true', target))]);
    assert.equal(second.result.error, first.result.error);
    assert.equal(third.result.error, first.result.error);
    assert.ok(second.ms >= 300, `second attempt waited ${second.ms.toFixed(0)} ms`);
    const stats = pool.stats(target);
    assert.equal(stats.connects, 2, 'the two callers in the backoff window shared one attempt');
    assert.equal(stats.connectFailures, 2);
    await pool.close();
  });

  test('close() closes every connection; later jobs fail cleanly', async () => {
    const pool = new SshPool();
    const e = new SshExecutor({ runtimeDir: RUNTIME_DIR, pool });
    await Promise.all([run(e, spec('bash', 'true', targetOf(C))), run(e, spec('bash', 'true', targetOf(A)))]);
    assert.equal(pool.stats().connections, 2);
    await pool.close();
    assert.equal(pool.stats().connections, 0);
    const r = await run(e, spec('bash', 'true', targetOf(C)));
    assert.equal(r.result.outcome, 'failed');
    assert.match(r.result.error, /pool closed/);
  });
});
