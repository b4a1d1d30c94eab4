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
