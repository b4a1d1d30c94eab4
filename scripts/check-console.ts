// Type-checks the console (Svelte components and their TypeScript) with
// svelte-check, which runs the console's own TypeScript (the root one is older).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const consoleDir = resolve(import.meta.dirname, '../console');
const require = createRequire(join(consoleDir, 'package.json'));
const bin = (name: string, path: string) => join(require.resolve(`${name}/package.json`), '..', path);

function run(args: string[]): Promise<number> {
  return new Promise((done) => {
    spawn(process.execPath, args, { cwd: consoleDir, stdio: 'inherit' }).on('exit', (code) => done(code ?? 1));
  });
}

if ((await run([bin('@sveltejs/kit', 'svelte-kit.js'), 'sync'])) !== 0) process.exit(1);
process.exit(await run([bin('svelte-check', 'bin/svelte-check'), '--tsconfig', './tsconfig.json', '--fail-on-warnings']));
