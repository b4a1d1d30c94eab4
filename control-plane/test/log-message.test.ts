// A log chunk goes on the bus for watchers as protobuf would encode its text,
// without being decoded and encoded again.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { WatchJobResponseSchema } from '@cronium/proto/api/v1/job';
import { logMessage } from '../src/job-events.ts';

test('a log chunk on the bus is the message protobuf makes of its text, byte for byte', () => {
  const texts = [Buffer.from('line\n'), Buffer.from('é∑😀'.repeat(300)), Buffer.alloc(300_000, 'x'), Buffer.alloc(0), Buffer.from([0xff, 0x41, 0xc3])];
  for (const data of texts) {
    for (const [stream, offset, attempt] of [[1, 0, 1], [3, 2 ** 40, 7], [2, 127, 128]] as const) {
      const expected = create(WatchJobResponseSchema, {
        kind: { case: 'log', value: { stream, data: new TextDecoder().decode(data), offset: BigInt(offset), attempt } },
      });
      const bytes = logMessage({ jobId: 'job', attempt, stream, offset, data });
      assert.deepEqual(Buffer.from(bytes), Buffer.from(toBinary(WatchJobResponseSchema, expected)));
      assert.equal(fromBinary(WatchJobResponseSchema, bytes).kind.case, 'log');
    }
  }
});
