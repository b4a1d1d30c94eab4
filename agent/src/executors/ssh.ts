// Runs bash/python/node jobs on servers that run nothing of ours, over SSH
// (ssh2, pooled connections, pinned host keys).
//
// Per job, on one pooled connection:
//   1. one exec channel runs WRAPPER, a fixed shell text: it makes a fresh
//      folder with `mktemp -d`, prints its path (on a `cronium-job-dir:`
//      line, so output from the login shell's rc files is skipped) and waits
//      for a line on stdin (EOF instead: it removes the folder and exits);
//   2. the agent validates the path and uploads, over the connection's shared
//      SFTP session, the per-job folder (job-files.ts layout) under job/, the
//      runtime helpers under lib/, env.sh (the job's environment, values
//      single-quoted) and run.sh (fixed text per language);
//   3. the agent writes `run`; WRAPPER runs run.sh in a new session (setsid),
//      so the job is its own process group, whose id run.sh writes to `pgid`;
//      stdout/stderr stream back live; when the job exits, WRAPPER kills what
//      is left of the group and exits with the job's exit code;
//   4. the agent reads output/condition/variables-set over SFTP and removes
//      the folder (SFTP, or `rm -rf` as a fallback) whatever happened.
// Timeout and cancel run a fixed `kill` command on the process group: SIGTERM,
// then SIGKILL after the grace period.
//
// No user string (script, env, input, variables, names) ever goes into a
// command line: they travel as file contents over SFTP. The only dynamic part
// of any command line is the folder path printed by mktemp, after validation.
//
// Remote folder:
//   DIR/job/…   CRONIUM_JOB_DIR (script, input.json, event.json, variables/, variables-set/, output, condition)
//   DIR/lib/…   runtime helpers (bash/cronium.sh, python/cronium, node/cronium)
//   DIR/env.sh  DIR/run.sh  DIR/pgid
//
// Server requirements: a POSIX login shell for the user, mktemp, setsid
// (util-linux) or perl, the SFTP subsystem, bash / python3 / node on the PATH
// (spec.env may set PATH), and MaxSessions at least the pool's
// maxChannelsPerConnection (OpenSSH's default 10 ≥ the default 8). The job
// runs as the SSH user, in DIR/job.

import { readdir, readFile } from 'node:fs/promises';
import { exportLines, shellQuote } from './shell-env.ts';
import { join, relative, sep } from 'node:path';
import { Writable } from 'node:stream';
import type { ClientChannel, SFTPWrapper, Stats } from 'ssh2';
import type { ExecutionResult, Executor, JobKind, JobSpec, RunContext } from '../job.ts';
import { isValidVariableKey, jobFileSet, parseJobResults, scriptFileName } from './job-files.ts';
import type { ScriptKind } from './job-files.ts';
import { SshPool, type SshLease } from './ssh-pool.ts';
import { formatAddress, SshConnectError } from './ssh-fingerprint.ts';

export { fingerprintOf, keyTypeOf, normalizeFingerprint, SshConnectError } from './ssh-fingerprint.ts';
export type { SshEndpoint } from './ssh-fingerprint.ts';
export { SshPool } from './ssh-pool.ts';
export type { SshLease, SshPoolOptions, SshPoolStats } from './ssh-pool.ts';

export interface SshExecutorOptions {
  /** Local path of agent/runtime (bash/cronium.sh, python/cronium, node/cronium), uploaded per job. */
  readonly runtimeDir: string;
  /** Grace period between SIGTERM and SIGKILL on timeout and cancel (default 10). */
  readonly stopGraceSeconds?: number;
  /** Connection pool; by default the executor makes its own (closed by close()). */
  readonly pool?: SshPool;
  /** Largest output / variable file read back (default 16 MiB). */
  readonly maxResultFileBytes?: number;
}

/** After the exit, give up on the output streams once they make no progress for this long. */
const LOG_IDLE_MS = 15_000;
/** Limit for the wrapper to print the folder path. */
const HEADER_TIMEOUT_MS = 30_000;
/** More entries than this in the folder: remove with `rm -rf` instead of SFTP calls. */
const SFTP_REMOVE_MAX_ENTRIES = 2000;

const INTERPRETERS: Record<ScriptKind, string> = { bash: 'bash', python: 'python3', node: 'node' };

/**
 * The one command a job starts with; fixed text (no dynamic part at all).
 * Prints the folder, waits for `run` on stdin (anything else, or EOF: removes
 * the folder and exits 125), runs run.sh in its own session, kills what is
 * left of that process group, exits with the job's code.
 */
export const WRAPPER_COMMAND = [
  'if command -v setsid >/dev/null 2>&1; then set -- setsid',
  "elif command -v perl >/dev/null 2>&1; then set -- perl -e 'setpgrp(0, 0); exec @ARGV or die qq(cronium: exec: $!\\n)'",
  "else echo 'cronium: the server has neither setsid nor perl' >&2; exit 127; fi",
  'd=$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/cronium-job.XXXXXXXXXX") || exit 125',
  'printf \'cronium-job-dir:%s\\n\' "$d"',
  'IFS= read -r go || go=',
  'if [ "$go" != run ]; then rm -rf -- "$d"; exit 125; fi',
  '"$@" sh "$d/run.sh" </dev/null',
  'code=$?',
  'p=$(cat "$d/pgid" 2>/dev/null)',
  "case $p in '' | *[!0-9]*) ;; *) kill -s KILL -- \"-$p\" 2>/dev/null ;; esac",
  'exit "$code"',
].join('\n');

/** run.sh for a language: fixed text; runs in the job's own session. */
function runScript(kind: ScriptKind): string {
  return [
    '# Cronium job runner (uploaded by the agent).',
    'd=${0%/*}',
    'echo "$$" > "$d/pgid"',
    '. "$d/env.sh" || exit 125',
    'cd "$CRONIUM_JOB_DIR" || exit 125',
    `exec ${INTERPRETERS[kind]} "$CRONIUM_JOB_DIR/${scriptFileName(kind)}"`,
    '',
  ].join('\n');
}

/** Absolute, only [A-Za-z0-9._/-], no `.`/`..` segments, made from our template. */
export function isSafeRemoteDir(path: string): boolean {
  if (path.length < 2 || path.length > 512 || !/^\/[A-Za-z0-9._/-]+$/.test(path)) return false;
  const parts = path.split('/').slice(1);
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return false;
  return /^cronium-job\.[A-Za-z0-9]+$/.test(parts[parts.length - 1] ?? '');
}

/** env.sh: the job's environment, then ours (which wins; search paths keep the server's after ours). */
export function envScript(env: Readonly<Record<string, string>>, dir: string): { text: string; skipped: string[] } {
  const { lines: exports, skipped } = exportLines(env);
  const lines = ['# Cronium job environment (uploaded by the agent).', ...exports];
  lines.push(
    `export CRONIUM_JOB_DIR=${shellQuote(`${dir}/job`)}`,
    `export PYTHONPATH=${shellQuote(`${dir}/lib/python`)}"\${PYTHONPATH:+:$PYTHONPATH}"`,
    `export NODE_PATH=${shellQuote(`${dir}/lib/node`)}"\${NODE_PATH:+:$NODE_PATH}"`,
    `export BASH_ENV=${shellQuote(`${dir}/lib/bash/cronium.sh`)}`,
    '',
  );
  return { text: lines.join('\n'), skipped };
}

/** Sends a signal to the job's process group; exits 3 while run.sh has not written the pgid yet. */
function signalCommand(dir: string, signal: 'TERM' | 'KILL'): string {
  return `p=$(cat ${shellQuote(`${dir}/pgid`)} 2>/dev/null); case $p in '' | *[!0-9]*) exit 3 ;; esac; kill -s ${signal} -- "-$p"`;
}

function removeCommand(dir: string, killFirst: boolean): string {
  const kill = killFirst
    ? `p=$(cat ${shellQuote(`${dir}/pgid`)} 2>/dev/null); case $p in '' | *[!0-9]*) ;; *) kill -s KILL -- "-$p" 2>/dev/null ;; esac; `
    : '';
  return `${kill}chmod -R u+rwx -- ${shellQuote(dir)} 2>/dev/null; rm -rf -- ${shellQuote(dir)}`;
}

function isScriptKind(kind: JobKind): kind is ScriptKind {
  return kind === 'bash' || kind === 'python' || kind === 'node';
}

function result(outcome: ExecutionResult['outcome'], exitCode: number, error: string): ExecutionResult {
  return { outcome, exitCode, error, variablesSet: {}, oomKilled: false };
}

/** A writable that hands each chunk to ctx.log and acknowledges it only once logged. */
function logSink(log: (data: Buffer) => Promise<void>, onActivity: () => void): Writable {
  return new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, callback) {
      onActivity();
      log(chunk).then(
        () => {
          onActivity();
          callback();
        },
        (err: Error) => callback(err),
      );
    },
  });
}

/** A delay that does not keep the process alive on its own (used in races). */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Runs a short command on the lease; its exit code (-1 if none). */
async function runShort(lease: SshLease, command: string, timeoutMs = 30_000): Promise<number> {
  const channel = await lease.exec(command);
  return new Promise<number>((resolve) => {
    let code = -1;
    const timer = setTimeout(() => channel.close(), timeoutMs);
    channel.on('exit', (c: number | null) => (code = c ?? -1));
    channel.on('data', () => {});
    channel.stderr.on('data', () => {});
    channel.once('close', () => {
      clearTimeout(timer);
      resolve(code);
    });
    channel.end();
  });
}

// --- SFTP helpers (callback API → promises) -------------------------------

const SFTP_NO_SUCH_FILE = 2;

function sftpCall<T>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T))));
}

const isMissing = (err: unknown) => (err as { code?: unknown }).code === SFTP_NO_SUCH_FILE;

function mkdirRemote(sftp: SFTPWrapper, path: string): Promise<void> {
  return sftpCall<void>((cb) => sftp.mkdir(path, { mode: 0o700 }, cb));
}

function writeRemote(sftp: SFTPWrapper, path: string, content: string | Buffer): Promise<void> {
  return sftpCall<void>((cb) => sftp.writeFile(path, content, { mode: 0o600 }, cb));
}

/** A file the job wrote, without following symlinks it planted; undefined when absent. */
async function readRemote(sftp: SFTPWrapper, dir: string, name: string, maxBytes: number): Promise<string | undefined> {
  const path = `${dir}/${name}`;
  let st: Stats;
  try {
    st = await sftpCall<Stats>((cb) => sftp.lstat(path, cb));
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
  if (st.isSymbolicLink()) throw new Error(`${name} is a symlink; ignored`);
  if (!st.isFile()) throw new Error(`${name} is not a regular file; ignored`);
  if (st.size > maxBytes) throw new Error(`${name} is larger than ${maxBytes} bytes; ignored`);
  const data = await sftpCall<Buffer>((cb) => sftp.readFile(path, cb));
  if (data.length > maxBytes) throw new Error(`${name} is larger than ${maxBytes} bytes; ignored`);
  return data.toString('utf8');
}

/** Removes a folder tree over SFTP (symlinks removed, not followed). */
async function removeRemoteTree(sftp: SFTPWrapper, dir: string): Promise<void> {
  let budget = SFTP_REMOVE_MAX_ENTRIES;
  const remove = async (path: string): Promise<void> => {
    let entries;
    try {
      entries = await sftpCall<{ filename: string; attrs: Stats }[]>((cb) => sftp.readdir(path, cb));
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    budget -= entries.length;
    if (budget < 0) throw new Error('too many files for SFTP removal');
    await Promise.all(
      entries.map(async (e) => {
        if (e.filename === '.' || e.filename === '..') return;
        const child = `${path}/${e.filename}`;
        if (e.attrs.isDirectory()) return remove(child);
        return sftpCall<void>((cb) => sftp.unlink(child, cb)).catch((err: unknown) => {
          if (!isMissing(err)) throw err;
        });
      }),
    );
    await sftpCall<void>((cb) => sftp.rmdir(path, cb)).catch((err: unknown) => {
      if (!isMissing(err)) throw err;
    });
  };
  await remove(dir);
}

interface RuntimeFile {
  readonly path: string;
  readonly content: Buffer;
}

async function loadRuntime(root: string): Promise<RuntimeFile[]> {
  const files: RuntimeFile[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.parentPath.split(sep).includes('__pycache__')) continue;
    const full = join(entry.parentPath, entry.name);
    files.push({ path: relative(root, full).split(sep).join('/'), content: await readFile(full) });
  }
  if (!files.some((f) => f.path === 'bash/cronium.sh')) throw new Error(`runtime helpers not found in ${root}`);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** What precedes the folder path on the wrapper's first line of its own. */
const DIR_TAG = 'cronium-job-dir:';

/**
 * Reads the path line WRAPPER prints, skipping anything the login shell's rc
 * files printed before it; rejects with what was said on stderr if it fails.
 */
function readHeader(channel: ClientChannel, address: string): Promise<{ line: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let out = Buffer.alloc(0);
    let skipped = 0;
    let err = '';
    let exitCode: number | null = null;
    const done = () => {
      clearTimeout(timer);
      channel.removeListener('data', onData);
      channel.stderr.removeListener('data', onErr);
      channel.removeListener('exit', onExit);
      channel.removeListener('close', onClose);
      channel.pause();
      channel.stderr.pause();
    };
    const onData = (d: Buffer) => {
      out = Buffer.concat([out, d]);
      for (let nl = out.indexOf(10); nl >= 0; nl = out.indexOf(10)) {
        const line = out.subarray(0, nl).toString('utf8');
        out = out.subarray(nl + 1);
        if (line.startsWith(DIR_TAG)) {
          done();
          resolve({ line: line.slice(DIR_TAG.length), rest: out });
          return;
        }
        skipped += nl + 1;
      }
      if (out.length + skipped > 64 * 1024) {
        done();
        reject(new Error(`could not create a job folder on ${address}: no folder path in the first 64 KiB of output`));
      }
    };
    const onErr = (d: Buffer) => {
      if (err.length < 4096) err += d.toString('utf8');
    };
    const onExit = (code: number | null) => (exitCode = code);
    const onClose = () => {
      done();
      const why = err.trim() || (exitCode === null ? 'connection lost' : `exit code ${exitCode}`);
      reject(new Error(`could not create a job folder on ${address}: ${why}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`could not create a job folder on ${address}: no answer within ${HEADER_TIMEOUT_MS / 1000} s`));
    }, HEADER_TIMEOUT_MS);
    channel.on('data', onData);
    channel.stderr.on('data', onErr);
    channel.on('exit', onExit);
    channel.once('close', onClose);
  });
}

export class SshExecutor implements Executor {
  readonly name = 'ssh';
  readonly kinds: readonly JobKind[] = ['bash', 'python', 'node'];
  readonly #opts: SshExecutorOptions;
  readonly #pool: SshPool;
  readonly #ownPool: boolean;
  #runtime: Promise<RuntimeFile[]> | undefined;

  constructor(options: SshExecutorOptions) {
    this.#opts = options;
    this.#ownPool = !options.pool;
    this.#pool = options.pool ?? new SshPool();
  }

  /** The connection pool (for stats). */
  get pool(): SshPool {
    return this.#pool;
  }

  /** Closes the pool when the executor made it. */
  async close(): Promise<void> {
    if (this.#ownPool) await this.#pool.close();
  }

  async run(spec: JobSpec, ctx: RunContext): Promise<ExecutionResult> {
    const kind = spec.kind;
    if (!isScriptKind(kind)) throw new Error(`SshExecutor cannot run ${kind} jobs`);
    const target = spec.ssh;
    const system = (line: string) => ctx.log('system', Buffer.from(line + '\n'));
    const fail = async (error: string) => {
      await system(error);
      return result('failed', -1, error);
    };
    if (!target) return fail('the job has no SSH target');
    if (ctx.signal.aborted) return result('cancelled', -1, 'cancelled before start');
    const address = formatAddress(target.host, target.port);

    let runtime: RuntimeFile[];
    try {
      this.#runtime ??= loadRuntime(this.#opts.runtimeDir);
      runtime = await this.#runtime;
    } catch (err) {
      this.#runtime = undefined;
      return fail(`cannot read the runtime helpers: ${(err as Error).message}`);
    }

    // Connect (or reuse) and start the wrapper. A reused connection that turns
    // out dead is dropped and the job tries once more on a fresh one.
    let lease: SshLease | undefined;
    let channel: ClientChannel | undefined;
    for (let attempt = 0; !channel; attempt++) {
      try {
        lease = await this.#pool.acquire(target, ctx.signal);
      } catch (err) {
        if (ctx.signal.aborted) return result('cancelled', -1, 'cancelled before start');
        if (err instanceof SshConnectError) return fail(err.message);
        return fail(`cannot connect to ${address}: ${(err as Error).message}`);
      }
      try {
        channel = await lease.exec(WRAPPER_COMMAND);
      } catch (err) {
        // A dead connection is dropped; a refused channel (e.g. the server's
        // MaxSessions is below the pool's channel cap) leaves it to the others.
        const dead = !lease.alive;
        lease.release(dead);
        if (attempt === 0 && lease.reused && dead) continue;
        return fail(`cannot run a command on ${address}: ${(err as Error).message}`);
      }
    }
    const held = lease!;
    const ch = channel;
    const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
    let exitedFlag = false;
    void closed.then(() => (exitedFlag = true));

    let dir: string | undefined;
    let started = false;
    let connectionLost = false;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      let header;
      try {
        header = await readHeader(ch, address);
      } catch (err) {
        return fail((err as Error).message);
      }
      if (!isSafeRemoteDir(header.line)) {
        ch.end(); // EOF before `run`: the wrapper removes its folder
        return fail(`refusing the job folder ${JSON.stringify(header.line.slice(0, 200))} made by mktemp on ${address}: not a safe absolute path`);
      }
      dir = header.line;

      // Exit and close, whenever they come.
      let exit: { code: number | null; signal: string | null } | undefined;
      ch.on('exit', (code: number | null, signal?: string) => (exit = { code, signal: signal ?? null }));

      // Upload the folder.
      const set = jobFileSet(spec, kind);
      const env = envScript(spec.env, dir);
      try {
        const sftp = await held.sftp();
        const dirs = [
          'job',
          'lib',
          ...set.dirs.map((d) => `job/${d}`),
          ...set.writableDirs.map((d) => `job/${d}`),
          ...new Set(runtime.flatMap((f) => f.path.split('/').slice(0, -1).map((_, i, a) => `lib/${a.slice(0, i + 1).join('/')}`))),
        ].sort((a, b) => a.split('/').length - b.split('/').length);
        for (let depth = 1; depth <= Math.max(...dirs.map((d) => d.split('/').length)); depth++) {
          await Promise.all(dirs.filter((d) => d.split('/').length === depth).map((d) => mkdirRemote(sftp, `${dir}/${d}`)));
        }
        await Promise.all([
          ...set.files.map((f) => writeRemote(sftp, `${dir}/job/${f.path}`, f.content)),
          ...runtime.map((f) => writeRemote(sftp, `${dir}/lib/${f.path}`, f.content)),
          writeRemote(sftp, `${dir}/env.sh`, env.text),
          writeRemote(sftp, `${dir}/run.sh`, runScript(kind)),
        ]);
      } catch (err) {
        ch.end();
        return fail(`cannot upload the job to ${address}: ${(err as Error).message}`);
      }
      if (set.skippedKeys.length > 0) await system(`skipped variables with invalid keys: ${set.skippedKeys.join(', ')}`);
      if (env.skipped.length > 0) await system(`skipped environment variables with invalid names: ${env.skipped.join(', ')}`);
      if (ctx.signal.aborted) {
        ch.end();
        return result('cancelled', -1, 'cancelled before start');
      }

      // Stream the output, with backpressure: a paused channel stops
      // adjusting the SSH window, which blocks the remote writer.
      let lastActivity = Date.now();
      const touch = () => (lastActivity = Date.now());
      const sinks = [logSink((d) => ctx.log('stdout', d), touch), logSink((d) => ctx.log('stderr', d), touch)] as const;
      const finished = Promise.all(
        sinks.map(
          (sink) =>
            new Promise<void>((resolve) => {
              sink.once('finish', resolve);
              sink.once('error', () => resolve());
            }),
        ),
      );
      if (header.rest.length > 0) sinks[0].write(header.rest);
      ch.pipe(sinks[0]);
      ch.stderr.pipe(sinks[1]);

      ch.end('run\n');
      started = true;
      ctx.started();

      let stopping: 'timeout' | 'cancel' | undefined;
      const grace = (this.#opts.stopGraceSeconds ?? 10) * 1000;
      const signalGroup = async (signal: 'TERM' | 'KILL') => {
        // run.sh may not have written its pgid yet: retry briefly.
        for (let i = 0; i < 50 && !exitedFlag && exit === undefined; i++) {
          let code: number;
          try {
            code = await runShort(held, signalCommand(dir!, signal));
          } catch {
            return;
          }
          if (code !== 3) return;
          await sleep(100);
        }
      };
      const stop = (why: 'timeout' | 'cancel') => {
        if (stopping || exit !== undefined || exitedFlag) return;
        stopping = why;
        void (async () => {
          await signalGroup('TERM');
          const graceOver = await Promise.race([closed.then(() => false), sleep(grace).then(() => true)]);
          if (graceOver && exit === undefined) await signalGroup('KILL');
        })();
      };
      onAbort = () => stop('cancel');
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      if (ctx.signal.aborted) onAbort();
      if (spec.timeoutSeconds > 0) timer = setTimeout(() => stop('timeout'), spec.timeoutSeconds * 1000);

      // Wait for the exit; then for the output to drain (a process that
      // escaped the group may hold stdout open: stop waiting once idle).
      const exited = new Promise<void>((resolve) => {
        if (exit) return resolve();
        ch.once('exit', () => resolve());
      });
      await Promise.race([exited, closed]);
      clearTimeout(timer);
      lastActivity = Date.now();
      let idlePoll: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        Promise.all([closed, finished]).then(() => true),
        new Promise<boolean>((resolve) => {
          idlePoll = setInterval(() => {
            if (Date.now() - lastActivity > LOG_IDLE_MS) resolve(false);
          }, 500);
        }),
      ]);
      clearInterval(idlePoll);
      if (!drained) {
        await system('output streams did not end after the exit; output may be cut');
        ch.close();
      }

      if (exit === undefined) {
        connectionLost = true;
        const error = `connection to ${address} lost while the job ran`;
        await system(error);
        if (stopping === 'cancel') return result('cancelled', -1, 'cancelled');
        return result('failed', -1, error);
      }
      const { code, signal } = exit as { code: number | null; signal: string | null };
      const exitCode = code ?? -1;

      // Read what the job left.
      const warnings: string[] = [];
      const maxBytes = this.#opts.maxResultFileBytes ?? 16 * 1024 * 1024;
      let raw: { output?: string; condition?: string; variablesSet: Record<string, string> } = { variablesSet: {} };
      try {
        const sftp = await held.sftp();
        const read = (name: string, max: number) =>
          readRemote(sftp, `${dir}/job`, name, max).catch((err: Error) => {
            warnings.push(err.message);
            return undefined;
          });
        const variablesSet: Record<string, string> = {};
        let setStat: Stats | undefined;
        try {
          setStat = await sftpCall<Stats>((cb) => sftp.lstat(`${dir}/job/variables-set`, cb));
        } catch (err) {
          if (!isMissing(err)) throw err;
        }
        if (setStat?.isDirectory()) {
          const entries = await sftpCall<{ filename: string }[]>((cb) => sftp.readdir(`${dir}/job/variables-set`, cb));
          const names = entries.map((e) => e.filename).filter(isValidVariableKey).sort();
          const values = await Promise.all(names.map((n) => read(`variables-set/${n}`, maxBytes)));
          names.forEach((n, i) => {
            if (values[i] !== undefined) variablesSet[n] = values[i];
          });
        } else if (setStat) {
          warnings.push('variables-set is not a folder; ignored');
        }
        const [output, condition] = await Promise.all([read('output', maxBytes), read('condition', 1024)]);
        raw = { output, condition, variablesSet };
      } catch (err) {
        warnings.push(`cannot read the job's results from ${address}: ${(err as Error).message}`);
      }
      const files = parseJobResults(raw);
      for (const w of [...warnings, ...files.warnings]) await system(w);

      const base = { output: files.output, condition: files.condition, variablesSet: files.variablesSet, oomKilled: false };
      if (stopping === 'cancel') return { ...base, outcome: 'cancelled', exitCode, error: 'cancelled' };
      if (stopping === 'timeout') return { ...base, outcome: 'timed_out', exitCode, error: `timed out after ${spec.timeoutSeconds}s` };
      if (code === null) return { ...base, outcome: 'failed', exitCode, error: `killed by signal ${signal ?? 'unknown'}` };
      if (code === 0) return { ...base, outcome: 'succeeded', exitCode, error: '' };
      return { ...base, outcome: 'failed', exitCode, error: `exit code ${code}` };
    } finally {
      clearTimeout(timer);
      if (onAbort) ctx.signal.removeEventListener('abort', onAbort);
      try {
        if (!started) {
          // Before `run` the wrapper removes its folder itself on EOF: let it.
          ch.end();
          await Promise.race([closed, sleep(5000)]);
        }
        if (connectionLost || !held.alive) held.release(true);
        if (dir !== undefined) await this.#cleanup(held, target, dir, started && connectionLost, system);
      } finally {
        ch.close();
        held.release(false);
      }
    }
  }

  /** Removes the remote folder: SFTP first, `rm -rf` if that fails, a fresh connection if this one died. */
  async #cleanup(
    lease: SshLease,
    target: NonNullable<JobSpec['ssh']>,
    dir: string,
    killFirst: boolean,
    system: (line: string) => Promise<void>,
  ): Promise<void> {
    if (lease.alive && !killFirst) {
      try {
        await removeRemoteTree(await lease.sftp(), dir);
        return;
      } catch {
        // fall back to rm -rf
      }
      try {
        if ((await runShort(lease, removeCommand(dir, false))) === 0) return;
      } catch {
        // try a fresh connection
      }
    }
    let fresh: SshLease | undefined;
    try {
      fresh = await this.#pool.acquire(target, AbortSignal.timeout(30_000));
      const code = await runShort(fresh, removeCommand(dir, killFirst));
      if (code !== 0) throw new Error(`rm exited with ${code}`);
    } catch (err) {
      await system(`could not remove the job folder ${dir} on ${formatAddress(target.host, target.port)}: ${(err as Error).message}`).catch(() => {});
    } finally {
      fresh?.release();
    }
  }
}
