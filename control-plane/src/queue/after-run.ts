import type { Db } from '../store/database.ts';
import type { RunRow } from '../store/schema.ts';
import { onRunSettled as advanceWorkflow } from '../workflows/engine.ts';
import { runActions } from '../actions/run-actions.ts';

/**
 * Called inside the transaction that ends a run, so whatever a finished run
 * causes (a workflow's next nodes, conditional actions, notifications queued
 * in an outbox) commits with it or not at all: never lost, never twice.
 */
export async function afterRunSettled(tx: Db, run: RunRow): Promise<void> {
  await advanceWorkflow(tx, run);
  await runActions(tx, run);
}
