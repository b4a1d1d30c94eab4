// What the Docker executor's containers are made with: the hardening every
// container gets (jobs and network sandboxes alike), the job container's
// command and environment, and the job's environment file.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobSpec } from '../job.ts';
import { INTERPRETERS, scriptFileName, type ScriptKind } from './job-files.ts';
import { ENV_FILE, envFile, supervisorCommand } from './job-supervisor.ts';

export const MiB = 1024 * 1024;

/** Paths inside the container. */
export const CONTAINER_JOB_DIR = '/cronium/job';
export const CONTAINER_LIB_DIR = '/cronium/lib';

export const JOB_LABEL = 'cronium.job';
export const ATTEMPT_LABEL = 'cronium.attempt';
export const NETWORK_SANDBOX_LABEL = 'cronium.network-sandbox';

/** What a container is made for; jobs that share it can share warm containers. */
export interface Limits {
  readonly image: string;
  readonly memory: number;
  readonly cpus: number;
  readonly networkMode: string;
}

/** The executor's options that every container follows. */
export interface ContainerDefaults {
  /** Host path of agent/runtime (mounted read-only at /cronium/lib). */
  readonly runtimeDir: string;
  readonly pidsLimit?: number;
  readonly tmpfsSize?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** In the container's config: nothing of the job's (its variables and secrets go through ENV_FILE). */
const STATIC_ENV = {
  PYTHONPATH: `${CONTAINER_LIB_DIR}/python`,
  NODE_PATH: `${CONTAINER_LIB_DIR}/node`,
  HOME: '/tmp',
};


function hardening(defaults: ContainerDefaults, limits: Pick<Limits, 'memory' | 'cpus' | 'networkMode'>, pids: number) {
  return {
    // Production: network-enabled jobs use Docker's default bridge
    // ('bridge'); machines without one (tests here) pass 'host'.
    NetworkMode: limits.networkMode,
    CapDrop: ['ALL'],
    // Default seccomp profile stays on: no 'seccomp=unconfined' here.
    SecurityOpt: ['no-new-privileges'],
    ReadonlyRootfs: true,
    Tmpfs: { '/tmp': `rw,noexec,nosuid,size=${defaults.tmpfsSize ?? '64m'}` },
    PidsLimit: pids,
    // Output reaches the agent through attach (capped per job there); the engine's
    // default json-file driver would also write all of it to the host's disk.
    LogConfig: { Type: 'none', Config: {} },
    Memory: limits.memory,
    MemorySwap: limits.memory, // equal to Memory: no swap
    NanoCpus: Math.round(limits.cpus * 1e9),
    // tini as PID 1: forwards SIGTERM to the supervisor and reaps zombies.
    Init: true,
    Privileged: false,
    AutoRemove: false,
  };
}

/**
 * A container whose supervisor waits on stdin for a job folder under `root`;
 * or, with `direct` (an image without bash), one that runs the interpreter on
 * the folder at `root` itself, the job's environment in its config, as
 * before the supervisor.
 */
export function jobContainerOptions(
  defaults: ContainerDefaults,
  kind: ScriptKind,
  limits: Limits,
  job: { root: string; binds: string[]; labels: Record<string, string>; direct?: Record<string, string> },
) {
  const stdin = !job.direct;
  return {
    Image: limits.image,
    Cmd: job.direct ? [INTERPRETERS[kind], `${job.root}/${scriptFileName(kind)}`] : supervisorCommand(job.root, INTERPRETERS[kind], scriptFileName(kind)),
    Env: Object.entries(job.direct ?? STATIC_ENV)
      .filter(([k]) => k !== '' && !k.includes('='))
      .map(([k, v]) => `${k}=${v}`),
    WorkingDir: '/tmp',
    User: '65534:65534',
    Labels: { ...defaults.labels, ...job.labels },
    AttachStdin: stdin,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: stdin,
    StdinOnce: stdin,
    Tty: false,
    HostConfig: { ...hardening(defaults, limits, defaults.pidsLimit ?? 256), Binds: [...job.binds, `${defaults.runtimeDir}:${CONTAINER_LIB_DIR}:ro`] },
  };
}

/** A container that only holds a network namespace with loopback (mode `none`): it waits on a stdin nobody writes to. */
export function sandboxContainerOptions(defaults: ContainerDefaults, image: string) {
  return {
    Image: image,
    Cmd: ['bash', '-c', 'read -r _'],
    WorkingDir: '/tmp',
    User: '65534:65534',
    Labels: { ...defaults.labels, [JOB_LABEL]: 'network-sandbox', [NETWORK_SANDBOX_LABEL]: '1' },
    OpenStdin: true,
    HostConfig: hardening(defaults, { memory: 16 * MiB, cpus: 0.1, networkMode: 'none' }, 4),
  };
}

/** The job's environment file, after the job's own variables the ones Cronium sets (which win); returns that environment. */
export async function writeJobEnv(dir: string, spec: JobSpec, jobDir: string, skippedKeys: readonly string[], system: (line: string) => Promise<void>): Promise<Record<string, string>> {
  if (skippedKeys.length > 0) await system(`skipped variables with invalid keys: ${skippedKeys.join(', ')}`);
  const env = { ...spec.env, ...STATIC_ENV, BASH_ENV: `${CONTAINER_LIB_DIR}/bash/cronium.sh`, CRONIUM_JOB_DIR: jobDir };
  const { content, skipped } = envFile(env);
  if (skipped.length > 0) await system(`skipped environment variables with invalid names or values: ${skipped.join(', ')}`);
  writeFileSync(join(dir, ENV_FILE), content, { mode: 0o644 }); // synchronous, like the rest of the folder (job-files.ts)
  return env;
}
