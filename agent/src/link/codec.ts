import { toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Executor, JobKind, type JobRef, type JobSpec as JobSpecMessage } from '@cronium/proto/agent/v1';
import type { JobKind as JobKindName, JobSpec, JsonValue } from '../job.ts';

const kinds = new Map<JobKind, JobKindName>([
  [JobKind.BASH, 'bash'],
  [JobKind.PYTHON, 'python'],
  [JobKind.NODE, 'node'],
  [JobKind.HTTP, 'http'],
]);

export function executorsFor(jobKinds: readonly JobKindName[]): Executor[] {
  const set = new Set<Executor>();
  for (const kind of jobKinds) set.add(kind === 'http' ? Executor.HTTP : Executor.DOCKER);
  return [...set];
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
    env: { ...spec.env, CRONIUM_AGENT_ID: agentId, CRONIUM_JOB_ID: ref.jobId, CRONIUM_RUN_ID: spec.runId, CRONIUM_ATTEMPT: String(ref.attempt) },
    timeoutSeconds: spec.timeoutSeconds,
    input: spec.input ? (toJson(ValueSchema, spec.input) as JsonValue) : null,
    variables: { ...spec.variables },
    memoryBytes: Number(spec.memoryBytes),
    cpus: spec.cpus,
    network: spec.network,
    http: spec.http ? { method: spec.http.method, url: spec.http.url, headers: { ...spec.http.headers }, body: spec.http.body } : undefined,
  };
}
