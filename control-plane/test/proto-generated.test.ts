// The committed generated code (proto/gen) must be what `buf generate` makes
// from the .proto files today, and the protos must pass `buf lint`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const buf = join(root, 'node_modules/.bin/buf');
// The project's Node first, so protoc-gen-es (`#!/usr/bin/env node`) runs on it, then node_modules/.bin.
const env = { ...process.env, PATH: [dirname(process.execPath), join(root, 'node_modules/.bin'), process.env.PATH ?? ''].join(delimiter) };

function runBuf(args: string[]) {
  const result = spawnSync(buf, args, { cwd: root, env, encoding: 'utf8', timeout: 120_000 });
  if (result.error) throw result.error;
  return result;
}

/** Every file under `dir`, as paths relative to it, sorted. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

describe('generated protobuf code', () => {
  let tmp: string;
  /** The `out:` folders of buf.gen.yaml, relative to the repo root. */
  const outs: string[] = [];

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'cronium-buf-gen-'));
  });

  after(() => {
    rmSync(tmp, { recursive: true, force: true });
  });

  test('proto/gen is up to date with the .proto files', () => {
    const template = readFileSync(join(root, 'buf.gen.yaml'), 'utf8');
    assert.match(template, /^clean:\s*true\s*$/m, 'buf.gen.yaml keeps `clean: true` (stale files get removed)');
    const generated = join(tmp, 'out');
    const rewritten = template.replace(/^(\s*out:\s*)(\S+)\s*$/gm, (_line, prefix: string, out: string) => {
      outs.push(out);
      return `${prefix}${join(generated, out)}`;
    });
    assert.ok(outs.length > 0, 'buf.gen.yaml names at least one out: folder');
    const templatePath = join(tmp, 'buf.gen.yaml');
    writeFileSync(templatePath, rewritten);

    const result = runBuf(['generate', '--template', templatePath]);
    assert.equal(result.status, 0, `buf generate failed:\n${result.stdout}${result.stderr}`);

    const problems: string[] = [];
    for (const out of outs) {
      const fresh = join(generated, out);
      const committed = join(root, out);
      const freshFiles = filesUnder(fresh);
      assert.ok(freshFiles.length > 0, `buf generate wrote nothing to ${out}`);
      const committedFiles = filesUnder(committed);
      for (const file of freshFiles) {
        const name = join(out, file);
        if (!committedFiles.includes(file)) problems.push(`${name}: missing`);
        else if (!readFileSync(join(fresh, file)).equals(readFileSync(join(committed, file)))) problems.push(`${name}: differs`);
      }
      for (const file of committedFiles) {
        if (!freshFiles.includes(file)) problems.push(`${join(out, file)}: not generated from any .proto (left over)`);
      }
    }
    assert.deepEqual(
      problems,
      [],
      `generated code is stale:\n  ${problems.join('\n  ')}\nRun \`npm run generate\` and commit the result.`,
    );
  });

  test('buf lint passes', () => {
    const result = runBuf(['lint']);
    assert.equal(result.status, 0, `buf lint failed:\n${result.stdout}${result.stderr}`);
  });
});
