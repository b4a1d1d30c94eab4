import { randomUUID } from 'node:crypto';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { sql } from 'kysely';
import { WorkflowService } from '@cronium/proto/api/v1/workflow';
import type { ExecutionRow, WorkflowRow } from '../store/schema.ts';
import { executionToProto, workflowToProto } from '../wire/workflow-messages.ts';
import { plainJson } from '../wire/api-messages.ts';
import { requestCancel, startExecution, type ExecutionTrigger } from '../workflows/engine.ts';
import { NO_WEBHOOK, newWebhook } from '../workflows/webhook-secret.ts';
import { changingSchedules, kickDispatch } from '../job-events.ts';
import { principalOf, type Principal } from './auth.ts';
import { invalid, notFound } from './errors.ts';
import { afterCursor, encodeCursor, pageSize } from './pagination.ts';
import { mustChange } from './event-service.ts';
import { cancelJobs } from './cancel.ts';
import { workflowFields } from './workflow-input.ts';
import type { ApiDeps } from './deps.ts';
import { audited } from './changes.ts';

async function findWorkflow(deps: ApiDeps, principal: Principal, id: string): Promise<WorkflowRow> {
  if (!id) throw invalid('id', 'required');
  let query = deps.db.selectFrom('workflows').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
  if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
  return query.executeTakeFirstOrThrow(() => notFound('workflow', id));
}

async function findExecution(deps: ApiDeps, principal: Principal, id: string): Promise<ExecutionRow> {
  if (!id) throw invalid('id', 'required');
  let query = deps.db.selectFrom('workflow_executions').selectAll().where('id', '=', id);
  if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
  return query.executeTakeFirstOrThrow(() => notFound('execution', id));
}

/** Executions as the API shows them, with their nodes. */
export async function executionsToProto(deps: ApiDeps, rows: readonly ExecutionRow[]) {
  const ids = rows.map((row) => row.id);
  const nodes = ids.length ? await deps.db.selectFrom('workflow_node_runs').selectAll().where('execution_id', 'in', ids).execute() : [];
  return rows.map((row) => executionToProto(row, nodes.filter((node) => node.execution_id === row.id)));
}

/** Starts an execution for a caller that may run the workflow (API or webhook), and wakes the dispatcher. */
export async function runWorkflow(deps: ApiDeps, workflow: WorkflowRow, input: unknown, trigger: ExecutionTrigger): Promise<ExecutionRow> {
  if (workflow.status !== 'active') throw new ConnectError(`workflow ${workflow.id} is paused`, Code.FailedPrecondition);
  const execution = await startExecution(deps.db, workflow, input, trigger);
  kickDispatch(deps.bus);
  return execution;
}

export function workflowService(deps: ApiDeps): ServiceImpl<typeof WorkflowService> {
  const { db } = deps;
  return {
    async createWorkflow(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const { webhook, ...fields } = await workflowFields(db, principal.ownerId, req.workflow);
      const id = randomUUID();
      const hook = webhook ? newWebhook(deps.sealer, 'workflows', id) : undefined;
      return changingSchedules(deps.bus, audited(db, ctx, async (tx) => {
        const row = await tx
          .insertInto('workflows')
          .values({
            ...fields,
            id,
            owner_id: principal.ownerId,
            nodes: JSON.stringify(fields.nodes),
            edges: JSON.stringify(fields.edges),
            ...(hook?.columns ?? NO_WEBHOOK),
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        return { workflow: workflowToProto(row, hook?.secret) };
      }));
    },
    async getWorkflow(req, ctx) {
      return { workflow: workflowToProto(await findWorkflow(deps, principalOf(ctx.values), req.id)) };
    },
    async listWorkflows(_req, ctx) {
      const principal = principalOf(ctx.values);
      let query = db.selectFrom('workflows').selectAll().where('deleted_at', 'is', null).orderBy('created_at').orderBy('id');
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      return { workflows: (await query.execute()).map((row) => workflowToProto(row)) };
    },
    async updateWorkflow(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findWorkflow(deps, principal, req.workflow?.id ?? '');
      const { webhook, ...fields } = await workflowFields(db, existing.owner_id, req.workflow, existing);
      // A webhook kept on keeps its key and secret; one turned on now gets new ones.
      const hook = webhook && !existing.webhook_key ? newWebhook(deps.sealer, 'workflows', existing.id) : undefined;
      return changingSchedules(deps.bus, audited(db, ctx, async (tx) => {
        const row = await tx
          .updateTable('workflows')
          .set({
            ...fields,
            nodes: JSON.stringify(fields.nodes),
            edges: JSON.stringify(fields.edges),
            updated_at: sql<Date>`now()`,
            ...(webhook ? (hook?.columns ?? {}) : NO_WEBHOOK),
          })
          .where('id', '=', existing.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { workflow: workflowToProto(row, hook?.secret) };
      }));
    },
    async deleteWorkflow(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findWorkflow(deps, principal, req.id);
      return changingSchedules(deps.bus, audited(db, ctx, async (tx) => {
        await tx.updateTable('workflows').set({ deleted_at: sql<Date>`now()`, ...NO_WEBHOOK }).where('id', '=', existing.id).execute();
        return {};
      }));
    },
    async rotateWorkflowWebhook(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findWorkflow(deps, principal, req.id);
      const { secret, columns } = newWebhook(deps.sealer, 'workflows', existing.id);
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .updateTable('workflows')
          .set({ ...columns, updated_at: sql<Date>`now()` })
          .where('id', '=', existing.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { workflow: workflowToProto(row, secret) };
      });
    },
    async runWorkflow(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const workflow = await findWorkflow(deps, principal, req.id);
      const response = await audited(
        db,
        ctx,
        async (tx) => {
          const inTx = { ...deps, db: tx };
          return { execution: (await executionsToProto(inTx, [await runWorkflow(inTx, workflow, plainJson(req.input), 'manual')]))[0]! };
        },
        { type: 'execution', id: (r) => r.execution.id },
      );
      kickDispatch(deps.bus);
      return response;
    },
    async getExecution(req, ctx) {
      const execution = await findExecution(deps, principalOf(ctx.values), req.id);
      return { execution: (await executionsToProto(deps, [execution]))[0] };
    },
    async listExecutions(req, ctx) {
      const principal = principalOf(ctx.values);
      const size = pageSize(req.pageSize);
      const cursor = afterCursor('workflow_executions', req.pageToken);
      let query = db.selectFrom('workflow_executions').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').limit(size + 1);
      if (req.workflowId) query = query.where('workflow_id', '=', req.workflowId);
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      if (cursor) query = query.where(cursor);
      const rows = await query.execute();
      const page = rows.slice(0, size);
      return { executions: await executionsToProto(deps, page), nextPageToken: rows.length > size ? encodeCursor(page[page.length - 1]!) : '' };
    },
    async cancelExecution(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const execution = await findExecution(deps, principal, req.id);
      const runIds = await requestCancel(db, execution.id);
      if (runIds.length > 0) {
        const jobs = await db.selectFrom('jobs').select('id').where('run_id', 'in', runIds).execute();
        await cancelJobs(deps, jobs.map((job) => job.id));
      }
      return { execution: (await executionsToProto(deps, [await findExecution(deps, principal, execution.id)]))[0] };
    },
  };
}
