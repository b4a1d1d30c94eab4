import { create, toBinary } from '@bufbuild/protobuf';
import { WatchJobResponseSchema } from '@cronium/proto/api/v1/job';
import type { Bus } from './bus/bus.ts';
import { subjects } from './bus/bus.ts';
import type { JobRow } from './store/schema.ts';
import type { LogChunkRow } from './queue/logs.ts';
import { jobToProto } from './wire/api-messages.ts';

const decoder = new TextDecoder();

/** Tells every replica's watchers that a job changed. */
export function publishJob(bus: Bus, job: JobRow): void {
  const message = create(WatchJobResponseSchema, { kind: { case: 'job', value: jobToProto(job) } });
  bus.publish(subjects.job(job.id), toBinary(WatchJobResponseSchema, message));
}

export function publishLog(bus: Bus, chunk: LogChunkRow): void {
  const message = create(WatchJobResponseSchema, {
    kind: {
      case: 'log',
      value: { stream: chunk.stream, data: decoder.decode(chunk.data), offset: BigInt(chunk.offset), attempt: chunk.attempt },
    },
  });
  bus.publish(subjects.job(chunk.jobId), toBinary(WatchJobResponseSchema, message));
}

export function kickDispatch(bus: Bus): void {
  bus.publish(subjects.dispatch, new Uint8Array());
}
