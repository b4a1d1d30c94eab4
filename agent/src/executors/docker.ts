// Runs bash/python/node jobs in a fresh, hardened Docker container each.
//
// Per job: a host folder (see job-files.ts) bind-mounted at /cronium/job,
// the runtime helpers (agent/runtime) read-only at /cronium/lib, output
// streamed through ctx.log with backpressure, and the container and folder
// removed afterwards whatever happens.

import { Writable } from 'node:stream';
import Dockerode from 'dockerode';
import type { ExecutionResult, Executor, JobKind, JobSpec, RunContext } from '../job.ts';
import { createJobFolder, readJobFolder, removeJobFolder, scriptFileName } from './job-files.ts';
import type { ScriptKind } from './job-files.ts';

const MiB = 1024 * 1024;
/** After the exit, give up on the log stream once it makes no progress for this long. */
const LOG_IDLE_MS = 15_000;

export const JOB_LABEL = 'cronium.job';
export const ATTEMPT_LABEL = 'cronium.attempt';

/** Paths inside the container. */
export const CONTAINER_JOB_DIR = '/cronium/job';
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

  constructor(options: DockerExecutorOptions) {
    this.#opts = options;
    this.#docker = options.docker ?? new Dockerode();
  }

  async run(spec: JobSpec, ctx: RunContext): Promise<ExecutionResult> {
    const kind = spec.kind;
    if (!isScriptKind(kind)) throw new Error(`DockerExecutor cannot run ${kind} jobs`);
    const opts = this.#opts;
    const image = opts.images[kind];
    const memory = spec.memoryBytes > 0 ? spec.memoryBytes : (opts.defaultMemoryBytes ?? 256 * MiB);
    const cpus = spec.cpus > 0 ? spec.cpus : (opts.defaultCpus ?? 1);
    const system = (line: string) => ctx.log('system', Buffer.from(line + '\n'));

    if (ctx.signal.aborted) return result('cancelled', -1, 'cancelled before start');

    const { dir, skippedKeys } = await createJobFolder(opts.workRoot, spec, kind);
    let container: Dockerode.Container | undefined;
    let stream: NodeJS.ReadWriteStream | undefined;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      if (skippedKeys.length > 0) await system(`skipped variables with invalid keys: ${skippedKeys.join(', ')}`);
      const env: Record<string, string> = {
        ...spec.env,
        CRONIUM_JOB_DIR: CONTAINER_JOB_DIR,
        PYTHONPATH: `${CONTAINER_LIB_DIR}/python`,
        NODE_PATH: `${CONTAINER_LIB_DIR}/node`,
        BASH_ENV: `${CONTAINER_LIB_DIR}/bash/cronium.sh`,
        HOME: '/tmp',
      };
      const create = () => this.#docker.createContainer({
          Image: image,
          Cmd: COMMANDS[kind](`${CONTAINER_JOB_DIR}/${scriptFileName(kind)}`),
          Env: Object.entries(env)
            .filter(([k]) => k !== '' && !k.includes('='))
            .map(([k, v]) => `${k}=${v}`),
          WorkingDir: '/tmp',
          User: '65534:65534',
          Labels: { ...opts.labels, [JOB_LABEL]: spec.jobId, [ATTEMPT_LABEL]: String(spec.attempt) },
          AttachStdout: true,
          AttachStderr: true,
          Tty: false,
          OpenStdin: false,
          HostConfig: {
            Binds: [`${dir}:${CONTAINER_JOB_DIR}:rw`, `${opts.runtimeDir}:${CONTAINER_LIB_DIR}:ro`],
            // Production: network-enabled jobs use Docker's default bridge
            // ('bridge'); machines without one (tests here) pass 'host'.
            NetworkMode: spec.network ? (opts.networkMode ?? 'bridge') : 'none',
            CapDrop: ['ALL'],
            // Default seccomp profile stays on: no 'seccomp=unconfined' here.
            SecurityOpt: ['no-new-privileges'],
            ReadonlyRootfs: true,
            Tmpfs: { '/tmp': `rw,noexec,nosuid,size=${opts.tmpfsSize ?? '64m'}` },
            PidsLimit: opts.pidsLimit ?? 256,
            // Output reaches the agent through attach (capped per job there); the engine's
            // default json-file driver would also write all of it to the host's disk.
            LogConfig: { Type: 'none', Config: {} },
            Memory: memory,
            MemorySwap: memory, // equal to Memory: no swap
            NanoCpus: Math.round(cpus * 1e9),
            // tini as PID 1: forwards SIGTERM to the script and reaps zombies.
            Init: true,
            Privileged: false,
            AutoRemove: false,
          },
        });
      try {
        container = await create();
      } catch (err) {
        if (statusCode(err) !== 404) throw err;
        await system(`pulling docker image ${image}`);
        const pulled = await this.#pull(image);
        if (pulled !== true) {
          const error = `docker image ${image} not found and could not be pulled (${pulled})`;
          await system(error);
          return result('failed', -1, error);
        }
        container = await create();
      }

      // Attach before start, or early output is lost.
      stream = await container.attach({ stream: true, stdout: true, stderr: true });
      const logs = this.#pipeLogs(stream, ctx);
      logs.done.catch(() => {}); // awaited below; avoid an unhandled rejection if we throw first

      let cancelled = false;
      let timedOut = false;
      const stopper = container;
      onAbort = () => {
        cancelled = true;
        stopper.stop({ t: opts.stopGraceSeconds ?? 10 }).catch(() => {});
      };
      if (ctx.signal.aborted) return result('cancelled', -1, 'cancelled before start');
      await container.start();
      ctx.started();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      if (ctx.signal.aborted) onAbort();
      if (spec.timeoutSeconds > 0) {
        timer = setTimeout(() => {
          if (cancelled) return;
          timedOut = true;
          stopper.kill({ signal: 'SIGKILL' }).catch(() => {});
        }, spec.timeoutSeconds * 1000);
      }

      const waited = (await container.wait()) as { StatusCode: number };
      clearTimeout(timer);
      // The attach stream ends after the exit; wait for it or output is cut.
      if (!(await logs.settled(LOG_IDLE_MS))) await system('log stream did not end after the exit; output may be cut');
      let info = await container.inspect();
      // dockerd records the cgroup's OOM event asynchronously: a SIGKILL we did not send may be an OOM kill not yet noted.
      for (let check = 0; check < 5 && info.State.ExitCode === 137 && !info.State.OOMKilled && !cancelled && !timedOut; check++) {
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
      if (oomKilled) return { ...base, outcome: 'failed', exitCode, error: `out of memory (limit ${formatBytes(memory)})` };
      if (exitCode === 0) return { ...base, outcome: 'succeeded', exitCode, error: '' };
      return { ...base, outcome: 'failed', exitCode, error: `exit code ${exitCode}` };
    } finally {
      clearTimeout(timer);
      if (onAbort) ctx.signal.removeEventListener('abort', onAbort);
      (stream as unknown as { destroy?: () => void } | undefined)?.destroy?.();
      try {
        await container?.remove({ force: true, v: true }).catch((err: unknown) => {
          if (statusCode(err) !== 404 && statusCode(err) !== 409) throw err;
        });
      } finally {
        await removeJobFolder(dir);
      }
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
   * demuxStream ignores write() results, so pause the source while a sink is
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
      }) as unknown as NodeJS.WritableStream;
    this.#docker.modem.demuxStream(stream, paced(sinks[0]), paced(sinks[1]));

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
