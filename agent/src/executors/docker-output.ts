// A container's attach stream, demultiplexed into ctx.log with backpressure,
// and the supervisor's exit lines (job-supervisor.ts) taken out of it.

import { Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { RunContext } from '../job.ts';
import { demuxDockerStream, type DemuxSink } from './docker-demux.ts';
import { ExitLineScanner, type JobExit } from './job-supervisor.ts';

export interface OutputPipe {
  /** Resolves once the stream ended and every chunk went through ctx.log. */
  readonly done: Promise<void>;
  /** Resolves once both streams carried the exit line and everything before it went through ctx.log; never, if they do not. */
  readonly exited: Promise<JobExit>;
  /** Waits for `done`; false if the stream made no progress for idleMs. */
  settled(idleMs: number): Promise<boolean>;
}

/** A writable that hands each chunk to ctx.log and acknowledges it only once logged. */
function logSink(log: (data: Buffer) => Promise<void>): Writable {
  return new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, callback) {
      log(chunk).then(() => callback(), (err: Error) => callback(err));
    },
  });
}


/**
 * The demuxer ignores write() results, so the source is paused while a sink
 * is over its high-water mark: a slow ctx.log slows the container's output.
 */
export function pipeOutput(stream: NodeJS.ReadWriteStream, ctx: RunContext, nonce: string): OutputPipe {
  let lastActivity = Date.now();
  const forward = (name: 'stdout' | 'stderr') => async (data: Buffer) => {
    lastActivity = Date.now();
    await ctx.log(name, data);
    lastActivity = Date.now();
  };
  const outputs = (['stdout', 'stderr'] as const).map((name) => ({ sink: logSink(forward(name)), scanner: new ExitLineScanner(nonce) }));
  let resolveExited: (exit: JobExit) => void = () => {};
  const exited = new Promise<JobExit>((resolve) => (resolveExited = resolve));
  const onExitLine = () => {
    const [out, err] = outputs;
    if (!out!.scanner.exit || !err!.scanner.exit) return;
    Promise.all(outputs.map((o) => finished(o.sink))).then(() => resolveExited(out!.scanner.exit!), () => {});
  };
  // The source is paused while any sink is over its high-water mark.
  const blocked = new Set<Writable>();
  const unblock = (sink: Writable) => {
    if (blocked.delete(sink) && blocked.size === 0) stream.resume();
  };
  const paced = (output: (typeof outputs)[number]): DemuxSink => ({
      write(chunk: Buffer) {
        const { sink, scanner } = output;
        if (sink.writableEnded) return true;
        const data = scanner.push(chunk);
        if (data.length > 0 && !sink.write(data) && !blocked.has(sink)) {
          blocked.add(sink);
          stream.pause();
          sink.once('drain', () => unblock(sink));
        }
        if (scanner.exit) {
          sink.end();
          unblock(sink); // an ending sink emits no 'drain', and takes nothing more from the source
          onExitLine();
        }
        return true;
      },
  });
  demuxDockerStream(stream as unknown as Readable, paced(outputs[0]!), paced(outputs[1]!));

  const done = new Promise<void>((resolve, reject) => {
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      for (const { sink, scanner } of outputs) {
        if (sink.writableEnded) continue;
        const rest = scanner.flush();
        if (rest.length > 0) sink.write(rest);
        sink.end();
      }
      Promise.all(outputs.map((o) => finished(o.sink))).then(() => resolve(), reject);
    };
    stream.once('end', end);
    stream.once('close', end);
    stream.once('error', end);
  });
  const settled = async (idleMs: number): Promise<boolean> => {
    lastActivity = Date.now();
    let poll: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => {
      poll = setInterval(() => {
        if (Date.now() - lastActivity > idleMs) resolve(false);
      }, Math.min(1000, idleMs));
    });
    try {
      return await Promise.race([done.then(() => true), idle]);
    } finally {
      clearInterval(poll);
    }
  };
  return { done, exited, settled };
}
