// DockerExecutor against the real Docker engine (image cronium-test/base:bookworm,
// or CRONIUM_TEST_IMAGE). Tests run concurrently; each has its own job id
// and its own work root, so they never touch other suites' containers.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';
import { DockerExecutor, removeLeftoverContainers } from '../src/executors/docker.ts';
import type { DockerExecutorOptions } from '../src/executors/docker.ts';
import type { ExecutionResult, JobKind, JobSpec, LogStreamName, RunContext } from '../src/job.ts';

const IMAGE = process.env.CRONIUM_TEST_IMAGE ?? 'cronium-test/base:bookworm';
const RUNTIME_DIR = fileURLToPath(new URL('../runtime', import.meta.url));
const MiB = 1024 * 1024;
const docker = new Dockerode();
const roots: string[] = [];

function spec(kind: JobKind, script: string, extra: Partial<JobSpec> = {}): JobSpec {
  const jobId = `test-docker-${randomUUID()}`;
  return {
    jobId,
    attempt: 1,
    eventId: 'evt-1',
    runId: 'run-1',
    eventName: 'docker test',
    kind,
    script,
    env: {},
    timeoutSeconds: 30,
    input: null,
    variables: {},
    memoryBytes: 0,
    cpus: 0,
    network: false,
    ...extra,
  };
}

interface Run {
  result: ExecutionResult;
  logs: Record<LogStreamName, string>;
  started: number;
  /** Date.now() when ctx.started() was called. */
  startedAt: number;
  workRoot: string;
}

async function run(
  s: JobSpec,
  opts: Partial<DockerExecutorOptions> & {
    signal?: AbortSignal;
    onLog?: (stream: LogStreamName, text: string) => void;
    logDelayMs?: number;
  } = {},
): Promise<Run> {
  const workRoot = await mkdtemp(join(tmpdir(), 'cronium-docker-test-'));
  roots.push(workRoot);
  const exec = new DockerExecutor({
    docker,
    images: { bash: IMAGE, python: IMAGE, node: IMAGE },
    workRoot,
    runtimeDir: RUNTIME_DIR,
    ...opts,
  });
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
      startedAt = Date.now();
    },
  };
  const result = await exec.run(s, ctx);
  await exec.close(); // the container and folder are removed after the result
  return { result, logs, started, startedAt, workRoot };
}

async function containersOf(jobId: string): Promise<Dockerode.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`cronium.job=${jobId}`] } });
}

async function assertCleanedUp(r: Run, jobId: string): Promise<void> {
  assert.deepEqual(await readdir(r.workRoot), [], 'per-job folder removed');
  assert.equal((await containersOf(jobId)).length, 0, 'container removed');
}

describe('DockerExecutor', { concurrency: 4, timeout: 120_000 }, () => {
  before(async () => {
    try {
      await docker.getImage(IMAGE).inspect();
    } catch (err) {
      throw new Error(`test image ${IMAGE} is missing; build it first (${(err as Error).message})`);
    }
  });
  after(async () => {
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });

  test('bash: output lines, separate streams, cronium_output, input and event', async () => {
    const s = spec(
      'bash',
      [
        'echo one; echo two; echo three',
        'echo oops >&2',
        'test "$(id -u)" = 65534 || echo "not nobody" >&2',
        'cronium_input > /tmp/in.json && grep -q \'"x":1\' /tmp/in.json && echo input-ok',
        'cronium_event | grep -q \'"jobId"\' && echo event-ok',
        'echo "greeting=$(cronium_get_variable greeting)"',
        'cronium_set_variable "bad/key" x 2>/dev/null || echo bad-key-rejected',
        'cronium_output \'{"n": 3}\'',
      ].join('\n'),
      { input: { x: 1 }, variables: { greeting: 'hello world' } },
    );
    const r = await run(s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr + r.logs.system);
    assert.equal(r.result.exitCode, 0);
    assert.equal(
      r.logs.stdout,
      'one\ntwo\nthree\ninput-ok\nevent-ok\ngreeting=hello world\nbad-key-rejected\n',
    );
    assert.equal(r.logs.stderr, 'oops\n');
    assert.deepEqual(r.result.output, { n: 3 });
    assert.equal(r.result.condition, undefined);
    assert.deepEqual(r.result.variablesSet, {});
    assert.equal(r.started, 1);
    await assertCleanedUp(r, s.jobId);
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
      { input: { items: [1, 2] }, variables: { seed: 's' }, attempt: 2 },
    );
    const r = await run(s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.logs.stdout, 'done\n');
    assert.deepEqual(r.result.output, {
      n: 42,
      input: { items: [1, 2] },
      job: s.jobId,
      attempt: 2,
      seed: 's',
      missing: null,
    });
    assert.equal(r.result.condition, true);
    assert.deepEqual(r.result.variablesSet, { counter: '41', obj: '{"a": [1, 2]}' });
    await assertCleanedUp(r, s.jobId);
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
      { input: 'text input' },
    );
    const r = await run(s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.logs.stdout, 'node ok\n');
    assert.equal(r.logs.stderr, 'rejected\n');
    assert.deepEqual(r.result.output, { got: 'v1', input: 'text input', name: 'docker test' });
    assert.equal(r.result.condition, false);
    assert.deepEqual(r.result.variablesSet, { k: 'v1', num: '7' });
    await assertCleanedUp(r, s.jobId);
  });

  test('non-zero exit → failed with the exit code; non-JSON output kept as text', async () => {
    const s = spec('bash', 'cronium_output "plain text"\nexit 3');
    const r = await run(s);
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.exitCode, 3);
    assert.equal(r.result.error, 'exit code 3');
    assert.equal(r.result.output, 'plain text');
    assert.equal(r.result.oomKilled, false);
    await assertCleanedUp(r, s.jobId);
  });

  test('timeout → timed_out, container and folder removed', async () => {
    const s = spec('bash', 'echo start; sleep 60', { timeoutSeconds: 2 });
    const r = await run(s);
    const elapsed = Date.now() - r.startedAt; // the limit counts from the start, not from create
    assert.equal(r.result.outcome, 'timed_out');
    assert.equal(r.result.error, 'timed out after 2s');
    assert.equal(r.logs.stdout, 'start\n');
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
    await assertCleanedUp(r, s.jobId);
  });

  test('memory hog → oomKilled', async () => {
    const s = spec('python', 'data = b"x" * (1 << 30)\nprint("survived")', { memoryBytes: 64 * MiB });
    const r = await run(s);
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.oomKilled, true);
    assert.equal(r.result.error, 'out of memory (limit 64 MiB)');
    assert.equal(r.logs.stdout, '');
    await assertCleanedUp(r, s.jobId);
  });

  test('hardening visible in docker inspect while running, no job variable in its config; cancel stops it', async () => {
    const secret = `s3cret-${randomUUID()}`;
    const s = spec('bash', 'echo "ready $API_TOKEN"; sleep 60', { memoryBytes: 128 * MiB, cpus: 0.5, env: { API_TOKEN: secret }, secrets: { API_TOKEN: secret } });
    const ac = new AbortController();
    let inspected: Dockerode.ContainerInspectInfo | undefined;
    let inspectError: unknown;
    const r = await run(s, {
      signal: ac.signal,
      stopGraceSeconds: 1,
      onLog(stream, text) {
        if (stream !== 'stdout' || !text.includes('ready') || inspected || inspectError) return;
        (async () => {
          const [info] = await containersOf(s.jobId);
          assert.ok(info, 'running container found by label');
          inspected = await docker.getContainer(info.Id).inspect();
        })()
          .catch((err: unknown) => (inspectError = err))
          .finally(() => ac.abort());
      },
    });
    if (inspectError) throw inspectError;
    assert.ok(inspected);
    const hc = inspected.HostConfig;
    assert.deepEqual(hc.CapDrop, ['ALL']);
    assert.ok(hc.SecurityOpt?.includes('no-new-privileges'));
    assert.ok(!hc.SecurityOpt?.some((o: string) => o.includes('unconfined')));
    assert.equal(hc.ReadonlyRootfs, true);
    assert.equal(hc.NetworkMode, 'none');
    assert.equal(hc.Privileged, false);
    assert.equal(hc.PidsLimit, 256);
    assert.equal(hc.LogConfig?.Type, 'none', 'output is not also written to the host disk');
    assert.equal(hc.Memory, 128 * MiB);
    assert.equal(hc.MemorySwap, 128 * MiB);
    assert.equal(hc.NanoCpus, 500_000_000);
    assert.equal(inspected.Config.User, '65534:65534');
    assert.equal(inspected.Config.Labels['cronium.job'], s.jobId);
    assert.equal(inspected.Config.Labels['cronium.attempt'], '1');
    assert.ok(!hc.Binds?.some((b) => b.includes('docker.sock')));
    assert.ok(hc.Binds?.some((b) => b.endsWith(':/cronium/lib:ro')));
    assert.ok(!JSON.stringify(inspected.Config).includes(secret), 'the secret is not in the container config');
    assert.match(r.logs.stdout, new RegExp(`^ready ${secret}$`, 'm'), 'the job has it');
    assert.equal(r.result.outcome, 'cancelled');
    await assertCleanedUp(r, s.jobId);
  });

  test('cancel sends SIGTERM first: the script can clean up', async () => {
    const s = spec('bash', "trap 'echo got TERM >&2; exit 0' TERM\necho ready\nsleep 60 & wait");
    const ac = new AbortController();
    let abortedAt = 0;
    const r = await run(s, {
      signal: ac.signal,
      stopGraceSeconds: 30,
      onLog(stream, text) {
        if (stream === 'stdout' && text.includes('ready') && !abortedAt) {
          abortedAt = Date.now();
          ac.abort();
        }
      },
    });
    const stoppedAfterMs = Date.now() - abortedAt;
    assert.equal(r.result.outcome, 'cancelled');
    assert.equal(r.result.error, 'cancelled');
    assert.equal(r.logs.stderr, 'got TERM\n');
    assert.ok(stoppedAfterMs < 15_000, `stopped by SIGTERM, not after the 30 s grace period (took ${stoppedAfterMs} ms)`);
    await assertCleanedUp(r, s.jobId);
  });

  test('the supervisor keeps the script as it would run alone: signals, exit codes, any variable name, output ending without a newline', async () => {
    const s = spec(
      'bash',
      [
        "trap 'echo got INT' INT; kill -INT $$",
        'echo "dotted=$(printenv my.var) dir=$dir"',
        'echo "CRONIUM-EXIT-0123 0 0"',
        'printf "CRONIUM-EXIT-"',
        'kill -TERM $$',
      ].join('\n'),
      { env: { 'my.var': 'x y', dir: '/elsewhere' } },
    );
    const r = await run(s);
    assert.equal(r.result.outcome, 'failed', r.logs.stderr + r.logs.system);
    assert.equal(r.result.exitCode, 143, 'killed by SIGTERM, as under tini alone');
    assert.equal(r.logs.stdout, 'got INT\ndotted=x y dir=/elsewhere\nCRONIUM-EXIT-0123 0 0\nCRONIUM-EXIT-');
    assert.equal(r.logs.stderr, '');
    await assertCleanedUp(r, s.jobId);
  });

  test('a job without network joins a sandbox of its own, made ahead and removed after it', async () => {
    const workRoot = await mkdtemp(join(tmpdir(), 'cronium-docker-sandbox-'));
    roots.push(workRoot);
    const exec = new DockerExecutor({ docker, images: { bash: IMAGE, python: IMAGE, node: IMAGE }, workRoot, runtimeDir: RUNTIME_DIR, networkSandboxes: 1, labels: { 'cronium.test-root': workRoot } });
    const sandboxes = () => docker.listContainers({ all: true, filters: { label: ['cronium.network-sandbox=1', `cronium.test-root=${workRoot}`] } });
    const ctx = (onLog: (text: string) => void = () => {}): RunContext => {
      let text = '';
      return { signal: new AbortController().signal, async log(_stream, data) { text += data.toString(); onLog(text); }, started() {} };
    };
    try {
      assert.equal((await exec.run(spec('bash', 'true'), ctx())).outcome, 'succeeded', 'the first job makes its own namespace');
      const deadline = Date.now() + 30_000;
      while (exec.sandboxesReady() < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(exec.sandboxesReady(), 1, 'a sandbox is ready');
      const [ready] = await sandboxes();
      assert.ok(ready);
      const box = await docker.getContainer(ready.Id).inspect();
      assert.equal(box.HostConfig.NetworkMode, 'none');
      assert.deepEqual(box.HostConfig.CapDrop, ['ALL']);
      assert.equal(box.HostConfig.ReadonlyRootfs, true);
      assert.equal(box.Config.User, '65534:65534');

      const s = spec('bash', 'ls /sys/class/net; sleep 60');
      let mode: string | undefined;
      let inspecting: Promise<void> | undefined;
      const r = await exec.run(s, ctx((text) => {
        if (!text.includes('lo') || inspecting) return;
        inspecting = (async () => {
          const [info] = await containersOf(s.jobId);
          const container = docker.getContainer(info!.Id);
          mode = (await container.inspect()).HostConfig.NetworkMode;
          await container.kill();
        })();
      }));
      await inspecting;
      assert.equal(r.exitCode, 137, 'killed once inspected');
      assert.equal(mode, `container:${ready.Id}`, 'it joined the sandbox');
      await exec.cleanedUp();
      assert.ok(!(await sandboxes()).some((c) => c.Id === ready.Id), 'the used sandbox is removed, never given to another job');

      // A sandbox that stopped (an engine restart stops them all) costs the job nothing but the namespace it then makes.
      while (exec.sandboxesReady() < 1 && Date.now() < deadline + 30_000) await new Promise((resolve) => setTimeout(resolve, 50));
      const [stopped] = await sandboxes();
      assert.ok(stopped, 'a sandbox is ready again');
      await docker.getContainer(stopped.Id).kill();
      const after = await exec.run(spec('bash', 'ls /sys/class/net'), ctx());
      assert.equal(after.outcome, 'succeeded', after.error);
    } finally {
      await exec.close();
    }
    assert.equal((await sandboxes()).length, 0, 'close() removes the sandboxes');
  });

  test('an image without bash runs its jobs without the supervisor, as before the supervisor', async () => {
    const noBash = 'cronium-test/no-bash:1';
    execFileSync('docker', ['build', '--network', 'none', '-q', '-t', noBash, '-'], { input: `FROM ${IMAGE}\nUSER root\nRUN rm -f /usr/bin/bash /bin/bash\n` });
    const s = spec('python', 'import os, sys\nprint(os.environ["GREETING"], os.environ["CRONIUM_JOB_DIR"])\nsys.exit(4)', { env: { GREETING: 'hi' } });
    const r = await run(s, { images: { bash: IMAGE, python: noBash, node: IMAGE } });
    assert.equal(r.result.outcome, 'failed', r.logs.stderr + r.logs.system);
    assert.equal(r.result.exitCode, 4);
    assert.equal(r.logs.stdout, 'hi /cronium/job\n');
    await assertCleanedUp(r, s.jobId);
  });

  test('read-only root, writable /tmp, no network', async () => {
    const s = spec(
      'bash',
      [
        'touch /etc/x 2>/dev/null && echo root-writable || echo root-ro',
        'echo hi > /tmp/f && echo tmp-ok',
        'touch /cronium/lib/x 2>/dev/null && echo lib-writable || echo lib-ro',
        'ls /sys/class/net | sort | tr "\\n" " "; echo',
        'grep CapEff /proc/self/status',
      ].join('\n'),
    );
    const r = await run(s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.logs.stdout, 'root-ro\ntmp-ok\nlib-ro\nlo \nCapEff:\t0000000000000000\n');
    await assertCleanedUp(r, s.jobId);
  });

  test('spec.network uses the configured network mode', async () => {
    const s = spec('bash', 'ls /sys/class/net | grep -qv "^lo$" && echo has-network', { network: true });
    const r = await run(s, { networkMode: 'host' }); // no bridge on the test machine
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.logs.stdout, 'has-network\n');
    await assertCleanedUp(r, s.jobId);
  });

  test('slow ctx.log applies backpressure and loses nothing', async () => {
    const s = spec('bash', 'seq 1 100000; echo end >&2');
    const r = await run(s, { logDelayMs: 2 });
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    const expected = Array.from({ length: 100000 }, (_, i) => `${i + 1}\n`).join('');
    assert.equal(r.logs.stdout.length, expected.length);
    assert.equal(r.logs.stdout, expected);
    assert.equal(r.logs.stderr, 'end\n');
    await assertCleanedUp(r, s.jobId);
  });

  test('missing image → clear error naming the image', async () => {
    const s = spec('bash', 'echo hi');
    const r = await run(s, { images: { bash: 'cronium-test/does-not-exist:1', python: IMAGE, node: IMAGE } });
    assert.equal(r.result.outcome, 'failed');
    assert.match(r.result.error, /cronium-test\/does-not-exist:1/);
    assert.equal(r.started, 0);
    assert.deepEqual(await readdir(r.workRoot), []);
  });

  test('a planted symlink is not followed when reading results', async () => {
    const s = spec('bash', 'ln -s /etc/hostname "$CRONIUM_JOB_DIR/output"\nln -s /etc/passwd "$CRONIUM_JOB_DIR/variables-set/pw"');
    const r = await run(s);
    assert.equal(r.result.outcome, 'succeeded', r.logs.stderr);
    assert.equal(r.result.output, undefined);
    assert.deepEqual(r.result.variablesSet, {});
    assert.match(r.logs.system, /symlink/);
    await assertCleanedUp(r, s.jobId);
  });

  test('removeLeftoverContainers removes only the matching labelled containers', async () => {
    const jobId = `test-docker-${randomUUID()}`;
    const c = await docker.createContainer({
      Image: IMAGE,
      Cmd: ['sleep', '60'],
      Labels: { 'cronium.job': jobId, 'cronium.attempt': '1' },
      HostConfig: { NetworkMode: 'none' },
    });
    await c.start();
    assert.equal(await removeLeftoverContainers(docker, { 'cronium.job': jobId }), 1);
    assert.equal((await containersOf(jobId)).length, 0);
  });
});

describe('DockerExecutor with warm containers', { timeout: 180_000 }, () => {
  let workRoot: string;
  let exec: DockerExecutor;
  const warmContainers = () => docker.listContainers({ all: true, filters: { label: ['cronium.warm=1', `cronium.test-root=${workRoot}`] } });

  before(async () => {
    workRoot = await mkdtemp(join(tmpdir(), 'cronium-docker-warm-'));
    exec = new DockerExecutor({
      docker,
      images: { bash: IMAGE, python: IMAGE, node: IMAGE },
      workRoot,
      runtimeDir: RUNTIME_DIR,
      stopGraceSeconds: 30,
      warmContainers: 1,
      labels: { 'cronium.test-root': workRoot },
    });
  });
  after(async () => {
    await exec?.close();
    await rm(workRoot, { recursive: true, force: true });
  });

  async function runIn(s: JobSpec, signal = new AbortController().signal, onLog?: (stream: LogStreamName, text: string) => void) {
    const logs: Record<LogStreamName, string> = { stdout: '', stderr: '', system: '' };
    const result = await exec.run(s, {
      signal,
      async log(stream, data) {
        logs[stream] += data.toString('utf8');
        onLog?.(stream, logs[stream]);
      },
      started() {},
    });
    return { result, logs };
  }
  async function warmedUp(kind: 'bash' | 'python' = 'bash') {
    const deadline = Date.now() + 30_000;
    while (exec.warmReady(kind) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(exec.warmReady(kind), 1, 'a warm container is ready');
  }

  test('after a first job runs cold, the next of the same kind runs in a warm container, with the same environment and results', async () => {
    const script = [
      'echo "dir=$CRONIUM_JOB_DIR"',
      'echo "quote=$TRICKY"',
      'echo "input=$(cronium_input)"',
      'echo "var=$(cronium_get_variable COLOR)"',
      'echo oops >&2',
      'cronium_output \'{"ok": true}\'',
      'cronium_set_condition true',
      'cronium_set_variable SEEN yes',
    ].join('\n');
    const job = (n: number) => spec('bash', script, { env: { TRICKY: `it's "$HOME" \`x\` ${n}` }, input: { n }, variables: { COLOR: 'blue' } });
    const cold = await runIn(job(1));
    assert.equal(cold.result.outcome, 'succeeded', cold.logs.stderr + cold.logs.system);
    assert.match(cold.logs.stdout, /^dir=\/cronium\/job$/m, 'the first ran cold');
    await warmedUp();
    const warm = await runIn(job(2));
    assert.equal(warm.result.outcome, 'succeeded', warm.logs.stderr + warm.logs.system);
    assert.match(warm.logs.stdout, /^dir=\/cronium\/slot\/job-/m, 'the second ran in a warm container');
    assert.match(warm.logs.stdout, /^quote=it's "\$HOME" `x` 2$/m, 'the environment arrives byte for byte');
    assert.match(warm.logs.stdout, /^input=\{"n":2\}$/m);
    assert.match(warm.logs.stdout, /^var=blue$/m);
    assert.equal(warm.logs.stderr, 'oops\n');
    assert.deepEqual(warm.result.output, { ok: true });
    assert.equal(warm.result.condition, true);
    assert.deepEqual(warm.result.variablesSet, { SEEN: 'yes' });
    await warmedUp();
  });

  test('a warm container is hardened like a cold one', async () => {
    await warmedUp();
    const [info] = await warmContainers();
    assert.ok(info, 'a warm container exists');
    const inspected = await docker.getContainer(info.Id).inspect();
    const hc = inspected.HostConfig;
    assert.deepEqual(hc.CapDrop, ['ALL']);
    assert.ok(hc.SecurityOpt?.includes('no-new-privileges'));
    assert.equal(hc.ReadonlyRootfs, true);
    assert.equal(hc.NetworkMode, 'none');
    assert.equal(hc.Privileged, false);
    assert.equal(hc.PidsLimit, 256);
    assert.equal(inspected.Config.User, '65534:65534');
    assert.ok(!hc.Binds?.some((b) => b.includes('docker.sock')));
  });

  test('timeout and cancel (SIGTERM first) work in a warm container', async () => {
    await warmedUp();
    const timedOut = await runIn(spec('bash', 'echo start; sleep 60', { timeoutSeconds: 2 }));
    assert.equal(timedOut.result.outcome, 'timed_out');
    assert.equal(timedOut.result.error, 'timed out after 2s');
    await warmedUp();
    const ac = new AbortController();
    const cancelled = await runIn(spec('bash', "trap 'echo got TERM >&2; exit 0' TERM\necho ready\nsleep 60 & wait"), ac.signal, (stream, text) => {
      if (stream === 'stdout' && text.includes('ready')) ac.abort();
    });
    assert.equal(cancelled.result.outcome, 'cancelled');
    assert.equal(cancelled.logs.stderr, 'got TERM\n');
  });

  test('other limits or languages start cold; close() removes every warm container and folder', async () => {
    const other = await runIn(spec('python', 'import os; print(os.environ["CRONIUM_JOB_DIR"])'));
    assert.equal(other.logs.stdout, '/cronium/job\n', 'a python job did not take the bash container');
    await warmedUp('python');
    await exec.close();
    assert.equal((await warmContainers()).length, 0, 'no warm container left');
    assert.deepEqual(await readdir(workRoot), [], 'no slot folder left');
  });
});
