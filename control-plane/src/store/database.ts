import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';
import { migrationProvider } from './migrations.ts';

export type Db = Kysely<Database>;

/** Runs fn in a transaction, or in the caller's when db already is one (so several changes can share one commit). */
export function inTransaction<T>(db: Db, fn: (tx: Db) => Promise<T>): Promise<T> {
  return db.isTransaction ? fn(db) : db.transaction().execute(fn);
}

/** The database's clock (which stamps offers and leases), not this process's. */
export async function storeNow(db: Db): Promise<Date> {
  return (await sql<{ now: Date }>`select now() as now`.execute(db)).rows[0]!.now;
}

export interface DatabaseOptions {
  /** Postgres connection string; when absent an embedded PGlite database is used. */
  readonly url?: string;
  /** Folder for the embedded database (used only without `url`). */
  readonly dataDir: string;
  /** Pool size for Postgres. Default 10. */
  readonly poolSize?: number;
  /** Settings for the pool's sessions, as `-c name=value` command-line options (Postgres only). */
  readonly sessionSettings?: string;
}

// Return bigint columns (log offsets, bigserial ids) as JS numbers; offsets stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

/** How busy a Postgres connection pool is (for metrics). */
export interface PoolStats {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<{ db: Db; kind: 'postgres' | 'pglite'; poolStats?: () => PoolStats }> {
  if (options.url) {
    const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10, options: options.sessionSettings });
    // An idle client losing its connection (Postgres restart) must not crash the process.
    pool.on('error', () => {});
    // Nor may a checked-out one (pg-pool listens only while a client is idle): in a transaction between two
    // statements, the error would be emitted with no listener. Its next query fails instead, and the pool drops it.
    pool.on('connect', (client) => client.on('error', () => {}));
    return {
      db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }),
      kind: 'postgres',
      poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGliteDialect } = await import('kysely-pglite-dialect');
  const folder = join(options.dataDir, 'pgdata');
  mkdirSync(folder, { recursive: true });
  const client = await PGlite.create(folder);
  return { db: new Kysely<Database>({ dialect: new PGliteDialect(client) }), kind: 'pglite' };
}

export async function migrate(db: Db): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((result) => result.status === 'Error');
  if (error || failed) {
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${String(error)}`, { cause: error });
  }
}
