// One job at a time, as the Docker benchmarks sample it: through Cronium, and
// the bare Engine API run of the same command that it is compared with.
import Dockerode from 'dockerode';
import type { Stack } from './stack.ts';
import { nowMs } from './stats.ts';
import { TERMINAL, watchJobLive } from './watch.ts';

/** RunEvent, then WatchJob until the terminal status: how long that took, and the job. */
export async function runAndWatch(stack: Stack, eventId: string): Promise<{ e2e: number; jobId: string }> {
  const start = nowMs();
  const jobId = (await stack.runEvent(eventId)).jobs[0].id as string;
  let terminalAt = 0;
  let status = '';
  await watchJobLive(stack.baseUrl, jobId, (message, at) => {
    if (message.job && TERMINAL.has(message.job.status)) {
      terminalAt = at;
      status = message.job.status;
    }
  });
  if (status !== 'JOB_STATUS_SUCCEEDED') throw new Error(`job ${jobId} ended ${status || 'without a terminal status'}`);
  return { e2e: terminalAt - start, jobId };
}

/** create → start → wait → remove, nothing else: the least the Engine API needs to run the command. */
export async function bareRun(docker: Dockerode, image: string, script: string): Promise<number> {
  const start = nowMs();
  const container = await docker.createContainer({ Image: image, Cmd: ['bash', '-c', script] });
  await container.start();
  await container.wait();
  await container.remove({ force: true });
  return nowMs() - start;
}
