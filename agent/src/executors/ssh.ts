// Runs bash/python/node jobs on servers that run nothing of ours, over SSH
// (ssh2, pooled connections, pinned host keys).
//
// Per job, one exec channel on a pooled connection and no other round trip
// (ssh-job-script.ts has the protocol):
//   1. the channel runs WRAPPER_COMMAND, fixed text; at once the agent sends
//      on its stdin the results tag and the payload (the per-job folder,
//      job-files.ts layout, under job/, the runtime helpers under lib/, the
//      environment), then EOF;
//   2. the wrapper makes a fresh folder (`mkdir` under the random name the
//      agent sent) and prints its path (on a `cronium-job-dir:` line, so
//      output from the login shell's rc files is skipped); the agent needs it
//      only for kill and cleanup commands;
//   3. the wrapper runs the payload in a new session (setsid), so the job is
//      its own process group, whose id it writes to `pgid`; stdout/stderr
//      stream back live;
//   4. when the job exits, the wrapper kills what is left of the group,
//      prints the result files (output, condition, variables-set) and the
//      job's exit code after a marker line with the tag, then execs `rm -rf`
//      of the folder (the channel's exit status is rm's).
// Timeout and cancel run a fixed `kill` command on the process group: SIGTERM,
// then SIGKILL after the grace period. A folder the wrapper could not remove
// (connection lost) is removed with `rm -rf`, on a fresh connection if needed.
//
// No user string (script, env, input, variables, names) ever goes into a
// command line: they travel on stdin, single-quoted. The only dynamic part of
// any command line is the folder path the wrapper printed, after validation.
//
// Remote folder:
//   DIR/job/…   CRONIUM_JOB_DIR (script, input.json, event.json, variables/, variables-set/, output, condition)
//   DIR/lib/…   runtime helpers (bash/cronium.sh, and python/cronium or node/cronium for those jobs)
//   DIR/pgid
//
// Server requirements: a POSIX login shell for the user, /dev/stdin,
// mkdir, wc, cat, rm, setsid (util-linux) or perl, the SFTP subsystem (the
// pool's health check of an idle connection), bash / python3 / node on
// the PATH (spec.env may set PATH), and MaxSessions at least the pool's
// maxChannelsPerConnection (OpenSSH's default 10 ≥ the default 8). The job
// runs as the SSH user, in DIR/job.

import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { Writable } from 'node:stream';
import type { ClientChannel } from 'ssh2';
import type { ExecutionResult, Executor, JobKind, JobSpec, RunContext } from '../job.ts';
import { parseJobResults } from './job-files.ts';
import type { ScriptKind } from './job-files.ts';
import { jobPayload, parseWrapperResults, ResultsTap, resultsMarker, runtimeText, WRAPPER_COMMAND, type PayloadFile } from './ssh-job-script.ts';
import { shellQuote } from './shell-env.ts';
import { SshPool, type SshLease } from './ssh-pool.ts';
import { formatAddress, SshConnectError } from './ssh-fingerprint.ts';

export { fingerprintOf, keyTypeOf, normalizeFingerprint, SshConnectError } from './ssh-fingerprint.ts';
export type { SshEndpoint } from './ssh-fingerprint.ts';
export { SshPool } from './ssh-pool.ts';
export type { SshLease, SshPoolOptions, SshPoolStats } from './ssh-pool.ts';

export interface SshExecutorOptions {
  /** Local path of agent/runtime (bash/cronium.sh, python/cronium, node/cronium), sent with each job. */
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
/** Tries of a kill command while the job's process group is not there yet (100 ms apart). */
const SIGNAL_TRIES = 50;

/** Absolute, only [A-Za-z0-9._/-], no `.`/`..` segments, made from our template (the wrapper checks the same). */
export function isSafeRemoteDir(path: string): boolean {
  if (path.length < 2 || path.length > 512 || !/^\/[A-Za-z0-9._/-]+$/.test(path)) return false;
  const parts = path.split('/').slice(1);
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return false;
  return /^cronium-job\.[A-Za-z0-9]+$/.test(parts[parts.length - 1] ?? '');
}

/**
 * Sends a signal to the job's process group. Exits 3 while the group is not
 * there yet (no pgid written, or the payload still being set up), so the
 * caller tries again; `leaderOnly` signals just the process itself.
 */
function signalCommand(dir: string, signal: 'TERM' | 'KILL', leaderOnly = false): string {
  const read = `p=$(cat ${shellQuote(`${dir}/pgid`)} 2>/dev/null); case $p in '' | *[!0-9]*) exit 3 ;; esac; `;
  if (leaderOnly) return `${read}kill -s ${signal} "$p"`;
  return `${read}kill -s ${signal} -- "-$p" 2>/dev/null && exit 0; kill -0 "$p" 2>/dev/null && exit 3; exit 0`;
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

const NAME_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A fresh, unguessable folder name (like mktemp's XXXXXXXXXX, but 20 characters). */
function folderName(): string {
  return [...randomBytes(20)].map((b) => NAME_CHARS[b % NAME_CHARS.length]).join('');
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

/**
 * The runtime helpers as payload text (runtimeText), read once, per language:
 * a job gets its language's helper and the bash one (BASH_ENV), not the others.
 */
async function loadRuntime(root: string): Promise<Record<ScriptKind, Buffer>> {
  const files: PayloadFile[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.parentPath.split(sep).includes('__pycache__')) continue;
    const full = join(entry.parentPath, entry.name);
    files.push({ path: relative(root, full).split(sep).join('/'), content: await readFile(full) });
  }
  if (!files.some((f) => f.path === 'bash/cronium.sh')) throw new Error(`runtime helpers not found in ${root}`);
  files.sort((a, b) => a.path.localeCompare(b.path));
  const helpersOf = (kind: ScriptKind) => runtimeText(files.filter((f) => f.path.startsWith('bash/') || f.path.startsWith(`${kind}/`)));
  return { bash: helpersOf('bash'), python: helpersOf('python'), node: helpersOf('node') };
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
  #runtime: Promise<Record<ScriptKind, Buffer>> | undefined;

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

    let runtime: Buffer;
    try {
      this.#runtime ??= loadRuntime(this.#opts.runtimeDir);
      runtime = (await this.#runtime)[kind];
    } catch (err) {
      this.#runtime = undefined;
      return fail(`cannot read the runtime helpers: ${(err as Error).message}`);
    }
    const payload = jobPayload(spec, kind, runtime);
    const maxBytes = this.#opts.maxResultFileBytes ?? 16 * 1024 * 1024;

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
    // Exit and close, whenever they come: a short job's exit can arrive in the same read as the folder line.
    let exit: { code: number | null; signal: string | null } | undefined;
    const exited = new Promise<void>((resolve) =>
      ch.once('exit', (code: number | null, signal?: string) => {
        exit = { code, signal: signal ?? null };
        resolve();
      }),
    );

    let dir: string | undefined;
    let started = false;
    let removed = false;
    let connectionLost = false;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      // EOF without the tag line: the wrapper exits before making a folder.
      if (ctx.signal.aborted) return result('cancelled', -1, 'cancelled before start');
      const tag = randomBytes(16).toString('hex');
      ch.write(`${tag} ${folderName()} ${maxBytes}\n`);
      ch.end(payload.text);

      let header;
      try {
        header = await readHeader(ch, address);
      } catch (err) {
        return fail((err as Error).message);
      }
      if (!isSafeRemoteDir(header.line)) {
        return fail(`refusing the job folder ${JSON.stringify(header.line.slice(0, 200))} made on ${address}: not a safe absolute path`);
      }
      dir = header.line;

      if (payload.skippedKeys.length > 0) await system(`skipped variables with invalid keys: ${payload.skippedKeys.join(', ')}`);
      if (payload.skippedEnv.length > 0) await system(`skipped environment variables with invalid names: ${payload.skippedEnv.join(', ')}`);

      // Stream the output, with backpressure: a paused channel stops
      // adjusting the SSH window, which blocks the remote writer.
      let lastActivity = Date.now();
      const touch = () => (lastActivity = Date.now());
      const tap = new ResultsTap(resultsMarker(tag));
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
      if (header.rest.length > 0) tap.write(header.rest);
      ch.pipe(tap).pipe(sinks[0]);
      ch.stderr.pipe(sinks[1]);
      started = true;
      ctx.started();

      let stopping: 'timeout' | 'cancel' | undefined;
      const grace = (this.#opts.stopGraceSeconds ?? 10) * 1000;
      const signalGroup = async (signal: 'TERM' | 'KILL') => {
        // The group may not be there yet (pgid not written, payload being set up): retry briefly, then signal the leader.
        for (let i = 0; i <= SIGNAL_TRIES && !exitedFlag && exit === undefined; i++) {
          let code: number;
          try {
            code = await runShort(held, signalCommand(dir!, signal, i === SIGNAL_TRIES));
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
      // What the job left and its exit code, as the wrapper sent them back; then rm's exit status.
      const tapped = tap.results;
      const sent = tapped ? parseWrapperResults(tapped) : undefined;
      const ended = exit as { code: number | null; signal: string | null };
      removed = sent?.code !== undefined && ended.code === 0;
      const { code, signal } = sent?.code !== undefined ? { code: sent.code, signal: null } : ended;
      const exitCode = code ?? -1;
      if (sent && sent.rest.length > 0) await ctx.log('stdout', sent.rest);
      const files = parseJobResults(sent ?? { variablesSet: {} });
      const warnings = sent ? sent.warnings : [`the job's results did not come back from ${address}`];
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
          // Before the job started the wrapper removes its folder itself: let it.
          ch.end();
          await Promise.race([closed, sleep(5000)]);
        }
        if (connectionLost || !held.alive) held.release(true);
        if (dir !== undefined && !removed) await this.#cleanup(held, target, dir, started && connectionLost, system);
      } finally {
        ch.close();
        held.release(false);
      }
    }
  }

  /** Removes the remote folder the wrapper left: `rm -rf` on this connection, or on a fresh one if this one died. */
  async #cleanup(
    lease: SshLease,
    target: NonNullable<JobSpec['ssh']>,
    dir: string,
    killFirst: boolean,
    system: (line: string) => Promise<void>,
  ): Promise<void> {
    if (lease.alive && !killFirst) {
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
