// A log chunk's hand-made wire bytes are what protobuf makes of the same message.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ConnectRequestSchema, JobRefSchema, LogStream } from '@cronium/proto/agent/v1';
import { binaryOnce } from '@cronium/proto/grpc';
import { jobRefBytes, logChunkRequest } from '../src/log-chunk.ts';

test('log chunks made from pieces encode as protobuf would, byte for byte, and carry the joined data', () => {
  const refs = [create(JobRefSchema, { jobId: 'job-1', attempt: 2, leaseId: 'lease-1' }), create(JobRefSchema, {})];
  const pieceSets = [[], [Buffer.from('one line\n')], [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(200_000, 'b'), Buffer.from('é\n')]];
  for (const job of refs) {
    for (const pieces of pieceSets) {
      for (const [stream, offset] of [[LogStream.STDOUT, 0], [LogStream.STDERR, 2 ** 40 + 3], [LogStream.SYSTEM, 127]] as const) {
        const message = logChunkRequest(job, jobRefBytes(job), stream, offset, pieces);
        const joined = Buffer.concat(pieces);
        const expected = create(ConnectRequestSchema, { kind: { case: 'logChunk', value: { job, stream, offset: BigInt(offset), data: joined } } });
        const bytes = binaryOnce(ConnectRequestSchema, message);
        assert.deepEqual(Buffer.from(bytes), Buffer.from(toBinary(ConnectRequestSchema, expected)));
        assert.deepEqual(Buffer.from(toBinary(ConnectRequestSchema, message)), Buffer.from(bytes), 'the message itself encodes the same');
        const decoded = fromBinary(ConnectRequestSchema, bytes);
        assert.equal(decoded.kind.case, 'logChunk');
        assert.deepEqual(Buffer.from(decoded.kind.value!.data as Uint8Array), joined);
      }
    }
  }
});
