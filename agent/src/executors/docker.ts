// Runs bash/python/node jobs in a fresh, hardened Docker container each.
//
// Per job: a host folder (see job-files.ts) bind-mounted at /cronium/job,
// the runtime helpers (agent/runtime) read-only at /cronium/lib, the script
// run by the supervisor (job-supervisor.ts), which reports its exit on the
// output streams, output streamed through ctx.log with backpressure, and the
// container and folder removed whatever happens, once the result is stored.
//
// A job without network joins a network namespace made ahead for it alone
// (`container:<sandbox>`; the sandbox was started with network mode `none`):
// the engine's setup of a `none` namespace, the slowest part of a start here,
// is then paid before the job arrives.

import { chmod, mkdtemp } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import Dockerode from 'dockerode';
import type { ExecutionResult, Executor, JobKind, JobSpec, RunContext } from '../job.ts';
import { createJobFolder, readJobFolder, removeJobFolder } from './job-files.ts';
import type { ScriptKind } from './job-files.ts';
import { WarmPool, type Warm } from './warm-pool.ts';
import { handOver } from './job-supervisor.ts';
import { pipeOutput } from './docker-output.ts';
import {
  ATTEMPT_LABEL,
  CONTAINER_JOB_DIR,
  JOB_LABEL,
  MiB,
  jobContainerOptions,
  sandboxContainerOptions,
  writeJobEnv,
  type Limits,
} from './docker-settings.ts';


/** After the exit, give up on the log stream once it makes no progress for this long. */
const LOG_IDLE_MS = 15_000;
const OOM_NOTE_WAIT_CHECKS = 30;

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
  /** Network-less namespaces kept made ahead, one per job (default 2; 0: jobs make their own). */
  readonly networkSandboxes?: number;
}

interface WarmContainer extends Warm {
  readonly container: Dockerode.Container;
  /** Attached before start: stdin (the trigger) and the output. */
  readonly stream: NodeJS.ReadWriteStream;
  /** Host folder mounted at WARM_SLOT_DIR; the job's folder is made inside it. */
  readonly slotDir: string;
}

/** A started container holding a network namespace with only loopback, for one job to join. */
interface NetworkSandbox extends Warm {
  readonly id: string;
}
const SANDBOX_KEY = 'network-sandbox';
/** How long a finished job's cleanup waits for its result to be stored. */
const REPORT_WAIT_MS = 1000;

export const WARM_LABEL = 'cronium.warm';
const WARM_SLOT_DIR = '/cronium/slot';

function systemLog(ctx: RunContext): (line: string) => Promise<void> {
  return (line) => ctx.log('system', Buffer.from(line + '\n'));
}

/** With a supervisor, side by side: nothing runs, so no output can be lost, until the job is handed over on stdin. */
async function attachAndStart(container: Dockerode.Container, direct: boolean): Promise<NodeJS.ReadWriteStream> {
  const attach = () => container.attach({ stream: true, hijack: true, stdin: !direct, stdout: true, stderr: true }) as Promise<NodeJS.ReadWriteStream>;
  if (!direct) return (await Promise.all([attach(), container.start()]))[0];
  const stream = await attach(); // before start, or early output is lost
  await container.start();
  return stream;
}

/** Where images keep bash (the supervisor's `bash` is looked up on PATH; these cover the usual ones). */
const BASH_PATHS = ['/bin/bash', '/usr/bin/bash', '/usr/local/bin/bash'];

function ignoreGone(err: unknown): void {
  if (statusCode(err) !== 404 && statusCode(err) !== 409) throw err;
}

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

export class DockerExecutor implements Executor {
  readonly name = 'docker';
  readonly kinds: readonly JobKind[] = ['bash', 'python', 'node'];
  readonly #docker: Dockerode;
  readonly #opts: DockerExecutorOptions;
  readonly #pool: WarmPool<WarmContainer> | undefined;
  readonly #sandboxes: WarmPool<NetworkSandbox> | undefined;
  /** Removal of finished jobs' containers and folders, done after their results. */
  readonly #cleanups = new Set<Promise<void>>();
  /** Jobs in run() now. */
  #running = 0;
  /** Whether an image has bash for the supervisor, looked up once per image; without, its jobs run the interpreter directly. */
  readonly #imageHasBash = new Map<string, boolean>();
  #close: () => void = () => {};
  readonly #closing = new Promise<void>((resolve) => (this.#close = resolve));

  constructor(options: DockerExecutorOptions) {
    this.#opts = options;
    this.#docker = options.docker ?? new Dockerode();
    const warm = options.warmContainers ?? 0;
    const idleMs = options.warmIdleMs ?? 300_000;
    this.#pool = warm > 0 ? new WarmPool({ size: warm, idleMs, onError: options.onWarmError }) : undefined;
    const sandboxes = options.networkSandboxes ?? 2;
    this.#sandboxes = sandboxes > 0 ? new WarmPool({ size: sandboxes, idleMs, onError: options.onWarmError }) : undefined;
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
    // Warm containers need the supervisor, so bash in the image.
    const refill = () => (this.#imageHasBash.get(limits.image) ? this.#pool?.keep(key, () => this.#makeWarm(kind, limits)) : undefined);
    this.#running++;
    try {
      if (warm) return await this.#runWarm(warm, spec, kind, limits, ctx, refill);
      return await this.#runCold(spec, kind, limits, ctx, refill);
    } finally {
      this.#running--;
    }
  }

  /** Resolves once the containers and folders of the jobs that returned are removed. */
  async cleanedUp(): Promise<void> {
    while (this.#cleanups.size > 0) await Promise.all([...this.#cleanups]);
  }

  /** Removes the warm containers and network sandboxes; waits for the cleanup of finished jobs. */
  async close(): Promise<void> {
    this.#close();
    await Promise.all([this.#pool?.close(), this.#sandboxes?.close()]);
    await this.cleanedUp();
  }

  /** Ready warm containers for a kind at the default limits (for tests). */
  warmReady(kind: ScriptKind): number {
    const opts = this.#opts;
    const key = [kind, opts.images[kind], opts.defaultMemoryBytes ?? 256 * MiB, opts.defaultCpus ?? 1, 'none'].join('|');
    return this.#pool?.readyCount(key) ?? 0;
  }

  /** Ready network sandboxes (for tests). */
  sandboxesReady(): number {
    return this.#sandboxes?.readyCount(SANDBOX_KEY) ?? 0;
  }

  /**
   * After a job's result: once the control plane has it (ctx.reported, at most
   * REPORT_WAIT_MS; at once when closing), removes what the job used, then
   * makes what the next jobs will take (`refill`). The engine's work for both
   * would otherwise compete with the result's delivery, and the job's start.
   */
  #afterResult(ctx: RunContext, remove: () => Promise<unknown>, refill: () => void): void {
    const work = async () => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([ctx.reported, this.#closing, new Promise((resolve) => (timer = setTimeout(resolve, REPORT_WAIT_MS)))]);
      clearTimeout(timer);
      try {
        await remove();
      } finally {
        refill();
      }
    };
    const tracked: Promise<void> = work()
      .then(() => {}, () => {}) // a container left behind is removed at the agent's next start (removeLeftoverContainers)
      .finally(() => this.#cleanups.delete(tracked));
    this.#cleanups.add(tracked);
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
  async #runCold(spec: JobSpec, kind: ScriptKind, limits: Limits, ctx: RunContext, refill: () => void): Promise<ExecutionResult> {
    const system = systemLog(ctx);
    const sandbox = limits.networkMode === 'none' ? this.#sandboxes?.take(SANDBOX_KEY) : undefined;
    let dir: string | undefined;
    let container: Dockerode.Container | undefined;
    try {
      const made = await createJobFolder(this.#opts.workRoot, spec, kind);
      dir = made.dir;
      const env = await writeJobEnv(dir, spec, CONTAINER_JOB_DIR, made.skippedKeys, system);
      let networkMode = sandbox ? `container:${sandbox.id}` : limits.networkMode;
      const create = (direct: boolean) =>
        this.#create(
          jobContainerOptions(this.#opts, kind, { ...limits, networkMode }, {
            root: direct ? CONTAINER_JOB_DIR : dirname(CONTAINER_JOB_DIR),
            binds: [`${dir}:${CONTAINER_JOB_DIR}:rw`],
            labels: { [JOB_LABEL]: spec.jobId, [ATTEMPT_LABEL]: String(spec.attempt) },
            direct: direct ? env : undefined,
          }),
          system,
        );
      let direct = this.#imageHasBash.get(limits.image) === false;
      let created = await create(direct);
      if (typeof created === 'string') return result('failed', -1, created);
      container = created;
      if (!direct && !(await this.#hasBash(created, limits.image))) {
        direct = true;
        await created.remove({ force: true }).catch(ignoreGone);
        container = undefined;
        created = await create(true);
        if (typeof created === 'string') return result('failed', -1, created);
        container = created;
      }
      let stream: NodeJS.ReadWriteStream;
      try {
        stream = await attachAndStart(created, direct);
      } catch (err) {
        if (!sandbox) throw err;
        // The sandbox stopped (the engine restarted, someone removed it): nothing ran; the job makes its own namespace.
        await created.remove({ force: true }).catch(ignoreGone);
        container = undefined;
        networkMode = limits.networkMode;
        created = await create(direct);
        if (typeof created === 'string') return result('failed', -1, created);
        container = created;
        stream = await attachAndStart(created, direct);
      }
      return await this.#supervise(container, stream, dir, direct ? undefined : basename(CONTAINER_JOB_DIR), spec, limits, ctx);
    } finally {
      // After the result: the job's end is reported without waiting for the engine to remove anything.
      const [made, folder] = [container, dir];
      const remove = async () => {
        try {
          await Promise.all([made?.remove({ force: true, v: true }).catch(ignoreGone), sandbox?.discard()]);
        } finally {
          if (folder) await removeJobFolder(folder);
        }
      };
      this.#afterResult(ctx, remove, () => {
        // Only while no other job runs: a sandbox costs the engine a container of its own, which a busy agent cannot spare.
        if (limits.networkMode === 'none' && this.#running === 0) this.#sandboxes?.keep(SANDBOX_KEY, () => this.#makeSandbox());
        refill();
      });
    }
  }

  /** Looks for bash in a created container of the image (the engine stats the path, nothing runs); remembered per image. */
  async #hasBash(container: Dockerode.Container, image: string): Promise<boolean> {
    const known = this.#imageHasBash.get(image);
    if (known !== undefined) return known;
    const found = await Promise.all(
      BASH_PATHS.map((path) => container.infoArchive({ path }).then(() => true, (err: unknown) => (statusCode(err) === 404 ? false : undefined))),
    );
    if (found.includes(true)) this.#imageHasBash.set(image, true);
    else if (found.every((f) => f === false)) this.#imageHasBash.set(image, false);
    return found.includes(true);
  }

  /** A container that only holds a network namespace with loopback (mode `none`): it waits on a stdin nobody writes to. */
  async #makeSandbox(): Promise<NetworkSandbox> {
    const created = await this.#create(sandboxContainerOptions(this.#opts, this.#opts.images.bash), async () => {});
    if (typeof created === 'string') throw new Error(created);
    try {
      await created.start();
    } catch (err) {
      await created.remove({ force: true }).catch(() => {});
      throw err;
    }
    return { id: created.id, discard: () => created.remove({ force: true, v: true }).catch(ignoreGone) };
  }

  /** A container made ahead: its job folder goes into its slot, and its waiting supervisor is told the folder's name. */
  async #runWarm(warm: WarmContainer, spec: JobSpec, kind: ScriptKind, limits: Limits, ctx: RunContext, refill: () => void): Promise<ExecutionResult> {
    const system = systemLog(ctx);
    try {
      const { dir, skippedKeys } = await createJobFolder(warm.slotDir, spec, kind);
      await writeJobEnv(dir, spec, `${WARM_SLOT_DIR}/${basename(dir)}`, skippedKeys, system);
      return await this.#supervise(warm.container, warm.stream, dir, basename(dir), spec, limits, ctx);
    } finally {
      this.#afterResult(ctx, () => warm.discard(), refill);
    }
  }

  async #makeWarm(kind: ScriptKind, limits: Limits): Promise<WarmContainer> {
    const slotDir = await mkdtemp(join(this.#opts.workRoot, 'warm-'));
    await chmod(slotDir, 0o755);
    const discardFolder = () => removeJobFolder(slotDir);
    try {
      const created = await this.#create(
        jobContainerOptions(this.#opts, kind, limits, {
          root: WARM_SLOT_DIR,
          binds: [`${slotDir}:${WARM_SLOT_DIR}:rw`],
          labels: { [JOB_LABEL]: 'warm', [WARM_LABEL]: '1' },
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
   * Hands the job folder `name` to the started container's supervisor (if it
   * has one) and follows the job to its end: logs, timeout, cancel
   * (SIGTERM, then SIGKILL after the grace period), OOM, results.
   */
  async #supervise(
    container: Dockerode.Container,
    stream: NodeJS.ReadWriteStream,
    dir: string,
    /** The folder's name for the supervisor; undefined for a container without one. */
    name: string | undefined,
    spec: JobSpec,
    limits: Limits,
    ctx: RunContext,
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
    const job = handOver(name ?? 'job');
    const output = pipeOutput(stream, ctx, job.nonce);
    output.done.catch(() => {}); // awaited below; avoid an unhandled rejection if we throw first
    try {
      if (ctx.signal.aborted) return result('cancelled', -1, 'cancelled before start');
      if (name !== undefined) stream.write(job.line);
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

      const waiting = container.wait() as Promise<{ StatusCode: number }>;
      waiting.catch(() => {}); // not awaited when the supervisor reports first
      const reported = await Promise.race([output.exited, waiting.then(() => undefined)]);
      let exitCode: number;
      let oomKilled: boolean;
      if (reported && reported.exitCode !== 137 && reported.oomKills === 0) {
        // The script exited on its own and nothing in the container was OOM-killed: the result is known now.
        clearTimeout(timer);
        exitCode = reported.exitCode;
        oomKilled = false;
      } else {
        // Killed (by us, the OOM killer or anyone), or no report: the engine's view, as for any container.
        const waited = await waiting;
        clearTimeout(timer);
        // The attach stream ends after the exit; wait for it or output is cut.
        if (!(await output.settled(LOG_IDLE_MS))) await system('log stream did not end after the exit; output may be cut');
        let info = await container.inspect();
        // dockerd records the cgroup's OOM event asynchronously (seconds later on a loaded host): a SIGKILL we did not
        // send may be an OOM kill not yet noted. Only such exits wait, up to OOM_NOTE_WAIT_CHECKS × 100 ms.
        for (let check = 0; check < OOM_NOTE_WAIT_CHECKS && info.State.ExitCode === 137 && !info.State.OOMKilled && !(reported?.oomKills) && !cancelled && !timedOut; check++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          info = await container.inspect();
        }
        exitCode = info.State.ExitCode ?? waited.StatusCode;
        oomKilled = info.State.OOMKilled === true || (reported?.oomKills ?? 0) > 0;
      }

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
