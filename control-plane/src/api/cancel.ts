import { create, toBinary } from '@bufbuild/protobuf';
import { CancelJobSchema } from '@cronium/proto/agent/v1';
import type { Bus } from '../bus/bus.ts';
import { subjects } from '../bus/bus.ts';
import { cancelJob, type Cancelled } from '../queue/transitions.ts';
import { publishJob } from '../job-events.ts';
import type { JobRow } from '../store/schema.ts';
import { refOf } from '../wire/agent-messages.ts';
import type { ApiDeps } from './deps.ts';

/** After a cancel committed: watchers learn of a job that ended, and its agent is told to stop it (SIGTERM, then SIGKILL after the grace period). */
export function announceCancel(bus: Bus, result: Cancelled): void {
  if (result.finished) publishJob(bus, result.finished.job);
  if (result.notifyAgent && result.job.agent_id) {
    const message = create(CancelJobSchema, { job: refOf(result.job), reason: result.reason, stale: false });
    bus.publish(subjects.agentCancel(result.job.agent_id), toBinary(CancelJobSchema, message));
  }
}

/** Cancels jobs; those on an agent are stopped there. */
export async function cancelJobs(deps: Pick<ApiDeps, 'db' | 'bus'>, jobIds: readonly string[]): Promise<JobRow[]> {
  const results: JobRow[] = [];
  for (const id of jobIds) {
    const result = await cancelJob(deps.db, id);
    if (!result) continue;
    announceCancel(deps.bus, result);
    results.push(result.job);
  }
  return results;
}
