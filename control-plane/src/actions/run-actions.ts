import type { Db } from '../store/database.ts';
import type { ActionRow, ActionTrigger, RunRow } from '../store/schema.ts';
import { enqueueRun } from '../queue/enqueue.ts';
import { plainVariables } from '../variables/store.ts';
import { renderMessage, type TemplateView } from '../notifications/template.ts';

/**
 * A run started by an action may start another, up to this many links: an
 * event whose action runs itself stops after this many runs instead of
 * looping for ever. Notifications are sent at any depth.
 */
export const MAX_ACTION_CHAIN_DEPTH = 10;

interface JobFacts {
  readonly output: unknown;
  readonly condition: boolean | null;
}

function fires(trigger: ActionTrigger, run: RunRow, jobs: readonly JobFacts[]): boolean {
  switch (trigger) {
    case 'always':
      return true;
    case 'on_success':
      return run.status === 'succeeded';
    case 'on_failure':
      return run.status !== 'succeeded';
    case 'on_condition':
      return jobs.some((job) => job.condition === true);
  }
}

/** The run's output: the first job's that set one. */
function runOutput(jobs: readonly JobFacts[]): unknown {
  return jobs.find((job) => job.output !== null && job.output !== undefined)?.output ?? null;
}

/** Long outputs are cut: a notification is a message, not a copy of the result. */
const MAX_OUTPUT_CHARS = 4000;

function outputText(output: unknown): string {
  if (output === null || output === undefined) return '';
  const text = typeof output === 'string' ? output : JSON.stringify(output);
  return text.length > MAX_OUTPUT_CHARS ? `${text.slice(0, MAX_OUTPUT_CHARS)}…` : text;
}

/**
 * Runs the events' conditional actions for runs that just ended, inside the
 * transaction that ends them (one query finds the events that have any): a
 * runEvent action's run and a notification's outbox row commit with the run's
 * end or not at all. Only rows that are
 * known to exist are written, so a stale action can never fail the run's end.
 */
export async function runActions(tx: Db, runs: readonly RunRow[]): Promise<void> {
  const events = await tx
    .selectFrom('events')
    .select(['id', 'name', 'owner_id', 'actions'])
    .where('id', 'in', [...new Set(runs.map((run) => run.event_id))])
    .execute();
  const withActions = new Map(events.filter((event) => (event.actions ?? []).length > 0).map((event) => [event.id, event]));
  for (const run of runs) {
    const event = withActions.get(run.event_id);
    if (event) await runEventActions(tx, event, event.actions ?? [], run);
  }
}

async function runEventActions(tx: Db, event: { id: string; name: string; owner_id: string }, actions: readonly ActionRow[], run: RunRow): Promise<void> {
  const jobs = await tx.selectFrom('jobs').select(['output', 'condition']).where('run_id', '=', run.id).orderBy('created_at').orderBy('id').execute();
  const fired = actions.filter((action) => fires(action.trigger, run, jobs));
  if (fired.length === 0) return;
  const output = runOutput(jobs);
  let view: TemplateView | undefined;
  for (const action of fired) {
    if ('runEvent' in action) {
      if (run.action_depth >= MAX_ACTION_CHAIN_DEPTH) continue;
      const next = await tx.selectFrom('events').selectAll().where('id', '=', action.runEvent.eventId).where('owner_id', '=', event.owner_id).where('deleted_at', 'is', null).executeTakeFirst();
      if (next) await enqueueRun(tx, next, output, [], { runId: run.id, actionDepth: run.action_depth + 1 });
      continue;
    }
    const channel = await tx.selectFrom('notification_channels').select('id').where('id', '=', action.notify.channelId).where('owner_id', '=', event.owner_id).where('deleted_at', 'is', null).executeTakeFirst();
    if (!channel) continue;
    view ??= {
      event: { id: event.id, name: event.name },
      run: {
        id: run.id,
        status: run.status,
        exitCode: run.exit_code,
        durationMs: run.finished_at ? new Date(run.finished_at).getTime() - new Date(run.created_at).getTime() : null,
      },
      output: outputText(output),
      variables: await plainVariables(tx, event.owner_id),
    };
    await tx
      .insertInto('notification_deliveries')
      .values({
        id: crypto.randomUUID(),
        owner_id: event.owner_id,
        channel_id: channel.id,
        run_id: run.id,
        event_id: event.id,
        message: JSON.stringify(renderMessage(action.notify, view)),
      })
      .execute();
  }
}
