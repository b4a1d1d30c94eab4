import type { Db } from '../store/database.ts';
import type { ExecutionRow } from '../store/schema.ts';
import { startExecution } from '../workflows/engine.ts';

export type WorkflowFire = { readonly execution: ExecutionRow } | { readonly reason: string } | undefined;

/**
 * One scheduled instant of a workflow: recorded under its unique key in the
 * transaction that starts the execution (or records why none started), so it
 * happens at most once across leader changes and restarts. Undefined when
 * another leader already fired it.
 */
export async function fireWorkflow(db: Db, workflowId: string, at: Date): Promise<WorkflowFire> {
  return db.transaction().execute(async (tx) => {
    const claimed = await tx
      .insertInto('workflow_schedule_fires')
      .values({ workflow_id: workflowId, fire_at: at })
      .onConflict((oc) => oc.columns(['workflow_id', 'fire_at']).doNothing())
      .returning('workflow_id')
      .executeTakeFirst();
    if (!claimed) return undefined;
    const fire = tx.updateTable('workflow_schedule_fires').where('workflow_id', '=', workflowId).where('fire_at', '=', at);
    // Read again under the lock: a pause or a delete may have come since the list was read.
    const current = await tx.selectFrom('workflows').selectAll().where('id', '=', workflowId).forUpdate().executeTakeFirst();
    if (!current || current.status !== 'active' || current.deleted_at !== null) {
      const reason = 'the workflow is no longer active';
      await fire.set({ skipped_reason: reason }).execute();
      return { reason };
    }
    const execution = await startExecution(tx, current, { scheduledAt: at.toISOString() }, 'schedule');
    await fire.set({ execution_id: execution.id }).execute();
    return { execution };
  });
}
