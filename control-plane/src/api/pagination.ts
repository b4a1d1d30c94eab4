import { sql, type RawBuilder } from 'kysely';
import { invalid } from './errors.ts';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

export function pageSize(requested: number): number {
  return Math.min(MAX_PAGE_SIZE, requested || DEFAULT_PAGE_SIZE);
}

/** The token for the page after `row`: the id of the last row shown. */
export function encodeCursor(row: { id: string }): string {
  return Buffer.from(JSON.stringify({ after: row.id })).toString('base64url');
}

/**
 * Rows after the cursor in (created_at desc, id desc) order. The comparison
 * reads the cursor row's own timestamp from the table, so no precision is lost
 * in the token (Postgres keeps microseconds, JavaScript dates milliseconds).
 */
export function afterCursor(table: 'runs' | 'jobs' | 'workflow_executions', token: string): RawBuilder<boolean> | undefined {
  if (!token) return undefined;
  let after: unknown;
  try {
    after = (JSON.parse(Buffer.from(token, 'base64url').toString()) as { after?: unknown }).after;
  } catch {
    // fall through
  }
  if (typeof after !== 'string') throw invalid('pageToken', 'not a token this API returned');
  return sql<boolean>`(created_at, id) < (select c.created_at, c.id from ${sql.table(table)} c where c.id = ${after})`;
}
