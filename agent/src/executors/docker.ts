// Runs bash/python/node jobs in a fresh, hardened Docker container each.
//
// Per job: a host folder (see job-files.ts) bind-mounted at /cronium/job,
// the runtime helpers (agent/runtime) read-only at /cronium/lib, output
// streamed through ctx.log with backpressure, and the container and folder
// removed afterwards whatever happens.

import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import Dockerode from 'dockerode';
import type { ExecutionResult, Executor, JobKind, JobSpec, RunContext } from '../job.ts';
import { demuxDockerStream } from './docker-demux.ts';
import { createJobFolder, readJobFolder, removeJobFolder, scriptFileName } from './job-files.ts';
import type { ScriptKind } from './job-files.ts';
import { WarmPool, type Warm } from './warm-pool.ts';
import { exportLines } from './shell-env.ts';

const MiB = 1024 * 1024;
/** After the exit, give up on the log stream once it makes no progress for this long. */
const LOG_IDLE_MS = 15_000;

export const JOB_LABEL = 'cronium.job';
export const ATTEMPT_LABEL = 'cronium.attempt';

/** Paths inside the container. */
export const CONTAINER_JOB_DIR = '/cronium/job';
const OOM_NOTE_WAIT_CHECKS = 30;
export const CONTAINER_LIB_DIR = '/cronium/lib';

export interface DockerImages {
  readonly bash: string;
  readonly python: string;
  readonly node: string;
}

export interface DockerExecutorOptions {
  /** Defaults to `new Dockerode()` (DOCKER_HOST or /var/run/docker.sock). */
  readonly docker?: Dockerode;
  /** Image per language. */
  readonly images: DockerImages;
  /** Host folder for the per-job folders. */
  readonly workRoot: string;
  /** Host path of agent/runtime (mounted read-only at /cronium/lib). */
  readonly runtimeDir: string;
  /** Grace period between SIGTERM and SIGKILL on cancel (default 10). */
  readonly stopGraceSeconds?: number;
  /** Used when spec.memoryBytes is 0 (default 256 MiB). */
  readonly defaultMemoryBytes?: number;
  /** Used when spec.cpus is 0 (default 1). */
  readonly defaultCpus?: number;
  /**
   * Network mode for jobs with spec.network (default 'bridge', Docker's
   * default network). Jobs without it always get 'none'.
   */
  readonly networkMode?: string;
  /** Max processes in the container (default 256). */
  readonly pidsLimit?: number;
  /** Size of the /tmp tmpfs (default '64m'). */
  readonly tmpfsSize?: string;
  /** Extra labels on every container (e.g. an agent id, for removeLeftoverContainers). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Containers kept started ahead, per image and limits, for repeat jobs (default 0: off). */
  readonly warmContainers?: number;
  /** Warm containers of a kind of job unused this long are removed (default 5 min). */
  readonly warmIdleMs?: number;
  readonly onWarmError?: (key: string, error: unknown) => void;
}

/** What a container is made for; jobs that share it can share warm containers. */
interface Limits {
  readonly image: string;
  readonly memory: number;
  readonly cpus: number;
  readonly networkMode: string;
}

interface WarmContainer extends Warm {
  readonly container: Dockerode.Container;
  /** Attached before start: stdin (the trigger) and the output. */
  readonly stream: NodeJS.ReadWriteStream;
  /** Host folder mounted at WARM_SLOT_DIR; the job's folder is made inside it. */
  readonly slotDir: string;
}

const STATIC_ENV = {
  PYTHONPATH: `${CONTAINER_LIB_DIR}/python`,
  NODE_PATH: `${CONTAINER_LIB_DIR}/node`,
  BASH_ENV: `${CONTAINER_LIB_DIR}/bash/cronium.sh`,
  HOME: '/tmp',
};

export const WARM_LABEL = 'cronium.warm';
const WARM_SLOT_DIR = '/cronium/slot';
const WARM_ENV_FILE = '.cronium-env';
/**
 * PID 2 of a warm container (tini is 1): waits for the name of the job folder
 * on stdin (only a name the agent makes: job-…), takes the job's environment
 * from it, closes stdin and becomes the interpreter, as a cold container's
 * command would be.
 */
const WARM_WAITER = [
  'IFS= read -r dir || exit 111',
  'case "$dir" in job-*) ;; *) exit 111 ;; esac',
  'case "$dir" in */*) exit 111 ;; esac',
  `. "${WARM_SLOT_DIR}/$dir/${WARM_ENV_FILE}"`,
  `exec "$1" "${WARM_SLOT_DIR}/$dir/$2" </dev/null`,
].join('\n');

function systemLog(ctx: RunContext): (line: string) => Promise<void> {
  return (line) => ctx.log('system', Buffer.from(line + '\n'));
}

function ignoreGone(err: unknown): void {
  if (statusCode(err) !== 404 && statusCode(err) !== 409) throw err;
}

const COMMANDS: Record<ScriptKind, (file: string) => string[]> = {
  bash: (f) => ['bash', f],
  python: (f) => ['python3', f],
  node: (f) => ['node', f],
};

export function formatBytes(n: number): string {
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${n} bytes`;
}

function isScriptKind(kind: JobKind): kind is ScriptKind {
  return kind === 'bash' || kind === 'python' || kind === 'node';
}

function statusCode(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null ? (err as { statusCode?: number }).statusCode : undefined;
}

/** A writable that hands each chunk to ctx.log and acknowledges it only once logged. */
function logSink(log: (data: Buffer) => Promise<void>): Writable {
  return new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, callback) {
      log(chunk).then(() => callback(), (err: Error) => callback(err));
    },
  });
}

export class DockerExecutor implements Executor {
  readonly name = 'docker';
  readonly kinds: readonly JobKind[] = ['bash', 'python', 'node'];
  readonly #docker: Dockerode;
  readonly #opts: DockerExecutorOptions;
  readonly #pool: WarmPool<WarmContainer> | undefined;

  constructor(options: DockerExecutorOptions) {
    this.#opts = options;
    this.#docker = options.docker ?? new Dockerode();
    const warm = options.warmContainers ?? 0;
    this.#pool = warm > 0 ? new WarmPool({ size: warm, idleMs: options.warmIdleMs ?? 300_000, onError: options.onWarmError }) : undefined;
  }

  async run(spec: JobSpec, ctx: RunContext): Promise<ExecutionResult> {
    const kind = spec.kind;
    if (!isScriptKind(kind)) throw new Error(`DockerExecutor cannot run ${kind} jobs`);
    const opts = this.#opts;
    const limits: Limits = {
      image: opts.images[kind],
      memory: spec.memoryBytes > 0 ? spec.memoryBytes : (opts.defaultMemoryBytes ?? 256 * MiB),
      cpus: spec.cpus > 0 ? spec.cpus : (opts.defaultCpus ?? 1),
      networkMode: spec.network ? (opts.networkMode ?? 'bridge') : 'none',
    };
    if (ctx.signal.aborted) return result('cancelled', -1, 'cancelled before start');
    const key = [kind, limits.image, limits.memory, limits.cpus, limits.networkMode].join('|');
    const warm = this.#pool?.take(key);
    if (warm) return this.#runWarm(warm, spec, kind, limits, ctx);
    const ran = await this.#runCold(spec, kind, limits, ctx);
    this.#pool?.keep(key, () => this.#makeWarm(kind, limits));
    return ran;
  }

  /** Removes the warm containers; waits for the cleanup of jobs that ran in them. */
  async close(): Promise<void> {
    await this.#pool?.close();
  }

  /** Ready warm containers for a kind at the default limits (for tests). */
  warmReady(kind: ScriptKind): number {
    const opts = this.#opts;
    const key = [kind, opts.images[kind], opts.defaultMemoryBytes ?? 256 * MiB, opts.defaultCpus ?? 1, 'none'].join('|');
    return this.#pool?.readyCount(key) ?? 0;
  }

  #containerOptions(kind: ScriptKind, limits: Limits, job: { cmd: string[]; env: Record<string, string>; binds: string[]; labels: Record<string, string>; stdin: boolean }) {
    const opts = this.#opts;
    return {
      Image: limits.image,
      Cmd: job.cmd,
      Env: Object.entries(job.env)
        .filter(([k]) => k !== '' && !k.includes('='))
        .map(([k, v]) => `${k}=${v}`),
      WorkingDir: '/tmp',
      User: '65534:65534',
      Labels: { ...opts.labels, ...job.labels },
      AttachStdin: job.stdin,
      AttachStdout: true,
      AttachStderr: true,
      OpenStdin: job.stdin,
      StdinOnce: job.stdin,
      Tty: false,
      HostConfig: {
        Binds: [...job.binds, `${opts.runtimeDir}:${CONTAINER_LIB_DIR}:ro`],
        // Production: network-enabled jobs use Docker's default bridge
        // ('bridge'); machines without one (tests here) pass 'host'.
        NetworkMode: limits.networkMode,
        CapDrop: ['ALL'],
        // Default seccomp profile stays on: no 'seccomp=unconfined' here.
        SecurityOpt: ['no-new-privileges'],
        ReadonlyRootfs: true,
        Tmpfs: { '/tmp': `rw,noexec,nosuid,size=${opts.tmpfsSize ?? '64m'}` },
        PidsLimit: opts.pidsLimit ?? 256,
        // Output reaches the agent through attach (capped per job there); the engine's
        // default json-file driver would also write all of it to the host's disk.
        LogConfig: { Type: 'none', Config: {} },
        Memory: limits.memory,
        MemorySwap: limits.memory, // equal to Memory: no swap
        NanoCpus: Math.round(limits.cpus * 1e9),
        // tini as PID 1: forwards SIGTERM to the script and reaps zombies.
        Init: true,
        Privileged: false,
        AutoRemove: false,
      },
    };
  }

  /** Creates a container, pulling its image once when the engine lacks it; a string says why it could not. */
  async #create(options: Dockerode.ContainerCreateOptions, system: (line: string) => Promise<void>): Promise<Dockerode.Container | string> {
    try {
      return await this.#docker.createContainer(options);
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      const image = String(options.Image);
      await system(`pulling docker image ${image}`);
      const pulled = await this.#pull(image);
      if (pulled !== true) {
        const error = `docker image ${image} not found and could not be pulled (${pulled})`;
        await system(error);
        return error;
      }
      return this.#docker.createContainer(options);
    }
  }

  /** The usual path: a container created and started for this job. */
  async #runCold(spec: JobSpec, kind: ScriptKind, limits: Limits, ctx: RunContext): Promise<ExecutionResult> {
    const system = systemLog(ctx);
    const { dir, skippedKeys } = await createJobFolder(this.#opts.workRoot, spec, kind);
    let container: Dockerode.Container | undefined;
    try {
      if (skippedKeys.length > 0) await system(`skipped variables with invalid keys: ${skippedKeys.join(', ')}`);
      const created = await this.#create(
        this.#containerOptions(kind, limits, {
          cmd: COMMANDS[kind](`${CONTAINER_JOB_DIR}/${scriptFileName(kind)}`),
          env: { ...spec.env, ...STATIC_ENV, CRONIUM_JOB_DIR: CONTAINER_JOB_DIR },
          binds: [`${dir}:${CONTAINER_JOB_DIR}:rw`],
          labels: { [JOB_LABEL]: spec.jobId, [ATTEMPT_LABEL]: String(spec.attempt) },
          stdin: false,
        }),
        system,
      );
      if (typeof created === 'string') return result('failed', -1, created);
      container = created;
      // Attach before start, or early output is lost.
      const stream = await container.attach({ stream: true, stdout: true, stderr: true });
      return await this.#supervise(container, stream, dir, spec, limits, ctx, () => created.start());
    } finally {
      try {
        await container?.remove({ force: true, v: true }).catch(ignoreGone);
      } finally {
        await removeJobFolder(dir);
      }
    }
  }

  /** A container made ahead: its job folder goes into its slot, and its waiting shell is told the folder's name. */
  async #runWarm(warm: WarmContainer, spec: JobSpec, kind: ScriptKind, limits: Limits, ctx: RunContext): Promise<ExecutionResult> {
    const system = systemLog(ctx);
    try {
      const { dir, skippedKeys } = await createJobFolder(warm.slotDir, spec, kind);
      if (skippedKeys.length > 0) await system(`skipped variables with invalid keys: ${skippedKeys.join(', ')}`);
      const { lines: env, skipped } = exportLines({ ...spec.env, CRONIUM_JOB_DIR: `${WARM_SLOT_DIR}/${basename(dir)}` });
      if (skipped.length > 0) await system(`skipped environment variables with invalid names: ${skipped.join(', ')}`);
      await writeFile(join(dir, WARM_ENV_FILE), env.join('\n') + '\n', { mode: 0o644 });
      return await this.#supervise(warm.container, warm.stream, dir, spec, limits, ctx, async () => {
        warm.stream.write(`${basename(dir)}\n`);
      });
    } finally {
      // After the result: the job's end is reported without waiting for the engine to remove the container.
      this.#pool!.track(warm.discard());
    }
  }

  async #makeWarm(kind: ScriptKind, limits: Limits): Promise<WarmContainer> {
    const slotDir = await mkdtemp(join(this.#opts.workRoot, 'warm-'));
    await chmod(slotDir, 0o755);
    const discardFolder = () => removeJobFolder(slotDir);
    try {
      const created = await this.#create(
        this.#containerOptions(kind, limits, {
          cmd: ['sh', '-c', WARM_WAITER, 'cronium-warm', COMMANDS[kind]('')[0]!, scriptFileName(kind)],
          env: STATIC_ENV,
          binds: [`${slotDir}:${WARM_SLOT_DIR}:rw`],
          labels: { [JOB_LABEL]: 'warm', [WARM_LABEL]: '1' },
          stdin: true,
        }),
        async () => {},
      );
      if (typeof created === 'string') throw new Error(created);
      const stream = (await created.attach({ stream: true, hijack: true, stdin: true, stdout: true, stderr: true })) as NodeJS.ReadWriteStream;
      await created.start();
      return {
        container: created,
        stream,
        slotDir,
        async discard() {
          (stream as unknown as { destroy?: () => void }).destroy?.();
          try {
            await created.remove({ force: true, v: true }).catch(ignoreGone);
          } finally {
            await discardFolder();
          }
        },
      };
    } catch (err) {
      await discardFolder();
      throw err;
    }
  }

  /**
   * Starts the job (`begin`) and follows it to its end: logs, timeout,
   * cancel (SIGTERM, then SIGKILL after the grace period), OOM, results.
   */
  async #supervise(
    container: Dockerode.Container,
    stream: NodeJS.ReadWriteStream,
    dir: string,
    spec: JobSpec,
    limits: Limits,
    ctx: RunContext,
    begin: () => Promise<unknown>,
  ): Promise<ExecutionResult> {
    const opts = this.#opts;
    const system = systemLog(ctx);
    let timer: NodeJS.Timeout | undefined;
    let cancelled = false;
    let timedOut = false;
    const onAbort = () => {
      cancelled = true;
      container.stop({ t: opts.stopGraceSeconds ?? 10 }).catch(() => {});
    };
    const logs = this.#pipeLogs(stream, ctx);
    logs.done.catch(() => {}); // awaited below; avoid an unhandled rejection if we throw first
    try {
      if (ctx.signal.aborted) return result('cancelled', -1, 'cancelled before start');
      await begin();
      ctx.started();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      if (ctx.signal.aborted) onAbort();
      if (spec.timeoutSeconds > 0) {
        timer = setTimeout(() => {
          if (cancelled) return;
          timedOut = true;
          container.kill({ signal: 'SIGKILL' }).catch(() => {});
        }, spec.timeoutSeconds * 1000);
      }

      const waited = (await container.wait()) as { StatusCode: number };
      clearTimeout(timer);
      // The attach stream ends after the exit; wait for it or output is cut.
      if (!(await logs.settled(LOG_IDLE_MS))) await system('log stream did not end after the exit; output may be cut');
      let info = await container.inspect();
      // dockerd records the cgroup's OOM event asynchronously (seconds later on a loaded host): a SIGKILL we did not
      // send may be an OOM kill not yet noted. Only such exits wait, up to OOM_NOTE_WAIT_CHECKS × 100 ms.
      for (let check = 0; check < OOM_NOTE_WAIT_CHECKS && info.State.ExitCode === 137 && !info.State.OOMKilled && !cancelled && !timedOut; check++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        info = await container.inspect();
      }
      const exitCode = info.State.ExitCode ?? waited.StatusCode;
      const oomKilled = info.State.OOMKilled === true;

      const files = await readJobFolder(dir);
      for (const w of files.warnings) await system(w);
      const base = { output: files.output, condition: files.condition, variablesSet: files.variablesSet, oomKilled };
      if (cancelled) return { ...base, outcome: 'cancelled', exitCode, error: 'cancelled' };
      if (timedOut) return { ...base, outcome: 'timed_out', exitCode, error: `timed out after ${spec.timeoutSeconds}s` };
      if (oomKilled) return { ...base, outcome: 'failed', exitCode, error: `out of memory (limit ${formatBytes(limits.memory)})` };
      if (exitCode === 0) return { ...base, outcome: 'succeeded', exitCode, error: '' };
      return { ...base, outcome: 'failed', exitCode, error: `exit code ${exitCode}` };
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onAbort);
      (stream as unknown as { destroy?: () => void }).destroy?.();
    }
  }

  /** Pulls an image; true, or the reason it could not. */
  async #pull(image: string): Promise<true | string> {
    try {
      const progress = await this.#docker.pull(image);
      await new Promise<void>((resolve, reject) =>
        this.#docker.modem.followProgress(progress, (err: Error | null) => (err ? reject(err) : resolve())),
      );
      return true;
    } catch (err) {
      return (err as Error).message.split('\n')[0] ?? String(err);
    }
  }

  /**
   * Demuxes the attach stream into stdout/stderr and forwards it to ctx.log.
   * The demuxer ignores write() results, so pause the source while a sink is
   * over its high-water mark: a slow ctx.log slows the container's output.
   * Resolves when the stream has ended and every chunk has been logged.
   */
  #pipeLogs(stream: NodeJS.ReadWriteStream, ctx: RunContext): LogPipe {
    let lastActivity = Date.now();
    const forward = (name: 'stdout' | 'stderr') => async (data: Buffer) => {
      lastActivity = Date.now();
      await ctx.log(name, data);
      lastActivity = Date.now();
    };
    const sinks = [logSink(forward('stdout')), logSink(forward('stderr'))] as const;
    const paced = (sink: Writable) =>
      ({
        write(chunk: Buffer) {
          if (!sink.write(chunk)) {
            stream.pause();
            sink.once('drain', () => stream.resume());
          }
          return true;
        },
      });
    demuxDockerStream(stream as unknown as Readable, paced(sinks[0]), paced(sinks[1]));

    const finished = (sink: Writable) =>
      new Promise<void>((resolve, reject) => {
        sink.once('finish', resolve);
        sink.once('error', reject);
      });
    const done = new Promise<void>((resolve, reject) => {
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        for (const sink of sinks) sink.end();
        Promise.all(sinks.map(finished)).then(() => resolve(), reject);
      };
      stream.once('end', end);
      stream.once('close', end);
      stream.once('error', end);
    });
    const settled = async (idleMs: number): Promise<boolean> => {
      lastActivity = Date.now();
      let poll: NodeJS.Timeout | undefined;
      const idle = new Promise<boolean>((resolve) => {
        poll = setInterval(() => {
          if (Date.now() - lastActivity > idleMs) resolve(false);
        }, Math.min(1000, idleMs));
      });
      try {
        return await Promise.race([done.then(() => true), idle]);
      } finally {
        clearInterval(poll);
      }
    };
    return { done, settled };
  }
}

interface LogPipe {
  /** Resolves once the stream ended and every chunk went through ctx.log. */
  readonly done: Promise<void>;
  /** Waits for `done`; false if the stream made no progress for idleMs. */
  settled(idleMs: number): Promise<boolean>;
}

function result(outcome: ExecutionResult['outcome'], exitCode: number, error: string): ExecutionResult {
  return { outcome, exitCode, error, variablesSet: {}, oomKilled: false };
}

/**
 * Force-removes containers left by an earlier agent process (label
 * `cronium.job`). `match` narrows it to labels with given values, e.g.
 * `{ 'cronium.job': id }` or an agent label set through the `labels` option.
 * Returns the number of containers removed.
 */
export async function removeLeftoverContainers(
  docker: Dockerode,
  match: Readonly<Record<string, string>> = {},
): Promise<number> {
  const label = [JOB_LABEL, ...Object.entries(match).map(([k, v]) => `${k}=${v}`)];
  const containers = await docker.listContainers({ all: true, filters: { label } });
  let removed = 0;
  for (const c of containers) {
    try {
      await docker.getContainer(c.Id).remove({ force: true, v: true });
      removed++;
    } catch (err) {
      if (statusCode(err) !== 404 && statusCode(err) !== 409) throw err;
    }
  }
  return removed;
}
