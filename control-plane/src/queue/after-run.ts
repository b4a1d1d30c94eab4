import type { Db } from '../store/database.ts';
import type { RunRow } from '../store/schema.ts';
import { onRunsSettled as advanceWorkflows } from '../workflows/engine.ts';
import { runActions } from '../actions/run-actions.ts';

/**
 * Called inside the transaction that ends runs, so whatever a finished run
 * causes (a workflow's next nodes, conditional actions, notifications queued
 * in an outbox) commits with it or not at all: never lost, never twice.
 * One batch of agent results can end many runs in one transaction; each hook
 * takes them all, so it costs a statement or two per batch rather than per run.
 */
export async function afterRunsSettled(tx: Db, runs: readonly RunRow[]): Promise<void> {
  if (runs.length === 0) return;
  await advanceWorkflows(tx, runs);
  await runActions(tx, runs);
}

/** {@link afterRunsSettled} for one run. */
export async function afterRunSettled(tx: Db, run: RunRow): Promise<void> {
  await afterRunsSettled(tx, [run]);
}
