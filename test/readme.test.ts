// The README's quick start works as written: `npm start` (its launcher, after
// setup) on the default ports, the printed admin token, then the README's curl
// example, verbatim.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TEST_IMAGE, root } from './harness.ts';

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

test('npm start, then the README example, prints the job result', { timeout: 120_000 }, async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.match(readme, /npm start/);
  assert.match(readme, /npm test/);
  const block = /<!-- readme-example:start -->\n```sh\n([\s\S]*?)```\n<!-- readme-example:end -->/.exec(readme);
  assert.ok(block, 'README has the marked example');

  for (const port of [8080, 8081, 8443]) assert.equal(await portInUse(port), false, `port ${port} must be free for this test`);
  const dataDir = mkdtempSync(join(tmpdir(), 'cronium-readme-'));
  const env: NodeJS.ProcessEnv = { ...process.env, CRONIUM_DATA_DIR: dataDir, CRONIUM_IMAGE_BASH: TEST_IMAGE };
  delete env.CRONIUM_ADMIN_TOKEN;
  delete env.CRONIUM_DATABASE_URL;
  const cronium = spawn(process.execPath, [join(root, 'scripts/start.ts')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  cronium.stdout!.on('data', (data) => (stdout += data));
  cronium.stderr!.on('data', (data) => (stderr += data));
  try {
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('connected to control plane') && Date.now() < deadline) {
      assert.equal(cronium.exitCode, null, `npm start exited: ${stderr}`);
      await sleep(200);
    }
    const token = /admin API token[^\n]*\n\n\s+(crn_\S+)/.exec(stdout)?.[1];
    assert.ok(token, `the first start printed an admin token: ${stdout}`);
    const output = execFileSync('bash', ['-euo', 'pipefail', '-c', block[1]!], { env: { ...process.env, TOKEN: token }, encoding: 'utf8', timeout: 60_000 });
    assert.equal(output.trim(), '{"status":"JOB_STATUS_SUCCEEDED","exitCode":0,"output":42}');
  } finally {
    const exited = new Promise((done) => cronium.once('exit', done));
    cronium.kill('SIGTERM');
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
  assert.doesNotMatch(stderr, /crn_/, 'the token never reaches the logs');
});
