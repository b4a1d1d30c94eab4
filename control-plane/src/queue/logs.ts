import type { Db } from '../store/database.ts';

export const LOG_STREAMS = { stdout: 1, stderr: 2, system: 3 } as const;

export interface LogChunkRow {
  readonly jobId: string;
  readonly attempt: number;
  readonly stream: number;
  readonly offset: number;
  readonly data: Uint8Array;
}

/** Stores chunks; a chunk seen before (same job, attempt, stream, offset) is ignored. */
export async function appendLogs(db: Db, chunks: readonly LogChunkRow[]): Promise<void> {
  if (chunks.length === 0) return;
  await db
    .insertInto('job_logs')
    .values(chunks.map((c) => ({ job_id: c.jobId, attempt: c.attempt, stream: c.stream, offset: c.offset, data: c.data })))
    .onConflict((oc) => oc.columns(['job_id', 'attempt', 'stream', 'offset']).doNothing())
    .execute();
}

/** The job's log in arrival order, from every attempt. */
export async function readLogs(db: Db, jobId: string): Promise<LogChunkRow[]> {
  const rows = await db
    .selectFrom('job_logs')
    .select(['attempt', 'stream', 'offset', 'data'])
    .where('job_id', '=', jobId)
    .orderBy('id')
    .execute();
  return rows.map((row) => ({ jobId, attempt: row.attempt, stream: row.stream, offset: Number(row.offset), data: row.data }));
}
