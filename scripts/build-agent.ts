// `npm run build:agent`: cronium-agent as one executable, dist/agent/cronium-agent.
// Node 24 has no --build-sea, so: esbuild bundles agent/src/main.ts to one CJS
// file; `node --experimental-sea-config` turns it (plus every file under
// agent/runtime as an asset) into a blob; postject injects the blob into a copy
// of this Node binary. Writes only under dist/agent. Idempotent.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, globSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { build } from 'esbuild';
import { AGENT_NODE_FLAGS } from '../agent/src/node-flags.ts';

const started = Date.now();
const root = resolve(import.meta.dirname, '..');
const out = join(root, 'dist/agent');
const bundle = join(out, 'cronium-agent.cjs');
const blob = join(out, 'cronium-agent.blob');
const seaConfig = join(out, 'sea-config.json');
const binary = join(out, 'cronium-agent');
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const step = (message: string) => console.error(`build-agent: ${message} (${((Date.now() - started) / 1000).toFixed(1)} s)`);

mkdirSync(out, { recursive: true });

/** Runs fn; its captured output is shown only when it fails. */
function quiet(fn: () => unknown): void {
  try {
    fn();
  } catch (failure) {
    const { stdout, stderr } = failure as { stdout?: Buffer; stderr?: Buffer };
    process.stderr.write(Buffer.concat([stdout ?? Buffer.alloc(0), stderr ?? Buffer.alloc(0)]));
    throw failure;
  }
}

// 1. Bundle. Native parts stay out: ssh2 and cpu-features load them in try/catch.
const result = await build({
  entryPoints: [join(root, 'agent/src/main.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  external: ['*.node', 'cpu-features'],
  logLevel: 'error',
  logOverride: { 'empty-import-meta': 'silent' }, // runtime-dir.ts does not use it when bundled
  metafile: true,
});
const bundled = Object.keys(result.metafile.inputs);
for (const name of ['@grpc/grpc-js', 'dockerode', 'pino', 'yaml', '@bufbuild/protobuf']) {
  if (!bundled.some((input) => input.includes(`node_modules/${name}/`))) throw new Error(`bundle is missing ${name}`);
}
step(`bundled ${bundled.length} files into ${bundle} (${(statSync(bundle).size / 1e6).toFixed(1)} MB)`);

// 2. SEA blob with the runtime helpers as assets keyed runtime/<relative path>.
const assets: Record<string, string> = {};
for (const file of globSync('**/*', { cwd: join(root, 'agent/runtime') }).sort()) {
  const path = join(root, 'agent/runtime', file);
  if (statSync(path).isFile()) assets[`runtime/${file.split('\\').join('/')}`] = path;
}
if (!assets['runtime/bash/cronium.sh']) throw new Error('agent/runtime/bash/cronium.sh is missing');
writeFileSync(seaConfig, `${JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false, execArgv: AGENT_NODE_FLAGS, assets }, null, 2)}\n`);
quiet(() => execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { cwd: out, stdio: 'pipe' }));
step(`SEA blob with ${Object.keys(assets).length} runtime assets`);

// 3. A fresh copy of this Node, stripped when the stripped copy still runs.
rmSync(binary, { force: true });
copyFileSync(process.execPath, binary);
chmodSync(binary, 0o755);
try {
  execFileSync('strip', [binary], { stdio: 'ignore' });
  execFileSync(binary, ['-e', '0'], { stdio: 'ignore' });
} catch {
  copyFileSync(process.execPath, binary); // no strip, or a copy that no longer runs
}

// 4. Inject the blob. postject runs in a child: it chats on stdout, and LIEF
// warns on stderr about the stripped binary's unnamed notes (harmless).
const postject = join(dirname(createRequire(import.meta.url).resolve('postject')), 'cli.js');
quiet(() => execFileSync(process.execPath, [postject, binary, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', FUSE, '--overwrite'], { stdio: 'pipe' }));
chmodSync(binary, 0o755);
const version = execFileSync(binary, ['--version'], { env: {}, encoding: 'utf8' }).trim();
console.log(`${binary}: ${version}, ${(statSync(binary).size / 1e6).toFixed(1)} MB, built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
