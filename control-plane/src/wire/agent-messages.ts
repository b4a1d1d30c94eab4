import { create } from '@bufbuild/protobuf';
import {
  ConnectResponseSchema,
  JobKind,
  JobRefSchema,
  JobState,
  LogStream,
  type ConnectResponse,
  type JobRef,
} from '@cronium/proto/agent/v1';
import type { EventType, JobRow } from '../store/schema.ts';
import type { AttemptResult, Fence } from '../queue/transitions.ts';
import { jsonValue } from './api-messages.ts';
import { LOG_STREAMS } from '../queue/logs.ts';
import type { OfferContext } from '../dispatcher.ts';

const jobKinds: Record<EventType, JobKind> = {
  bash: JobKind.BASH,
  python: JobKind.PYTHON,
  node: JobKind.NODE,
  http: JobKind.HTTP,
};

export const terminalStates = new Map<JobState, AttemptResult['status']>([
  [JobState.SUCCEEDED, 'succeeded'],
  [JobState.FAILED, 'failed'],
  [JobState.TIMED_OUT, 'timed_out'],
  [JobState.CANCELLED, 'cancelled'],
]);

export const logStreamNumbers = new Map<LogStream, number>([
  [LogStream.STDOUT, LOG_STREAMS.stdout],
  [LogStream.STDERR, LOG_STREAMS.stderr],
  [LogStream.SYSTEM, LOG_STREAMS.system],
]);

export function refOf(job: Pick<JobRow, 'id' | 'attempt' | 'lease_id'>): JobRef {
  return create(JobRefSchema, { jobId: job.id, attempt: job.attempt, leaseId: job.lease_id ?? '' });
}

/**
 * Postgres text and jsonb cannot hold NUL: an agent's string is stored with
 * U+FFFD in its place. A NUL in a query parameter fails the whole batch, and
 * the agent would send the same message again after every reconnect.
 */
export function storable(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text;
}

/** `storable` for every string and key in a JSON value. */
export function storableJson<T>(value: T): T {
  const text = JSON.stringify(value);
  return text === undefined || !text.includes('\\u0000') ? value : (JSON.parse(text.replaceAll('\\u0000', '\\uFFFD')) as T);
}

export function fenceOf(ref: JobRef | undefined): Fence {
  return { jobId: storable(ref?.jobId ?? ''), attempt: ref?.attempt ?? 0, leaseId: storable(ref?.leaseId ?? '') };
}

export function offerMessage(job: JobRow, { variables, secrets, ssh }: OfferContext, logLimitBytes: number): ConnectResponse {
  const spec = job.spec;
  return create(ConnectResponseSchema, {
    kind: {
      case: 'jobOffer',
      value: {
        job: refOf(job),
        spec: {
          eventId: job.event_id,
          runId: job.run_id,
          eventName: spec.eventName,
          kind: jobKinds[spec.kind],
          script: spec.script,
          env: { ...spec.env },
          timeoutSeconds: spec.timeoutSeconds,
          input: jsonValue(spec.input),
          variables: { ...variables },
          memoryBytes: BigInt(spec.memoryMb) * 1024n * 1024n,
          cpus: spec.cpus,
          network: spec.network,
          http: spec.http ? { ...spec.http, headers: { ...spec.http.headers } } : undefined,
          logLimitBytes: BigInt(logLimitBytes),
          ssh: ssh ? { ...ssh } : undefined,
          secrets: { ...secrets },
          traceParent: job.spec.traceParent ?? '',
        },
      },
    },
  });
}

export function cancelMessage(ref: JobRef, reason: string, stale: boolean): ConnectResponse {
  return create(ConnectResponseSchema, { kind: { case: 'cancelJob', value: { job: ref, reason, stale } } });
}
