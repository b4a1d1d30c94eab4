import { toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Executor, JobKind, type JobRef, type JobSpec as JobSpecMessage } from '@cronium/proto/agent/v1';
import type { ExecutorName, JobKind as JobKindName, JobSpec, JsonValue } from '../job.ts';

const kinds = new Map<JobKind, JobKindName>([
  [JobKind.BASH, 'bash'],
  [JobKind.PYTHON, 'python'],
  [JobKind.NODE, 'node'],
  [JobKind.HTTP, 'http'],
]);

const executorValues: Record<ExecutorName, Executor> = { docker: Executor.DOCKER, ssh: Executor.SSH, http: Executor.HTTP };

export function executorsFor(names: readonly ExecutorName[]): Executor[] {
  return [...new Set(names.map((name) => executorValues[name]))];
}

/** The executor-facing spec of an offer, or an error message when the offer cannot be understood. */
export function jobSpecOf(ref: JobRef, spec: JobSpecMessage | undefined, agentId: string): JobSpec | string {
  if (!spec) return 'offer without a spec';
  const kind = kinds.get(spec.kind);
  if (!kind) return `unknown job kind ${spec.kind}`;
  return {
    jobId: ref.jobId,
    attempt: ref.attempt,
    eventId: spec.eventId,
    runId: spec.runId,
    eventName: spec.eventName,
    kind,
    script: spec.script,
    // Where and what is running, for scripts that need to know.
    env: { ...spec.env, ...spec.secrets, CRONIUM_AGENT_ID: agentId, CRONIUM_JOB_ID: ref.jobId, CRONIUM_RUN_ID: spec.runId, CRONIUM_ATTEMPT: String(ref.attempt) },
    timeoutSeconds: spec.timeoutSeconds,
    input: spec.input ? (toJson(ValueSchema, spec.input) as JsonValue) : null,
    variables: { ...spec.variables, ...spec.secrets },
    secrets: { ...spec.secrets },
    traceParent: spec.traceParent || undefined,
    memoryBytes: Number(spec.memoryBytes),
    cpus: spec.cpus,
    network: spec.network,
    http: spec.http ? { method: spec.http.method, url: spec.http.url, headers: { ...spec.http.headers }, body: spec.http.body } : undefined,
    ssh: spec.ssh
      ? {
          serverId: spec.ssh.serverId,
          host: spec.ssh.host,
          port: spec.ssh.port,
          username: spec.ssh.username,
          privateKey: spec.ssh.privateKey,
          password: spec.ssh.password,
          hostKeyFingerprint: spec.ssh.hostKeyFingerprint,
        }
      : undefined,
  };
}
