import { isUtf8 } from 'node:buffer';
import { create, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
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

/**
 * A chunk as a WatchJobResponse. Valid UTF-8 (what the agent sends) is put on
 * the wire as it is, which is how protobuf encodes the string it stands for,
 * instead of decoding it to a string and encoding that again.
 */
export function logMessage(chunk: LogChunkRow): Uint8Array {
  if (!isUtf8(chunk.data)) return toBinary(WatchJobResponseSchema, logResponse(chunk));
  // LogEntry {stream = 1; data = 2; offset = 3; attempt = 4} in WatchJobResponse.log = 1; zeros left out, as protobuf does.
  const head = new BinaryWriter();
  if (chunk.stream !== 0) head.tag(1, WireType.Varint).int32(chunk.stream);
  if (chunk.data.length > 0) head.tag(2, WireType.LengthDelimited).uint32(chunk.data.length);
  const tail = new BinaryWriter();
  if (chunk.offset !== 0) tail.tag(3, WireType.Varint).uint64(chunk.offset);
  if (chunk.attempt !== 0) tail.tag(4, WireType.Varint).uint32(chunk.attempt);
  const [before, after] = [head.finish(), tail.finish()];
  const outer = new BinaryWriter().tag(1, WireType.LengthDelimited).uint32(before.length + chunk.data.length + after.length).finish();
  return Buffer.concat([outer, before, chunk.data, after]);
}

function logResponse(chunk: LogChunkRow) {
  return create(WatchJobResponseSchema, {
    kind: {
      case: 'log',
      value: { stream: chunk.stream, data: decoder.decode(chunk.data), offset: BigInt(chunk.offset), attempt: chunk.attempt },
    },
  });
}

export function publishLog(bus: Bus, chunk: LogChunkRow): void {
  bus.publish(subjects.job(chunk.jobId), logMessage(chunk));
}

export function kickDispatch(bus: Bus): void {
  bus.publish(subjects.dispatch, new Uint8Array());
}

/**
 * A change to events or workflows: once it is done, tells the scheduler (on
 * whichever replica leads) to list the schedules again.
 */
export async function changingSchedules<T>(bus: Bus, change: Promise<T>): Promise<T> {
  const result = await change;
  bus.publish(subjects.schedules, new Uint8Array());
  return result;
}
