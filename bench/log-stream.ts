// One job writing ~50 MB to stdout, one WatchJob watcher: bytes per second end
// to end and how late each line arrives, against reading the same container's
// output straight from the Engine API.
import Dockerode from 'dockerode';
import { Writable } from 'node:stream';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { freshDatabase, Stack, withClient } from './lib/stack.ts';
import { TEST_IMAGE } from '../test/harness.ts';
import { nowMs, round, summarize } from './lib/stats.ts';
import { TERMINAL, watchJobLive } from './lib/watch.ts';
import { profileEnv, profiling, summarizeProfiles } from './lib/profile.ts';
import { CpuMeters, pidsByName, postgresBackends } from './lib/procstat.ts';
import { byteaIngest } from './lib/pg-baselines.ts';

const MiB = 1024 * 1024;
const BYTES = 50 * MiB;
const MB = 1e6;

/**
 * ~100-byte lines in 64 KB writes; each line begins with the time its write
 * was made (ns since the epoch; the container shares the host's clock).
 * Python only repeats a line, so the writer is never the bottleneck.
 */
const SCRIPT = `import os, time
pad = b'x' * 78
total = ${BYTES}
written = 0
while written < total:
    line = b'%d ' % time.time_ns() + pad + b'\\n'
    block = line * min(640, max(1, (total - written) // len(line)))
    view = memoryview(block)
    while view:
        view = view[os.write(1, view):]
    written += len(block)
`;

/** A paced writer: ~1 MB/s for 5 s, 10 KB (100 lines, each with its own timestamp) every 10 ms. */
const PACED_SCRIPT = `import os, time
pad = b'y' * 78
end = time.time() + 5
while time.time() < end:
    block = b''.join(b'%d ' % time.time_ns() + pad + b'\\n' for _ in range(100))
    view = memoryview(block)
    while view:
        view = view[os.write(1, view):]
    time.sleep(0.01)
`;

/** Splits arriving text into lines and records how late each line arrived. */
class LineClock {
  readonly latencies: number[] = [];
  bytes = 0;
  first = 0;
  last = 0;
  #carry = '';

  push(text: string, at: number): void {
    if (this.first === 0) this.first = at;
    this.last = at;
    this.bytes += Buffer.byteLength(text);
    const joined = this.#carry + text;
    let start = 0;
    for (let nl = joined.indexOf('\n'); nl >= 0; nl = joined.indexOf('\n', start)) {
      const space = joined.indexOf(' ', start);
      if (space > start && space < nl) {
        const writtenMs = Number(joined.slice(start, space)) / 1e6;
        if (Number.isFinite(writtenMs)) this.latencies.push(at - writtenMs);
      }
      start = nl + 1;
    }
    this.#carry = joined.slice(start);
  }
}

/** The same script in a bare container, its output read through the Engine API's attach stream. */
async function bareStream(docker: Dockerode, script = SCRIPT): Promise<{ clock: LineClock; totalMs: number }> {
  const clock = new LineClock();
  const start = nowMs();
  const container = await docker.createContainer({ Image: TEST_IMAGE, Cmd: ['python3', '-c', script], AttachStdout: true, AttachStderr: true });
  const stream = await container.attach({ stream: true, stdout: true, stderr: true });
  const decoder = new TextDecoder();
  const stdout = new Writable({
    write(chunk: Buffer, _enc, callback) {
      clock.push(decoder.decode(chunk, { stream: true }), nowMs());
      callback();
    },
  });
  const stderr = new Writable({ write: (_c, _e, cb) => cb() });
  docker.modem.demuxStream(stream, stdout, stderr);
  const ended = new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
  });
  await container.start();
  await container.wait();
  await ended;
  await container.remove({ force: true });
  return { clock, totalMs: nowMs() - start };
}

async function oursStream(stack: Stack, eventId: string): Promise<{ clock: LineClock; totalMs: number; jobId: string; status: string }> {
  const clock = new LineClock();
  const start = nowMs();
  const run = await stack.runEvent(eventId);
  const jobId = run.jobs[0].id as string;
  let status = '';
  await watchJobLive(stack.baseUrl, jobId, (message, at) => {
    if (message.log && String(message.log.stream).includes('STDOUT')) clock.push(message.log.data as string, at);
    else if (message.job && TERMINAL.has(message.job.status)) status = message.job.status;
  });
  return { clock, totalMs: nowMs() - start, jobId, status };
}

async function run(ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const database = await freshDatabase('bench_logs');
  const cpProfile = profiling ? profileEnv('log-stream-control-plane') : undefined;
  const agentProfile = profiling ? profileEnv('log-stream-agent') : undefined;
  const stack = new Stack({
    databaseUrl: database.url,
    env: { CRONIUM_HEARTBEAT_MS: '5000', CRONIUM_LEASE_TTL_MS: '30000', CRONIUM_JOB_LOG_LIMIT_BYTES: String(BYTES * 2), ...cpProfile?.env },
    agentEnv: { ...agentProfile?.env },
  });
  const docker = new Dockerode();
  try {
    await stack.start();
    const event = await stack.createEvent({ name: 'bench-logs', type: 'EVENT_TYPE_PYTHON', script: SCRIPT, timeoutSeconds: 300, memoryMb: 512 });
    const small = await stack.createEvent({ name: 'bench-logs-warm', type: 'EVENT_TYPE_PYTHON', script: SCRIPT.replace(`total = ${BYTES}`, `total = ${MiB}`) });
    ctx.log('warm-up: a 1 MiB job and a bare run');
    await oursStream(stack, small.id);
    await bareStream(docker);

    const dbName = database.url.split('/').pop()!;
    const groups = {
      controlPlane: () => [stack.controlPlane!.pid!],
      agent: () => [stack.agent!.pid!],
      postgres: () => postgresBackends(dbName),
      docker: () => pidsByName('dockerd', 'containerd', 'containerd-shim', 'containerd-shim-runc-v2'),
    };
    ctx.log(`Postgres alone: storing ${BYTES / MiB} MiB as 64 KiB bytea chunks`);
    r.value('pg.ingest', `Postgres alone: ${BYTES / MiB} MiB stored as 64 KiB bytea rows, 16 per INSERT (as job_logs)`, 'MB/s', await byteaIngest(database.url, BYTES), true);
    ctx.log(`bare container, ${BYTES / MiB} MiB`);
    let meters = new CpuMeters(groups);
    const bare = await bareStream(docker);
    r.details.cpuPercentOfOneCoreBare = meters.stop();
    ctx.log(`Cronium job, ${BYTES / MiB} MiB`);
    meters = new CpuMeters(groups);
    const ours = await oursStream(stack, event.id);
    const cpu = meters.stop();
    r.details.cpuPercentOfOneCore = cpu;
    if (ours.status !== 'JOB_STATUS_SUCCEEDED') throw new Error(`the log job ended ${ours.status}`);
    const job = await withClient(database.url, async (client) =>
      (
        await client.query(
          `select (extract(epoch from finished_at - started_at) * 1000)::float8 as running,
                  (select coalesce(sum(length(data)), 0)::float8 from job_logs where job_id = $1 and stream = 1) as stored
             from jobs where id = $1`,
          [ours.jobId],
        )
      ).rows[0] as { running: number; stored: number },
    );

    const rate = (c: LineClock) => c.bytes / MB / ((c.last - c.first) / 1000);
    r.value('ours.rate', 'Cronium: stdout MB/s seen by one WatchJob watcher (first byte → last byte)', 'MB/s', rate(ours.clock));
    r.value('ours.e2e_rate', 'Cronium: stdout MB/s over the whole job (RunEvent → stream ended)', 'MB/s', ours.clock.bytes / MB / (ours.totalMs / 1000));
    r.value('ours.bytes', 'Cronium: stdout bytes received by the watcher', 'MB', ours.clock.bytes / MB);
    r.value('ours.stored', 'Cronium: stdout bytes stored in job_logs', 'MB', job.stored / MB);
    r.value('ours.running', 'Cronium: started_at → finished_at of the job', 's', job.running / 1000);
    r.distribution('ours.lines', 'Cronium: line latency, written in the container → received by the watcher', 'ms', summarize(ours.clock.latencies));
    r.value('bare.rate', 'Bare Engine API attach stream: stdout MB/s (first byte → last byte)', 'MB/s', rate(bare.clock), true);
    r.value('bare.e2e_rate', 'Bare Engine API: stdout MB/s over the whole container run', 'MB/s', bare.clock.bytes / MB / (bare.totalMs / 1000), true);
    r.distribution('bare.lines', 'Bare Engine API attach stream: line latency, written → received', 'ms', summarize(bare.clock.latencies), true);
    r.compare('Cronium watcher throughput vs bare attach stream', 'ours.rate', 'bare.rate', 'value');
    r.compare('Cronium watcher throughput vs Postgres storing the same bytes alone', 'ours.rate', 'pg.ingest', 'value');
    r.compare('Cronium line latency vs bare attach stream, p50', 'ours.lines', 'bare.lines', 'p50');
    r.compare('Cronium line latency vs bare attach stream, p99', 'ours.lines', 'bare.lines', 'p99');
    const bareCpu = r.details.cpuPercentOfOneCoreBare as Record<string, number>;
    r.note(
      `CPU while the Cronium job streamed (percent of one core): control plane ${cpu.controlPlane}%, agent ${cpu.agent}%, Postgres backends ${cpu.postgres}%, Docker engine (dockerd, containerd, shims) ${cpu.docker}%, the watcher (this process) ${cpu.bench}%. During the bare run: Docker engine ${bareCpu.docker}%, reader ${bareCpu.bench}%.`,
    );
    if (Math.abs(ours.clock.bytes - BYTES) > 200) r.note(`The watcher received ${ours.clock.bytes} stdout bytes of the ${BYTES} written.`);

    // A writer far below the path's capacity: how late lines are when nothing queues up.
    ctx.log('paced writer, ~1 MB/s for 5 s: Cronium and bare');
    const paced = await stack.createEvent({ name: 'bench-logs-paced', type: 'EVENT_TYPE_PYTHON', script: PACED_SCRIPT, timeoutSeconds: 60 });
    const pacedOurs = await oursStream(stack, paced.id);
    const pacedBare = await bareStream(docker, PACED_SCRIPT);
    r.distribution('paced.lines', 'Cronium, paced writer (~1 MB/s): line latency, written → received by the watcher', 'ms', summarize(pacedOurs.clock.latencies));
    r.distribution('paced.bare', 'Bare attach stream, paced writer (~1 MB/s): line latency', 'ms', summarize(pacedBare.clock.latencies), true);
    r.compare('Paced writer: Cronium line latency vs bare attach stream, p50', 'paced.lines', 'paced.bare', 'p50');
    r.compare('Paced writer: Cronium line latency vs bare attach stream, p99', 'paced.lines', 'paced.bare', 'p99');
    const lines = r.get('ours.lines').summary!;
    const pacedLines = r.get('paced.lines').summary!;
    const mbps = rate(ours.clock);
    r.target(
      'log streaming, one job to one watcher',
      '≥ 50 MB/s, p99 line latency ≤ 50 ms',
      `${round(mbps)} MB/s; line latency at that rate p50 ${round(lines.p50)} ms, p99 ${round(lines.p99)} ms; with a ~1 MB/s writer p50 ${round(pacedLines.p50)} ms, p99 ${round(pacedLines.p99)} ms`,
      mbps >= 50 && pacedLines.p99 <= 50,
    );
  } finally {
    await stack.stop().catch(() => {});
    if (cpProfile) r.details.controlPlaneProfile = summarizeProfiles(cpProfile.dir);
    if (agentProfile) r.details.agentProfile = summarizeProfiles(agentProfile.dir);
    await database.drop().catch(() => {});
  }
}

export const logStream: Benchmark = {
  name: 'log-stream',
  title: 'Log streaming: one job writing 50 MiB, one watcher',
  budgetMs: 90_000,
  async run(ctx, r) {
    r.how.push(
      `The real stack (control plane on Postgres with the memory bus, orchestrator agent with the Docker executor); the per-job log cap raised to ${(2 * BYTES) / MiB} MiB for this job.`,
      `A Python job writes ${BYTES / MiB} MiB to stdout in 64 KB writes of ~100-byte lines, each line beginning with \`time.time_ns()\` of its write (the container shares the host's clock); the writer only repeats a line, so it is never the bottleneck. One WatchJob watcher (Connect JSON stream over HTTP/1.1) opens right after RunEvent; the path is container → agent (attach stream, 64 KiB chunks, 4 MiB unacknowledged per job) → agent link → control plane (chunks stored in job_logs, published on the bus) → WatchJob.`,
      `MB/s = stdout bytes the watcher received / (its first → last stdout byte), MB = 10^6 bytes. Line latency = arrival at the watcher − the timestamp in the line, for every line. A writer faster than the path fills the pipes and buffers, so its lines wait in them: that latency is the backlog over the rate. A second job therefore writes at ~1 MB/s for 5 s (10 KB every 10 ms), far below capacity: its line latency is the one the target's p99 is judged on.`,
      `Baselines, same run: the same script in a bare container (default settings) with its output read straight from the Engine API attach stream (dockerode, demuxed), measured the same way; and Postgres alone storing ${BYTES / MiB} MiB as 64 KiB bytea rows in a table shaped like job_logs, 16 rows per INSERT … ON CONFLICT DO NOTHING, one client. Since the control plane acknowledges log chunks only once they are stored, these two bound what the path can carry on this machine.`,
    );
    await run(ctx, r);
  },
};
