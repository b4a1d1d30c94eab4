// What the machine's Postgres does alone, measured in the same run as Cronium.
import pg from 'pg';
import { nowMs, summarize, type Summary } from './stats.ts';

/** Latency of a one-row INSERT in its own transaction (autocommit), one client. */
export async function commitLatency(url: string, samples: number, warmup = 200): Promise<Summary> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('create table if not exists bench_commit (id bigserial primary key, payload text not null, created_at timestamptz not null default now())');
    const times: number[] = [];
    for (let i = 0; i < warmup + samples; i++) {
      const start = nowMs();
      await client.query({ name: 'bench_commit_insert', text: 'insert into bench_commit (payload) values ($1)', values: [`row ${i}`] });
      if (i >= warmup) times.push(nowMs() - start);
    }
    await client.query('drop table bench_commit');
    return summarize(times);
  } finally {
    await client.end();
  }
}

/**
 * Postgres alone storing log bytes as the control plane does (job_logs-like
 * table, 64 KiB bytea chunks, several per INSERT … ON CONFLICT DO NOTHING):
 * MB/s (10^6 bytes).
 */
export async function byteaIngest(url: string, totalBytes: number, chunkBytes = 64 * 1024, perInsert = 16): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(
      'create table bench_logs (id bigserial primary key, job_id text not null, attempt integer not null, stream smallint not null, "offset" bigint not null, data bytea not null, unique (job_id, attempt, stream, "offset"))',
    );
    const line = Buffer.from(`${Date.now()}000000 ${'x'.repeat(78)}\n`);
    const chunk = Buffer.alloc(chunkBytes);
    for (let at = 0; at < chunkBytes; at += line.length) line.copy(chunk, at);
    const rows = Array.from({ length: perInsert }, (_, i) => `($1, 1, 1, $${i + 2}, $${perInsert + 2})`).join(', ');
    const text = `insert into bench_logs (job_id, attempt, stream, "offset", data) values ${rows} on conflict do nothing`;
    const start = performance.now();
    let offset = 0;
    while (offset < totalBytes) {
      const offsets = Array.from({ length: perInsert }, (_, i) => offset + i * chunkBytes);
      await client.query(text, ['bench-job', ...offsets, chunk]);
      offset += perInsert * chunkBytes;
    }
    const seconds = (performance.now() - start) / 1000;
    await client.query('drop table bench_logs');
    return offset / 1e6 / seconds;
  } finally {
    await client.end();
  }
}
