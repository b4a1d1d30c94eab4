// cronium-agent as one executable (scripts/build-agent.ts), and its installer
// (deploy/agent/install.sh). The binary is built once, then run with an empty
// environment: no Node on PATH, nothing from the checkout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../src/config.ts';

const root = resolve(import.meta.dirname, '../..');
const binary = join(root, 'dist/agent/cronium-agent');
const installer = join(root, 'deploy/agent/install.sh');
const version = (JSON.parse(readFileSync(join(root, 'agent/package.json'), 'utf8')) as { version: string }).version;
let tmp = '';

// A throwaway self-signed certificate (CN=binary-test-agent) and its key: enough
// for the agent to get past reading its TLS files; it never reaches a control plane.
const CERT = `-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUIqQAjuqa+e1G3WU0S7tuniyXc34wCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRYmluYXJ5LXRlc3QtYWdlbnQwIBcNMjYxMTI1MDYzMTQ1WhgP
MjEyNjExMDEwNjMxNDVaMBwxGjAYBgNVBAMMEWJpbmFyeS10ZXN0LWFnZW50MFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEcwEbX0N6HMmEVMAEHvGITziCme/57iNe
kQYuhoB4QF6PzsSy61ym6zaCVQ980GCIgOy9cxrDGXW3f8RO2IZtn6NTMFEwHQYD
VR0OBBYEFMIIjl3CIXMsQjHH3wQrMSl01uhmMB8GA1UdIwQYMBaAFMIIjl3CIXMs
QjHH3wQrMSl01uhmMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIg
RHlZosLwU9cvcS38HMDRvHocaXhVtcUuNryEzfDd1kwCIQD7Kxl3rndYbN2F6SGo
wSdRrNzaM1AuoJKwshzATMmDcg==
-----END CERTIFICATE-----
`;
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBURaI7RZuCLbg5T5
TEfDEWERQZYydJd9jm0kBiXuLIehRANCAARzARtfQ3ocyYRUwAQe8YhPOIKZ7/nu
I16RBi6GgHhAXo/OxLLrXKbrNoJVD3zQYIiA7L1zGsMZdbd/xE7Yhm2f
-----END PRIVATE KEY-----
`;

/** Runs the binary with an empty environment. */
function agent(args: string[]) {
  return spawnSync(binary, args, { env: {}, cwd: tmp, encoding: 'utf8', timeout: 20_000 });
}

function writeConfig(name: string, lines: string[]): string {
  const file = join(tmp, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** Starts the agent, waits for "agent starting" (after the runtime is extracted), then SIGTERMs it. */
function startAndStop(config: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(binary, ['--config', config], { env: {}, cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let stopping = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      // Once it has tried to connect, it has long set up its signal handlers.
      if (!stopping && stderr.includes('"msg":"disconnected from control plane; reconnecting"')) {
        stopping = true;
        child.kill('SIGTERM');
      }
    });
    child.on('error', fail);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      done({ code, stderr: signal ? `${stderr}\n(ended by ${signal})` : stderr });
    });
  });
}

const mode = (path: string) => statSync(path).mode & 0o777;

describe('cronium-agent single executable', () => {
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'cronium-binary-'));
    // `npm test` builds the binary once before all test files (CRONIUM_AGENT_BINARY); alone, this file builds it.
    if (process.env.CRONIUM_AGENT_BINARY !== binary) {
      execFileSync(process.execPath, [join(root, 'scripts/build-agent.ts')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], timeout: 180_000 });
    }
  }, { timeout: 200_000 });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test('--version and --help', () => {
    const v = agent(['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout, `cronium-agent ${version}\n`);
    const h = agent(['--help']);
    assert.equal(h.status, 0, h.stderr);
    for (const flag of ['--config', '--join-token', '--labels']) assert.match(h.stdout, new RegExp(flag));
  });

  test('config errors exit 2, with an empty environment', () => {
    const config = writeConfig('missing-tls.yaml', [
      'mode: remote-executor',
      `data_dir: ${join(tmp, 'missing-tls-data')}`,
      'tls:',
      `  ca: ${join(tmp, 'nope/ca.crt')}`,
      `  cert: ${join(tmp, 'nope/client.crt')}`,
      `  key: ${join(tmp, 'nope/client.key')}`,
    ]);
    const missing = agent(['--config', config]);
    assert.equal(missing.status, 2, missing.stderr);
    assert.match(missing.stderr, /^cronium-agent: /);
    assert.ok(['ca.crt', 'client.crt', 'client.key'].some((file) => missing.stderr.includes(join(tmp, 'nope', file))), missing.stderr);

    const bad = agent(['--mode', 'nonsense']);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /^cronium-agent: mode: /);
  });

  test('extracts the runtime helpers to DATA_DIR/runtime, readable by any user', async () => {
    writeFileSync(join(tmp, 'client.crt'), CERT);
    writeFileSync(join(tmp, 'client.key'), KEY);
    const dataDir = join(tmp, 'data');
    const config = writeConfig('agent.yaml', [
      'mode: remote-executor',
      'control_plane: "127.0.0.1:1"', // nothing listens: the agent keeps reconnecting until stopped
      `data_dir: ${dataDir}`,
      'tls:',
      `  ca: ${join(tmp, 'client.crt')}`,
      `  cert: ${join(tmp, 'client.crt')}`,
      `  key: ${join(tmp, 'client.key')}`,
    ]);
    const first = await startAndStop(config);
    assert.equal(first.code, 0, first.stderr); // SIGTERM drains and exits 0
    const helper = join(dataDir, 'runtime/bash/cronium.sh');
    const source = readFileSync(join(root, 'agent/runtime/bash/cronium.sh'));
    assert.deepEqual(readFileSync(helper), source);
    assert.deepEqual(readFileSync(join(dataDir, 'runtime/python/cronium/__init__.py')), readFileSync(join(root, 'agent/runtime/python/cronium/__init__.py')));
    assert.equal(mode(helper), 0o644);
    for (const dir of ['runtime', 'runtime/bash', 'runtime/node/cronium']) assert.equal(mode(join(dataDir, dir)), 0o755, dir);

    // A changed helper is put back on the next start.
    writeFileSync(helper, 'tampered\n', { mode: 0o600 });
    const second = await startAndStop(config);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(readFileSync(helper), source);
    assert.equal(mode(helper), 0o644);
  });

  test('install.sh --dry-run changes nothing; a --prefix install writes binary, config and unit', () => {
    const args = ['--binary', binary, '--control-plane', 'cp:8443', '--join-token', 'abc', '--labels', 'zone=eu'];
    const dryPrefix = join(tmp, 'dry-root');
    const dry = spawnSync('sh', [installer, '--dry-run', '--prefix', dryPrefix, ...args], { encoding: 'utf8' });
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`write ${dryPrefix}/etc/cronium/agent.yaml \\(mode 0600`));
    assert.match(dry.stdout, /"zone=eu"/);
    assert.doesNotMatch(dry.stdout, /"abc"/); // the token is not printed
    assert.throws(() => statSync(dryPrefix), /ENOENT/);

    // As in `curl … | sh -s -- …`: the script comes on stdin.
    const prefix = join(tmp, 'root');
    const real = spawnSync('sh', ['-s', '--', '--prefix', prefix, ...args, '--slots', '2'], { input: readFileSync(installer), encoding: 'utf8' });
    assert.equal(real.status, 0, real.stderr);
    const installed = join(prefix, 'usr/local/bin/cronium-agent');
    assert.equal(mode(installed) & 0o111, 0o111);
    assert.equal(execFileSync(installed, ['--version'], { env: {}, encoding: 'utf8' }), `cronium-agent ${version}\n`);

    const yaml = join(prefix, 'etc/cronium/agent.yaml');
    assert.equal(mode(yaml), 0o600);
    const text = readFileSync(yaml, 'utf8');
    for (const key of ['mode', 'control_plane', 'join_token', 'labels', 'data_dir', 'slots']) assert.match(text, new RegExp(`^${key}:`, 'm'));
    const config = loadConfig(['--config', yaml], {});
    assert.ok(config !== 'help' && config !== 'version');
    assert.equal(config.mode, 'remote-executor');
    assert.deepEqual(config.controlPlanes, ['cp:8443']);
    assert.equal(config.joinToken, 'abc');
    assert.deepEqual(config.labels, { zone: 'eu' });
    assert.equal(config.dataDir, '/var/lib/cronium-agent');
    assert.equal(config.slots, 2);

    // The unit embedded in install.sh is deploy/agent/cronium-agent.service (the
    // docker line is commented out on a host without a docker group).
    const withoutDockerLine = (unit: string) => unit.replace(/^(# )?SupplementaryGroups=docker$/m, '');
    assert.equal(
      withoutDockerLine(readFileSync(join(prefix, 'etc/systemd/system/cronium-agent.service'), 'utf8')),
      withoutDockerLine(readFileSync(join(root, 'deploy/agent/cronium-agent.service'), 'utf8')),
    );
    assert.equal(mode(join(prefix, 'var/lib/cronium-agent')), 0o750);
  });

  test('agent.example.yaml is a valid config', () => {
    const config = loadConfig(['--config', join(root, 'deploy/agent/agent.example.yaml')], {});
    assert.ok(config !== 'help' && config !== 'version');
    assert.equal(config.mode, 'remote-executor');
    assert.deepEqual(config.labels, { zone: 'eu', disk: 'ssd' });
    assert.equal(config.dataDir, '/var/lib/cronium-agent');
  });
});
