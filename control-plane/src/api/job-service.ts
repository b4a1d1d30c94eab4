import type { ServiceImpl } from '@connectrpc/connect';
import { fromBinary } from '@bufbuild/protobuf';
import { JobService, JobStatus, WatchJobResponseSchema, type WatchJobResponse } from '@cronium/proto/api/v1/job';
import { create } from '@bufbuild/protobuf';
import type { JobRow } from '../store/schema.ts';
import { subjects } from '../bus/bus.ts';
import { readLogs } from '../queue/logs.ts';
import { isTerminal } from '../domain/run-status.ts';
import { attemptToProto, jobStatuses, jobToProto, reverse } from '../wire/api-messages.ts';
import { principalOf, type Principal } from './auth.ts';
import { invalid, notFound } from './errors.ts';
import { afterCursor, encodeCursor, pageSize } from './pagination.ts';
import type { ApiDeps } from './deps.ts';
import { mustChange } from './event-service.ts';
import { cancelJobs } from './cancel.ts';

const statusNames = reverse(jobStatuses);
const decoder = new TextDecoder();
const STORE_RECHECK_MS = 5_000;

async function findJob(deps: ApiDeps, principal: Principal, id: string): Promise<JobRow> {
  if (!id) throw invalid('id', 'required');
  let query = deps.db.selectFrom('jobs').selectAll().where('id', '=', id);
  if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
  return query.executeTakeFirstOrThrow(() => notFound('job', id));
}

async function withReason(deps: ApiDeps, job: JobRow) {
  return jobToProto(job, job.status === 'queued' ? await deps.waitingReason(job) : '');
}

/** A queue that an async generator can wait on. */
function channel<T>() {
  const items: T[] = [];
  let wake: (() => void) | undefined;
  return {
    push(item: T) {
      items.push(item);
      wake?.();
    },
    /** The next item; 'idle' after `idleMs` without one; undefined once aborted. */
    async next(signal: AbortSignal, idleMs: number): Promise<T | 'idle' | undefined> {
      if (items.length === 0 && !signal.aborted) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, idleMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
          signal.addEventListener('abort', () => wake?.(), { once: true });
        });
        wake = undefined;
      }
      if (signal.aborted) return undefined;
      return items.length > 0 ? items.shift() : 'idle';
    },
  };
}

export function jobService(deps: ApiDeps): ServiceImpl<typeof JobService> {
  return {
    async getJob(req, ctx) {
      return { job: await withReason(deps, await findJob(deps, principalOf(ctx.values), req.id)) };
    },
    async listJobs(req, ctx) {
      const principal = principalOf(ctx.values);
      const size = pageSize(req.pageSize);
      const cursor = afterCursor('jobs', req.pageToken);
      let query = deps.db.selectFrom('jobs').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').limit(size + 1);
      if (req.eventId) query = query.where('event_id', '=', req.eventId);
      if (req.status !== JobStatus.UNSPECIFIED) {
        const status = statusNames.get(req.status);
        if (!status) throw invalid('status', 'unknown job status');
        query = query.where('status', '=', status);
      }
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      if (cursor) query = query.where(cursor);
      const rows = await query.execute();
      const page = rows.slice(0, size);
      return {
        jobs: page.map((job) => jobToProto(job)),
        nextPageToken: rows.length > size ? encodeCursor(page[page.length - 1]!) : '',
      };
    },
    async cancelJob(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const job = await findJob(deps, principal, req.id);
      await cancelJobs(deps, [job.id]);
      return { job: jobToProto(await findJob(deps, principal, job.id)) };
    },
    async listAttempts(req, ctx) {
      if (!req.jobId) throw invalid('jobId', 'required');
      const job = await findJob(deps, principalOf(ctx.values), req.jobId);
      const rows = await deps.db.selectFrom('job_attempts').selectAll().where('job_id', '=', job.id).orderBy('attempt').execute();
      return { attempts: rows.map(attemptToProto) };
    },
    async *watchJob(req, ctx) {
      const principal = principalOf(ctx.values);
      const first = await findJob(deps, principal, req.id);
      // Subscribe before reading the store so nothing falls between replay and live.
      const live = channel<WatchJobResponse>();
      const unsubscribe = deps.bus.subscribe(subjects.job(first.id), (data) => live.push(fromBinary(WatchJobResponseSchema, data)));
      try {
        const seen = new Map<string, number>();
        const fresh = (attempt: number, stream: number, offset: number, length: number) => {
          const key = `${attempt}/${stream}`;
          if (offset < (seen.get(key) ?? 0)) return false;
          seen.set(key, offset + length);
          return true;
        };
        // Replays what the store holds that was not sent yet, then the job itself.
        async function* fromStore() {
          const job = await findJob(deps, principal, first.id);
          for (const chunk of await readLogs(deps.db, job.id)) {
            if (!fresh(chunk.attempt, chunk.stream, chunk.offset, chunk.data.length)) continue;
            yield create(WatchJobResponseSchema, {
              kind: { case: 'log', value: { stream: chunk.stream, data: decoder.decode(chunk.data), offset: BigInt(chunk.offset), attempt: chunk.attempt } },
            });
          }
          yield create(WatchJobResponseSchema, { kind: { case: 'job', value: await withReason(deps, job) } });
          return isTerminal(job.status);
        }
        if (yield* fromStore()) return;
        for (;;) {
          const message = await live.next(ctx.signal, STORE_RECHECK_MS);
          if (!message) return;
          // The bus may drop messages: when it is quiet, the store says whether the job ended.
          if (message === 'idle') {
            if (yield* fromStore()) return;
            continue;
          }
          if (message.kind.case === 'log') {
            const log = message.kind.value;
            if (!fresh(log.attempt, log.stream, Number(log.offset), Buffer.byteLength(log.data))) continue;
            yield message;
          } else if (message.kind.case === 'job') {
            yield message;
            if (isTerminal(statusNames.get(message.kind.value.status) ?? 'queued')) return;
          }
        }
      } finally {
        unsubscribe();
      }
    },
  };
}
