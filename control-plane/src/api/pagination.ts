import { invalid } from './errors.ts';

export interface Cursor {
  readonly createdAt: string;
  readonly id: string;
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

export function pageSize(requested: number): number {
  return Math.min(MAX_PAGE_SIZE, requested || DEFAULT_PAGE_SIZE);
}

export function encodeCursor(row: { created_at: Date; id: string }): string {
  return Buffer.from(JSON.stringify({ createdAt: new Date(row.created_at).toISOString(), id: row.id })).toString('base64url');
}

export function decodeCursor(token: string): Cursor | undefined {
  if (!token) return undefined;
  try {
    const cursor = JSON.parse(Buffer.from(token, 'base64url').toString()) as Cursor;
    if (typeof cursor.createdAt === 'string' && typeof cursor.id === 'string' && !Number.isNaN(Date.parse(cursor.createdAt))) return cursor;
  } catch {
    // fall through
  }
  throw invalid('pageToken', 'not a token this API returned');
}
