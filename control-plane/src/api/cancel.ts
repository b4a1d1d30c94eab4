import { create, toBinary } from '@bufbuild/protobuf';
import { CancelJobSchema } from '@cronium/proto/agent/v1';
import { subjects } from '../bus/bus.ts';
import { cancelJob } from '../queue/transitions.ts';
import { publishJob } from '../job-events.ts';
import type { JobRow } from '../store/schema.ts';
import { refOf } from '../wire/agent-messages.ts';
import type { ApiDeps } from './deps.ts';

/** Cancels jobs; those on an agent are stopped there (SIGTERM, then SIGKILL after the grace period). */
export async function cancelJobs(deps: ApiDeps, jobIds: readonly string[]): Promise<JobRow[]> {
  const results: JobRow[] = [];
  for (const id of jobIds) {
    const result = await cancelJob(deps.db, id);
    if (!result) continue;
    if (result.finished) publishJob(deps.bus, result.finished.job);
    if (result.notifyAgent && result.job.agent_id) {
      const message = create(CancelJobSchema, { job: refOf(result.job), reason: 'cancelled by a user', stale: false });
      deps.bus.publish(subjects.agentCancel(result.job.agent_id), toBinary(CancelJobSchema, message));
    }
    results.push(result.job);
  }
  return results;
}
