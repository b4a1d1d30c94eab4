// The event history checker for fault tests: reads every job's history (the
// jobs table, its runs, its stored log chunks) and the starts counted outside
// the containers, and checks the promises Cronium makes: exactly one terminal
// state per job, none lost, a job without retries never started twice, each
// attempt started at most once, logs stored once and whole.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import pg from 'pg';

export const TERMINAL_STATES = ['JOB_STATUS_SUCCEEDED', 'JOB_STATUS_FAILED', 'JOB_STATUS_TIMED_OUT', 'JOB_STATUS_CANCELLED'];
const TERMINAL_ROWS = ['succeeded', 'failed', 'timed_out', 'cancelled'];

/** Counts job starts outside the containers: each job reports (job, attempt) here when it begins. */
export class StartCounter {
  readonly starts = new Map<string, number[]>();
  #server?: Server;
  port = 0;

  async start(): Promise<this> {
    this.#server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const job = url.searchParams.get('job') ?? '';
      this.starts.set(job, [...(this.starts.get(job) ?? []), Number(url.searchParams.get('attempt'))]);
      res.end('ok');
    });
    await new Promise<void>((done) => this.#server!.listen(0, '127.0.0.1', done));
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  close(): void {
    this.#server?.close();
  }

  /**
   * A Python job that reports its start, prints `step 0..n-1` (n random in
   * [minSteps, maxSteps]) a quarter second apart, then `done`. It needs the
   * host network (CRONIUM_DOCKER_NETWORK=host on the agent, `network: true`).
   */
  script(minSteps = 2, maxSteps = 8): string {
    return [
      'import os, random, time, urllib.request',
      `urllib.request.urlopen(f"http://127.0.0.1:${this.port}/start?job={os.environ['CRONIUM_JOB_ID']}&attempt={os.environ['CRONIUM_ATTEMPT']}").read()`,
      `for i in range(random.randint(${minSteps}, ${maxSteps})):`,
      '    print("step", i, flush=True)',
      '    time.sleep(0.25)',
      'print("done", flush=True)',
    ].join('\n');
  }
}

export interface ExpectedJob {
  readonly retries: number;
}

export interface HistoryReport {
  readonly jobs: number;
  readonly byStatus: Record<string, number>;
  /** Jobs that needed more than one attempt. */
  readonly retried: number;
  /** Jobs whose error says an attempt was interrupted (agent lost, lease expired, restart). */
  readonly interrupted: number;
  readonly starts: number;
}

interface JobHistoryRow {
  id: string;
  run_id: string;
  status: string;
  attempt: number;
  max_attempts: number;
  error: string;
  finished_at: Date | null;
  run_status: string;
}

/**
 * Reads the history of `expected` jobs from the database and asserts the
 * promises. Call it once every job is terminal (see waitAllTerminal).
 * `counter` is the StartCounter the jobs reported to; `stepLogs` asserts
 * that each succeeded job's stdout is `step 0..n-1` then `done`, stored once.
 */
export async function checkHistory(
  databaseUrl: string,
  expected: ReadonlyMap<string, ExpectedJob>,
  counter: StartCounter,
  options: { stepLogs?: boolean } = {},
): Promise<HistoryReport> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const ids = [...expected.keys()];
    const { rows } = await client.query<JobHistoryRow>(
      `select j.id, j.run_id, j.status, j.attempt, j.max_attempts, j.error, j.finished_at, r.status as run_status
         from jobs j join runs r on r.id = j.run_id where j.id = any($1)`,
      [ids],
    );
    assert.equal(rows.length, ids.length, `no job lost: ${ids.length - rows.length} of ${ids.length} jobs missing`);
    const byStatus: Record<string, number> = {};
    let retried = 0;
    let interrupted = 0;
    let starts = 0;
    for (const job of rows) {
      const { retries } = expected.get(job.id)!;
      byStatus[job.status] = (byStatus[job.status] ?? 0) + 1;
      assert.ok(TERMINAL_ROWS.includes(job.status), `job ${job.id} ended: ${job.status}`);
      assert.ok(job.finished_at, `job ${job.id} has its finish time`);
      assert.notEqual(job.run_status, 'running', `job ${job.id}: its run settled`);
      assert.ok(job.attempt <= retries + 1, `job ${job.id} ran ${job.attempt} attempts with ${retries} retries`);
      const started = counter.starts.get(job.id) ?? [];
      starts += started.length;
      if (retries === 0) assert.ok(started.length <= 1, `job ${job.id} without retries started ${started.length} times`);
      assert.equal(new Set(started).size, started.length, `job ${job.id}: an attempt started twice (${started})`);
      assert.ok(started.every((attempt) => attempt >= 1 && attempt <= job.attempt), `job ${job.id}: a start of an attempt that never was (${started})`);
      if (job.status === 'succeeded') assert.ok(started.includes(job.attempt), `job ${job.id} succeeded in attempt ${job.attempt}, which never started`);
      if (job.attempt > 1) retried++;
      if (/agent lost|lease expired|restarted|no longer current/.test(job.error)) interrupted++;
    }
    if (options.stepLogs) await checkStepLogs(client, rows.filter((job) => job.status === 'succeeded'));
    return { jobs: rows.length, byStatus, retried, interrupted, starts };
  } finally {
    await client.end();
  }
}

/** Each succeeded job's final attempt: chunks contiguous from offset 0 (none twice, none missing), and the whole script's output. */
async function checkStepLogs(client: pg.Client, jobs: readonly JobHistoryRow[]): Promise<void> {
  const { rows } = await client.query<{ job_id: string; attempt: number; offset: string | number; data: Buffer }>(
    `select job_id, attempt, "offset", data from job_logs where job_id = any($1) and stream = 1 order by job_id, attempt, "offset"`,
    [jobs.map((job) => job.id)],
  );
  const chunks = new Map<string, { offset: number; data: Buffer }[]>();
  for (const row of rows) {
    const key = `${row.job_id}/${row.attempt}`;
    chunks.set(key, [...(chunks.get(key) ?? []), { offset: Number(row.offset), data: row.data }]);
  }
  for (const job of jobs) {
    let end = 0;
    const parts: Buffer[] = [];
    for (const chunk of chunks.get(`${job.id}/${job.attempt}`) ?? []) {
      assert.equal(chunk.offset, end, `job ${job.id}: stdout chunk at ${chunk.offset}, expected ${end} (a gap or a chunk stored twice)`);
      end += chunk.data.length;
      parts.push(chunk.data);
    }
    const lines = Buffer.concat(parts).toString().split('\n');
    assert.equal(lines.pop(), '', `job ${job.id}: stdout ends with a newline`);
    assert.equal(lines.pop(), 'done', `job ${job.id}: stdout is whole`);
    assert.deepEqual(lines, lines.map((_, i) => `step ${i}`), `job ${job.id}: every step once, in order`);
  }
}

/** Polls the API until every job is terminal or the deadline passes; returns those still open. */
export async function waitAllTerminal(getJob: (id: string) => Promise<any>, ids: Iterable<string>, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let pending = [...ids];
  while (pending.length > 0 && Date.now() < deadline) {
    const states = await Promise.all(pending.map((id) => getJob(id).catch(() => ({ id, status: 'unknown' }))));
    pending = states.filter((job) => !TERMINAL_STATES.includes(job.status)).map((job) => job.id);
    if (pending.length > 0) await new Promise((done) => setTimeout(done, 500));
  }
  return pending;
}
