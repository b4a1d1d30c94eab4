// Splits a Docker attach stream (non-TTY) into stdout and stderr. Each frame
// is an 8-byte header (stream type, 3 zero bytes, big-endian length) and its
// payload; payloads are passed on as views of the arriving chunks, in pieces
// when a frame spans chunks, so nothing is copied but a split header.

import type { Readable } from 'node:stream';

export interface DemuxSink {
  write(chunk: Buffer): unknown;
}

const HEADER = 8;

/** Feeds `stream`'s frames to `stdout` (types 0 and 1) and `stderr` (type 2); a stream that is not framed goes to stdout as it is. */
export function demuxDockerStream(stream: Readable, stdout: DemuxSink, stderr: DemuxSink): void {
  let header: Buffer = Buffer.alloc(0);
  let left = 0;
  let target: DemuxSink = stdout;
  let raw = false;
  stream.on('data', (chunk: Buffer) => {
    if (raw) return void stdout.write(chunk);
    let at = 0;
    while (at < chunk.length) {
      if (left > 0) {
        const n = Math.min(left, chunk.length - at);
        target.write(chunk.subarray(at, at + n));
        at += n;
        left -= n;
        continue;
      }
      const take = chunk.subarray(at, at + HEADER - header.length);
      header = header.length > 0 ? Buffer.concat([header, take]) : take;
      at += take.length;
      if (header.length < HEADER) break;
      const type = header[0]!;
      if (type > 2) {
        // Not multiplexed (TTY mode) or misaligned: pass the rest through unchanged.
        raw = true;
        stdout.write(Buffer.concat([header, chunk.subarray(at)]));
        return;
      }
      target = type === 2 ? stderr : stdout;
      left = header.readUInt32BE(4);
      header = Buffer.alloc(0);
    }
  });
}
