import type { ServiceImpl } from '@connectrpc/connect';
import { RunService } from '@cronium/proto/api/v1/run';
import type { JobRow, RunRow } from '../store/schema.ts';
import { runToProto } from '../wire/api-messages.ts';
import { principalOf, type Principal } from './auth.ts';
import { invalid, notFound } from './errors.ts';
import { afterCursor, encodeCursor, pageSize } from './pagination.ts';
import type { ApiDeps } from './deps.ts';
import { mustChange } from './event-service.ts';
import { cancelJobs } from './cancel.ts';

export async function findRun(deps: ApiDeps, principal: Principal, id: string): Promise<RunRow> {
  if (!id) throw invalid('id', 'required');
  let query = deps.db.selectFrom('runs').selectAll().where('id', '=', id);
  if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
  return query.executeTakeFirstOrThrow(() => notFound('run', id));
}

async function jobsOf(deps: ApiDeps, runIds: readonly string[]): Promise<Map<string, JobRow[]>> {
  const byRun = new Map<string, JobRow[]>(runIds.map((id) => [id, []]));
  if (runIds.length === 0) return byRun;
  const jobs = await deps.db.selectFrom('jobs').selectAll().where('run_id', 'in', runIds).orderBy('created_at').orderBy('id').execute();
  for (const job of jobs) byRun.get(job.run_id)?.push(job);
  return byRun;
}

export function runService(deps: ApiDeps): ServiceImpl<typeof RunService> {
  return {
    async getRun(req, ctx) {
      const run = await findRun(deps, principalOf(ctx.values), req.id);
      return { run: runToProto(run, (await jobsOf(deps, [run.id])).get(run.id) ?? []) };
    },
    async listRuns(req, ctx) {
      const principal = principalOf(ctx.values);
      const size = pageSize(req.pageSize);
      const cursor = afterCursor('runs', req.pageToken);
      let query = deps.db.selectFrom('runs').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').limit(size + 1);
      if (req.eventId) query = query.where('event_id', '=', req.eventId);
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      if (cursor) query = query.where(cursor);
      const rows = await query.execute();
      const page = rows.slice(0, size);
      const jobs = await jobsOf(deps, page.map((run) => run.id));
      return {
        runs: page.map((run) => runToProto(run, jobs.get(run.id) ?? [])),
        nextPageToken: rows.length > size ? encodeCursor(page[page.length - 1]!) : '',
      };
    },
    async cancelRun(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const run = await findRun(deps, principal, req.id);
      const jobs = (await jobsOf(deps, [run.id])).get(run.id) ?? [];
      await cancelJobs(deps, jobs.map((job) => job.id));
      const updated = await findRun(deps, principal, run.id);
      return { run: runToProto(updated, (await jobsOf(deps, [run.id])).get(run.id) ?? []) };
    },
  };
}
