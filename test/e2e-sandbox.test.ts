// Hostile scripts through the whole product (API → control plane → agent →
// Docker): each is contained, and the job records why it ended. Beside the
// executor's own tests (agent/test/docker-executor.test.ts: hardening flags,
// OOM, timeout, read-only root, no network, planted symlinks) these show what
// a user sees on the job.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, containersGone } from './harness.ts';

const LOG_LIMIT = 1024 * 1024;

describe('sandbox: hostile scripts are contained, the reason is on the job', { concurrency: 3 }, () => {
  let stack: Stack;
  before(async () => {
    stack = new Stack({ env: { CRONIUM_JOB_LOG_LIMIT_BYTES: String(LOG_LIMIT) } });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
  });

  async function runScript(name: string, script: string, extra: Record<string, unknown> = {}, timeoutMs = 120_000) {
    const event = await stack.createEvent({ name, type: 'EVENT_TYPE_BASH', script, timeoutSeconds: 60, ...extra });
    const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id, timeoutMs);
    const messages = await stack.watchJob(job.id);
    const text = (stream: string) => messages.filter((m) => m.log?.stream === stream).map((m) => m.log.data).join('');
    assert.deepEqual(await containersGone(job.id), [], 'its container is gone');
    return { job, stdout: text('LOG_STREAM_STDOUT'), stderr: text('LOG_STREAM_STDERR'), system: text('LOG_STREAM_SYSTEM') };
  }

  test('a fork bomb hits the pids limit; the job ends (timed out) and the next job runs', async () => {
    const { job } = await runScript('fork bomb', 'bomb() { bomb | bomb & }; bomb; sleep 30', { timeoutSeconds: 8 });
    assert.equal(job.status, 'JOB_STATUS_TIMED_OUT', JSON.stringify(job));
    assert.match(job.error, /timed out after 8s/);
    const next = await runScript('after the bomb', 'echo alive');
    assert.equal(next.job.status, 'JOB_STATUS_SUCCEEDED');
    assert.equal(next.stdout, 'alive\n');
  });

  test('a memory bomb is OOM-killed at its limit: failed, oomKilled, the limit named', async () => {
    const { job } = await runScript('memory bomb', 'python3 -c "\nx = []\nwhile True: x.append(bytearray(16 * 1024 * 1024))"', { memoryMb: 64 });
    assert.equal(job.status, 'JOB_STATUS_FAILED', JSON.stringify(job));
    assert.equal(job.oomKilled, true);
    assert.match(job.error, /out of memory \(limit 64 MiB\)/);
  });

  test('no outbound network unless the event asks: the connection fails, the exit code says so', async () => {
    const script = [
      'python3 - <<\'EOF\'',
      'import socket, sys',
      'try:',
      '    socket.create_connection(("1.1.1.1", 53), timeout=3)',
      '    print("reached the internet")',
      'except OSError as error:',
      '    print("blocked:", error)',
      '    sys.exit(42)',
      'EOF',
    ].join('\n');
    const { job, stdout } = await runScript('phone home', script);
    assert.equal(job.status, 'JOB_STATUS_FAILED');
    assert.equal(job.exitCode, 42);
    assert.match(stdout, /^blocked: /);
  });

  test('writes to /, mount, and setuid binaries get nothing: read-only root, no capabilities, no new privileges', async () => {
    const script = [
      'touch /evil 2>&1 || echo "write refused"',
      'mount -t tmpfs none /mnt 2>&1 || echo "mount refused"',
      'grep -E "^(NoNewPrivs|CapEff)" /proc/self/status',
      // su is setuid root; with no-new-privileges the bit is ignored, so it cannot become root.
      'ls -l /bin/su | cut -c1-10',
      'if su root -c "id -u" </dev/null >/dev/null 2>&1; then echo "became root"; fi',
      'python3 -c "import os; os.setuid(0)" 2>&1 | tail -n 1',
      'echo "uid $(id -u)"',
    ].join('\n');
    const { job, stdout } = await runScript('escape attempts', script);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.match(stdout, /Read-only file system\nwrite refused\n/);
    assert.match(stdout, /mount refused\n/);
    assert.match(stdout, /NoNewPrivs:\s+1\n/);
    assert.match(stdout, /CapEff:\s+0000000000000000\n/);
    assert.match(stdout, /-rwsr-xr-x\n/, 'the setuid bit is there');
    assert.doesNotMatch(stdout, /became root/);
    assert.match(stdout, /PermissionError/);
    assert.match(stdout, /uid 65534\n$/);
  });

  test('a symlink planted as the output file is not followed: the host file is not read', async () => {
    const { job } = await runScript('symlinked output', 'ln -sf /etc/shadow "$CRONIUM_JOB_DIR/output.json"; ln -sf /etc/passwd "$CRONIUM_JOB_DIR/output"; echo planted');
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    assert.doesNotMatch(JSON.stringify(job.output ?? null), /root:/);
  });

  test('1 GB of output: the log stops at the cap with a marker, the job still ends with its exit code', async () => {
    const { job, stdout, system } = await runScript('firehose', 'head -c 1073741824 /dev/zero | tr "\\0" "a"; exit 3', {}, 240_000);
    assert.equal(job.status, 'JOB_STATUS_FAILED', JSON.stringify(job));
    assert.equal(job.exitCode, 3);
    assert.equal(job.logTruncated, true);
    assert.ok(Buffer.byteLength(stdout) <= LOG_LIMIT, `stored ${Buffer.byteLength(stdout)} bytes`);
    assert.match(system, /log truncated: the job wrote more than 1048576 bytes/);
  });

  test('an endless sleep is stopped at its timeout: timed_out with the limit named', async () => {
    const { job } = await runScript('sleeps forever', 'echo going to sleep; sleep infinity', { timeoutSeconds: 3 });
    assert.equal(job.status, 'JOB_STATUS_TIMED_OUT');
    assert.match(job.error, /timed out after 3s/);
  });
});
