import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * Has Postgres write out and fsync the WAL written so far, by committing a
 * tiny transaction of its own (a commit flushes all the WAL before its
 * record): a transaction that is open now has then little left to flush when
 * it commits. Only an optimisation, so a failure is ignored (never thrown); Postgres only
 * (with the embedded store, the one connection is the open transaction's).
 */
export async function flushWalSoFar(db: Db): Promise<void> {
  await sql`select pg_logical_emit_message(true, 'cronium', '')`.execute(db).catch(() => {});
}
