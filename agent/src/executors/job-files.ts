// The per-job folder that the runtime helpers (agent/runtime) read and write.
// The same layout is used by every executor (a bind mount for Docker, a
// fresh folder under TMPDIR for SSH), so the helpers work the same everywhere:
//
//   script.sh | script.py | script.js   the job's script
//   input.json                          spec.input
//   event.json                          {id, name, runId, jobId, attempt}
//   variables/<key>                     one file per variable (content = value)
//   variables-set/<key>                 written by setVariable()
//   output                              written by output()     (absent = none)
//   condition                           written by setCondition() (absent = none)

import { chmodSync, constants, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { lstat, open, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { JobKind, JobSpec, JsonValue } from '../job.ts';

/** Keys of variables, also used as file names; the helpers enforce the same rule. */
export const VARIABLE_KEY_PATTERN = /^[A-Za-z0-9_.-]+$/;

export function isValidVariableKey(key: string): boolean {
  return VARIABLE_KEY_PATTERN.test(key) && key !== '.' && key !== '..';
}

export type ScriptKind = Exclude<JobKind, 'http'>;

const SCRIPT_FILES: Record<ScriptKind, string> = {
  bash: 'script.sh',
  python: 'script.py',
  node: 'script.js',
};

/** The program that runs a script of each kind. */
export const INTERPRETERS: Readonly<Record<ScriptKind, string>> = { bash: 'bash', python: 'python3', node: 'node' };

export function scriptFileName(kind: ScriptKind): string {
  return SCRIPT_FILES[kind];
}

/** One file of the per-job folder, relative to it. */
export interface JobFile {
  readonly path: string;
  readonly content: string;
}

export interface JobFileSet {
  /** Folders to create (relative), writable by the job's user. */
  readonly writableDirs: readonly string[];
  /** Folders to create (relative), read-only for the job. */
  readonly dirs: readonly string[];
  readonly files: readonly JobFile[];
  /** Variable keys skipped because they are not valid file names. */
  readonly skippedKeys: readonly string[];
}

/** The files the job starts with; usable for a local folder or an SFTP upload. */
export function jobFileSet(spec: JobSpec, kind: ScriptKind): JobFileSet {
  const event = {
    id: spec.eventId,
    name: spec.eventName,
    runId: spec.runId,
    jobId: spec.jobId,
    attempt: spec.attempt,
  };
  const files: JobFile[] = [
    { path: scriptFileName(kind), content: spec.script },
    { path: 'input.json', content: JSON.stringify(spec.input ?? null) },
    { path: 'event.json', content: JSON.stringify(event) },
  ];
  const skippedKeys: string[] = [];
  for (const [key, value] of Object.entries(spec.variables)) {
    if (isValidVariableKey(key)) files.push({ path: `variables/${key}`, content: value });
    else skippedKeys.push(key);
  }
  return { writableDirs: ['variables-set'], dirs: ['variables'], files, skippedKeys };
}

/**
 * Creates a fresh per-job folder under `root` and fills it. The folder and
 * `variables-set/` are mode 1777 so a container user (65534) can create
 * `output`, `condition` and variables; everything else is readable by all.
 * The file calls are synchronous: a dozen small ones cost well under a
 * millisecond this way, and several milliseconds as a chain of thread-pool
 * round trips on a busy host, on the path of every job.
 */
export async function createJobFolder(root: string, spec: JobSpec, kind: ScriptKind): Promise<{ dir: string; skippedKeys: readonly string[] }> {
  mkdirSync(root, { recursive: true });
  const safeId = spec.jobId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
  const dir = mkdtempSync(join(root, `job-${safeId}-${spec.attempt}-`));
  try {
    const set = jobFileSet(spec, kind);
    for (const d of set.dirs) {
      mkdirSync(join(dir, d));
      chmodSync(join(dir, d), 0o755);
    }
    for (const d of set.writableDirs) {
      mkdirSync(join(dir, d));
      chmodSync(join(dir, d), 0o1777);
    }
    for (const f of set.files) writeFileSync(join(dir, f.path), f.content, { mode: 0o644 });
    for (const f of set.files) chmodSync(join(dir, f.path), 0o644);
    // Sticky bit: the job may add files but not rename or delete ours.
    chmodSync(dir, 0o1777);
    return { dir, skippedKeys: set.skippedKeys };
  } catch (err) {
    await removeJobFolder(dir);
    throw err;
  }
}

export async function removeJobFolder(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Raw texts the job left behind (undefined = never written). */
export interface RawJobResults {
  readonly output?: string;
  readonly condition?: string;
  readonly variablesSet: Readonly<Record<string, string>>;
}

export interface JobResults {
  readonly output?: JsonValue;
  readonly condition?: boolean;
  readonly variablesSet: Readonly<Record<string, string>>;
  /** Problems worth a system log line (e.g. a condition that is not true/false). */
  readonly warnings: readonly string[];
}

/** output: JSON when it parses, else the raw string; condition: `true`/`false`. */
export function parseJobResults(raw: RawJobResults): JobResults {
  const warnings: string[] = [];
  let output: JsonValue | undefined;
  if (raw.output !== undefined) {
    try {
      output = JSON.parse(raw.output) as JsonValue;
    } catch {
      output = raw.output;
    }
  }
  let condition: boolean | undefined;
  if (raw.condition !== undefined) {
    const c = raw.condition.trim();
    if (c === 'true') condition = true;
    else if (c === 'false') condition = false;
    else warnings.push(`ignored condition ${JSON.stringify(c.slice(0, 40))}: expected true or false`);
  }
  const variablesSet: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw.variablesSet)) {
    if (isValidVariableKey(key)) variablesSet[key] = value;
  }
  return { output, condition, variablesSet, warnings };
}

/**
 * Reads a file the job wrote. The job controls the folder, so never follow a
 * symlink it planted (it could point at any host file) and cap the size.
 */
async function readIfExists(path: string, maxBytes: number): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new Error(`${basename(path)} is a symlink; ignored`);
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error(`${basename(path)} is not a regular file; ignored`);
    if (st.size > maxBytes) throw new Error(`${basename(path)} is larger than ${maxBytes} bytes; ignored`);
    return (await handle.readFile()).toString('utf8');
  } finally {
    await handle.close();
  }
}

/** Reads what the job wrote into a local per-job folder. */
export async function readJobFolder(dir: string, maxFileBytes = 16 * 1024 * 1024): Promise<JobResults> {
  // One list per kind of read, so the warnings keep their order though the reads run side by side.
  const variableWarnings: string[] = [];
  const outputWarnings: string[] = [];
  const conditionWarnings: string[] = [];
  const read = (path: string, max: number, warnings: string[]) =>
    readIfExists(path, max).catch((err: Error) => {
      warnings.push(err.message);
      return undefined;
    });
  const readVariables = async (): Promise<Record<string, string>> => {
    const variablesSet: Record<string, string> = {};
    const setDir = join(dir, 'variables-set');
    const setDirStat = await lstat(setDir).catch(() => undefined);
    if (setDirStat?.isDirectory()) {
      const names = (await readdir(setDir)).filter(isValidVariableKey).sort();
      const values = await Promise.all(names.map((name) => read(join(setDir, name), maxFileBytes, variableWarnings)));
      names.forEach((name, i) => {
        if (values[i] !== undefined) variablesSet[name] = values[i];
      });
    } else if (setDirStat) {
      variableWarnings.push('variables-set is not a folder; ignored');
    }
    return variablesSet;
  };
  // Independent reads, side by side: each is a chain of thread-pool round trips.
  const [variablesSet, output, condition] = await Promise.all([
    readVariables(),
    read(join(dir, 'output'), maxFileBytes, outputWarnings),
    read(join(dir, 'condition'), 1024, conditionWarnings),
  ]);
  const results = parseJobResults({ output, condition, variablesSet });
  return { ...results, warnings: [...variableWarnings, ...outputWarnings, ...conditionWarnings, ...results.warnings] };
}
