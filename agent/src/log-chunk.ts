// A LogChunk ConnectRequest made in one piece: its wire bytes are written
// once, straight from the output pieces (data is the chunk's last field), and
// the message's data is a view of them, so neither joining the pieces nor
// encoding the message copies the output again.

import { create, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { ConnectRequestSchema, JobRefSchema, type ConnectRequest, type JobRef, type LogStream } from '@cronium/proto/agent/v1';
import { withBinary } from '@cronium/proto/grpc';

/** The job reference as bytes, made once per job. */
export function jobRefBytes(job: JobRef): Uint8Array {
  return toBinary(JobRefSchema, job);
}

/** ConnectRequest{log_chunk = 6: LogChunk{job = 1, stream = 2, offset = 3, data = 4}}, zeros left out as protobuf does. */
export function logChunkRequest(job: JobRef, jobBytes: Uint8Array, stream: LogStream, offset: number, pieces: readonly Uint8Array[]): ConnectRequest {
  const length = pieces.reduce((sum, piece) => sum + piece.length, 0);
  const head = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(jobBytes);
  if (stream !== 0) head.tag(2, WireType.Varint).int32(stream);
  if (offset !== 0) head.tag(3, WireType.Varint).uint64(offset);
  if (length > 0) head.tag(4, WireType.LengthDelimited).uint32(length);
  const inner = head.finish();
  const outer = new BinaryWriter().tag(6, WireType.LengthDelimited).uint32(inner.length + length).finish();
  const bytes = Buffer.allocUnsafe(outer.length + inner.length + length);
  bytes.set(outer, 0);
  bytes.set(inner, outer.length);
  let at = outer.length + inner.length;
  const dataStart = at;
  for (const piece of pieces) {
    bytes.set(piece, at);
    at += piece.length;
  }
  const message = create(ConnectRequestSchema, {
    kind: { case: 'logChunk', value: { job, stream, offset: BigInt(offset), data: bytes.subarray(dataStart) } },
  });
  return withBinary(message, bytes);
}
