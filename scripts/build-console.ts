// Builds the console (console/, SvelteKit + adapter-node) into console/build
// unless the build there was made from the same sources. The sources' hash is
// kept in .cache/console-build.hash; a build goes to a fresh folder first and
// replaces console/build only when complete. One build at a time: it runs under
// flock(1) and checks again once it holds the lock, so concurrent callers
// (npm start, tests) build once. Run directly or import ensureConsoleBuild.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, globSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const consoleDir = join(root, 'console');
const buildDir = join(consoleDir, 'build');
const hashFile = join(root, '.cache', 'console-build.hash');
const lockFile = join(root, '.cache', 'console-build.lock');

/** Everything the build is made from: the console's sources and config, the lockfile, the API's generated code. */
export function consoleSourceHash(): string {
  const files = globSync(
    ['console/src/**', 'console/static/**', 'console/package.json', 'console/vite.config.ts', 'console/tsconfig.json', 'package-lock.json', 'proto/gen/cronium/api/**', 'proto/package.json', 'control-plane/src/domain/selector.ts'],
    { cwd: root, withFileTypes: false },
  )
    .filter((file) => !file.endsWith('/') && existsSync(join(root, file)))
    .sort();
  const hash = createHash('sha256');
  for (const file of files) {
    let data: Buffer;
    try {
      data = readFileSync(join(root, file));
    } catch {
      continue; // a directory
    }
    hash.update(file).update('\0').update(data).update('\0');
  }
  return hash.digest('hex');
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd: consoleDir, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code, signal) => (code === 0 ? done() : fail(new Error(`console build failed (${signal ?? code})`))));
  });
}

function isFresh(hash: string): boolean {
  return existsSync(join(buildDir, 'handler.js')) && existsSync(hashFile) && readFileSync(hashFile, 'utf8').trim() === hash;
}

async function build(hash: string): Promise<void> {
  const vite = join(createRequire(join(consoleDir, 'package.json')).resolve('vite/package.json'), '..', 'bin', 'vite.js');
  const out = `build.tmp-${process.pid}`;
  rmSync(join(consoleDir, out), { recursive: true, force: true });
  try {
    await run(process.execPath, [vite, 'build', '--logLevel', 'warn'], { ...process.env, CRONIUM_BUILD_CONSOLE_OUT: out });
    rmSync(`${buildDir}.old`, { recursive: true, force: true });
    if (existsSync(buildDir)) renameSync(buildDir, `${buildDir}.old`);
    renameSync(join(consoleDir, out), buildDir);
    rmSync(`${buildDir}.old`, { recursive: true, force: true });
  } finally {
    rmSync(join(consoleDir, out), { recursive: true, force: true });
  }
  writeFileSync(hashFile, hash + '\n');
}

/** Builds the console when its build is missing or older than its sources; returns whether it was stale. */
export async function ensureConsoleBuild(log: (line: string) => void = (line) => console.error(line)): Promise<boolean> {
  if (isFresh(consoleSourceHash())) return false;
  log('console: building (vite build)');
  mkdirSync(join(root, '.cache'), { recursive: true });
  await run('flock', [lockFile, process.execPath, import.meta.filename, '--under-lock'], process.env);
  log('console: built');
  return true;
}

if (import.meta.main) {
  if (process.argv.includes('--under-lock')) {
    const hash = consoleSourceHash();
    if (!isFresh(hash)) await build(hash);
  } else {
    await ensureConsoleBuild();
  }
}
