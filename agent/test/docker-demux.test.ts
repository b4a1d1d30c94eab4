// Docker's attach stream split into stdout and stderr without copying.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { demuxDockerStream } from '../src/executors/docker-demux.ts';

function frame(type: number, body: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

async function demux(pieces: readonly Buffer[]): Promise<{ out: string; err: string }> {
  const stream = new PassThrough();
  const got = { out: '', err: '' };
  demuxDockerStream(stream, { write: (b: Buffer) => (got.out += b.toString('latin1')) }, { write: (b: Buffer) => (got.err += b.toString('latin1')) });
  for (const piece of pieces) stream.write(piece);
  await new Promise((resolve) => setImmediate(resolve));
  return got;
}

test('attach frames split at every byte, including empty frames and headers cut in two, come out whole and apart', async () => {
  const frames: Buffer[] = [];
  const want = { out: '', err: '' };
  for (let i = 0; i < 60; i++) {
    const type = i % 3 === 0 ? 2 : 1;
    const body = Buffer.from(`frame ${i};`.repeat(i % 5));
    frames.push(frame(type, body));
    if (type === 2) want.err += body.toString('latin1');
    else want.out += body.toString('latin1');
  }
  const all = Buffer.concat(frames);
  for (const step of [1, 5, 8, 9, 100, all.length]) {
    const pieces: Buffer[] = [];
    for (let at = 0; at < all.length; at += step) pieces.push(all.subarray(at, at + step));
    assert.deepEqual(await demux(pieces), want, `pieces of ${step} bytes`);
  }
});

test('a stream that is not framed (TTY) passes through as stdout', async () => {
  assert.deepEqual(await demux([Buffer.from('plain output\n'), Buffer.from('more\n')]), { out: 'plain output\nmore\n', err: '' });
});
