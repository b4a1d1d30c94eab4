import { randomUUID } from 'node:crypto';
import { sql, type UpdateObject } from 'kysely';
import { inTransaction, type Db } from '../store/database.ts';
import type { Database, ExecutionRow, NodeStatus, RunRow, RunStatus, WorkflowRow } from '../store/schema.ts';
import { enqueueRun, fanOutAgents } from '../queue/enqueue.ts';
import { executionOutcome, nextSteps, type Graph, type NodeState } from './plan.ts';

/** Agents that heartbeated within this long may be picked by a fan-out (the control plane sets its lease TTL). */
let fanOutWindowMs = 30_000;
export function setFanOutWindow(ms: number): void {
  fanOutWindowMs = ms;
}

const NODE_STATUS_OF_RUN: Record<RunStatus, NodeStatus> = {
  running: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  partial: 'failed',
  timed_out: 'failed',
  cancelled: 'cancelled',
};

/** How an execution was started. */
export type ExecutionTrigger = 'manual' | 'webhook' | 'schedule';

/** Creates an execution of the workflow's current graph and starts its root nodes, in one transaction. */
export async function startExecution(db: Db, workflow: WorkflowRow, input: unknown, trigger: ExecutionTrigger): Promise<ExecutionRow> {
  return inTransaction(db, async (tx) => {
    const execution = await tx
      .insertInto('workflow_executions')
      .values({
        id: randomUUID(),
        workflow_id: workflow.id,
        owner_id: workflow.owner_id,
        status: 'running',
        trigger,
        input: JSON.stringify(input ?? null),
        nodes: JSON.stringify(workflow.nodes),
        edges: JSON.stringify(workflow.edges),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await tx
      .insertInto('workflow_node_runs')
      .values(workflow.nodes.map((node) => ({ execution_id: execution.id, node_id: node.id, event_id: node.eventId, status: 'pending' as const })))
      .execute();
    await advance(tx, execution.id);
    return tx.selectFrom('workflow_executions').selectAll().where('id', '=', execution.id).executeTakeFirstOrThrow();
  });
}

/**
 * From afterRunsSettled: records the results of the workflow nodes' runs among
 * these and moves their executions on, in the runs' transaction. One query
 * finds which runs are nodes; executions are locked in id order.
 */
export async function onRunsSettled(tx: Db, runs: readonly RunRow[]): Promise<void> {
  const byId = new Map(runs.map((run) => [run.id, run]));
  const nodes = await tx
    .selectFrom('workflow_node_runs')
    .select(['execution_id', 'node_id', 'run_id'])
    .where('run_id', 'in', [...byId.keys()])
    .orderBy('execution_id')
    .orderBy('node_id')
    .execute();
  for (const node of nodes) {
    await lockExecution(tx, node.execution_id);
    await recordRunResult(tx, node, byId.get(node.run_id!)!);
    await advance(tx, node.execution_id);
  }
}

/**
 * Asks an execution to stop: pending nodes end CANCELLED at once, no node
 * starts any more; returns the runs still going, for the caller to cancel
 * (the execution ends CANCELLED when the last of them ends).
 */
export async function requestCancel(db: Db, executionId: string): Promise<string[]> {
  return inTransaction(db, async (tx) => {
    const execution = await lockExecution(tx, executionId);
    if (execution.status !== 'running') return [];
    await tx.updateTable('workflow_executions').set({ cancel_requested: true }).where('id', '=', executionId).execute();
    await tx
      .updateTable('workflow_node_runs')
      .set({ status: 'cancelled', finished_at: sql<Date>`now()` })
      .where('execution_id', '=', executionId)
      .where('status', '=', 'pending')
      .execute();
    await advance(tx, executionId);
    const running = await tx.selectFrom('workflow_node_runs').select('run_id').where('execution_id', '=', executionId).where('status', '=', 'running').execute();
    return running.flatMap((row) => (row.run_id ? [row.run_id] : []));
  });
}

/** Parents finishing at once in different transactions take turns here, so the last one sees them all. */
async function lockExecution(tx: Db, id: string): Promise<ExecutionRow> {
  return tx.selectFrom('workflow_executions').selectAll().where('id', '=', id).forUpdate().executeTakeFirstOrThrow();
}

async function recordRunResult(tx: Db, node: { execution_id: string; node_id: string }, run: RunRow): Promise<void> {
  const jobs = await tx.selectFrom('jobs').select(['output', 'condition']).where('run_id', '=', run.id).orderBy('created_at').orderBy('id').execute();
  const outputs = jobs.map((job) => job.output ?? null);
  await tx
    .updateTable('workflow_node_runs')
    .set({
      status: NODE_STATUS_OF_RUN[run.status],
      // A fan-out run's output is the list of its jobs' outputs.
      output: JSON.stringify(outputs.length === 1 ? outputs[0] : outputs),
      condition: jobs.some((job) => job.condition === true) ? true : jobs.some((job) => job.condition === false) ? false : null,
      finished_at: run.finished_at ?? sql<Date>`now()`,
    })
    .where('execution_id', '=', node.execution_id)
    .where('node_id', '=', node.node_id)
    .execute();
}

/** Starts or skips whatever has become ready, until nothing changes; then ends the execution if nothing is left. The caller holds its lock. */
async function advance(tx: Db, executionId: string): Promise<void> {
  const execution = await tx.selectFrom('workflow_executions').selectAll().where('id', '=', executionId).executeTakeFirstOrThrow();
  if (execution.status !== 'running') return;
  const graph: Graph = { nodes: execution.nodes, edges: execution.edges };
  for (;;) {
    const states = await nodeStates(tx, executionId);
    if (execution.cancel_requested) break;
    const steps = nextSteps(graph, states, execution.input);
    if (steps.length === 0) break;
    for (const step of steps) {
      if (step.action === 'skip') await setNode(tx, executionId, step.nodeId, { status: 'skipped', finished_at: sql<Date>`now()` });
      else await startNode(tx, execution, step.nodeId, step.input);
    }
  }
  const outcome = executionOutcome(graph, await nodeStates(tx, executionId), execution.cancel_requested);
  if (outcome) {
    await tx.updateTable('workflow_executions').set({ status: outcome, finished_at: sql<Date>`now()` }).where('id', '=', executionId).execute();
  }
}

async function nodeStates(tx: Db, executionId: string): Promise<Map<string, NodeState>> {
  const rows = await tx.selectFrom('workflow_node_runs').select(['node_id', 'status', 'output', 'condition']).where('execution_id', '=', executionId).execute();
  return new Map(rows.map((row) => [row.node_id, { status: row.status, output: row.output, condition: row.condition }]));
}

function setNode(tx: Db, executionId: string, nodeId: string, values: UpdateObject<Database, 'workflow_node_runs'>) {
  return tx.updateTable('workflow_node_runs').set(values).where('execution_id', '=', executionId).where('node_id', '=', nodeId).execute();
}

/** Enqueues the node's event as a run linked to the node; an event gone since the workflow was saved fails the node. */
async function startNode(tx: Db, execution: ExecutionRow, nodeId: string, input: unknown): Promise<void> {
  const spec = execution.nodes.find((node) => node.id === nodeId)!;
  const event = await tx
    .selectFrom('events')
    .selectAll()
    .where('id', '=', spec.eventId)
    .where('owner_id', '=', execution.owner_id)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  const serialized = JSON.stringify(input ?? null);
  if (!event) {
    const error = `event ${spec.eventId} no longer exists`;
    await setNode(tx, execution.id, nodeId, { status: 'failed', input: serialized, error, started_at: sql<Date>`now()`, finished_at: sql<Date>`now()` });
    return;
  }
  const { run } = await enqueueRun(tx, event, input, await fanOutAgents(tx, fanOutWindowMs));
  await setNode(tx, execution.id, nodeId, { status: 'running', run_id: run.id, input: serialized, started_at: sql<Date>`now()` });
  // A run can end inside enqueueRun (a server that is gone fails its job at once), before it was linked here.
  const settled = await tx.selectFrom('runs').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow();
  if (settled.status !== 'running') await recordRunResult(tx, { execution_id: execution.id, node_id: nodeId }, settled);
}
