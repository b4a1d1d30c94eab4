import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';

export const IDEMPOTENCY_HOURS = 24;
export const MAX_KEY_LENGTH = 255;

/** Calls an Idempotency-Key applies to: those that start something or make an object (not those answering with a secret). */
export function takesIdempotencyKey(methodName: string): boolean {
  return methodName === 'RunEvent' || methodName === 'RunWorkflow' || (methodName.startsWith('Create') && methodName !== 'CreateToken' && methodName !== 'CreateJoinToken');
}

export function requestHash(method: string, body: Uint8Array): string {
  return createHash('sha256').update(method).update('\0').update(body).digest('hex');
}

/** Answers are sealed: some hold a secret shown once (a workflow's webhook secret). */
function boundTo(ownerId: string, key: string): string {
  return `idempotency_keys:${ownerId}:${key}`;
}

/** The answer kept for this caller's key, unless it has expired. */
export async function storedAnswer(db: Db, sealer: Sealer, ownerId: string, key: string): Promise<{ requestHash: string; response: unknown } | undefined> {
  const row = await db
    .selectFrom('idempotency_keys')
    .select(['request_hash', 'response'])
    .where('owner_id', '=', ownerId)
    .where('key', '=', key)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst();
  return row && { requestHash: row.request_hash, response: JSON.parse(sealer.open(row.response as string, boundTo(ownerId, key))) };
}

/** Kept in the change's own transaction: a second call with the key that races this one fails on the primary key and is answered from here. */
export async function keepAnswer(tx: Db, sealer: Sealer, ownerId: string, key: string, hash: string, response: unknown): Promise<void> {
  await tx.deleteFrom('idempotency_keys').where('owner_id', '=', ownerId).where('key', '=', key).where('expires_at', '<=', sql<Date>`now()`).execute();
  await tx
    .insertInto('idempotency_keys')
    .values({ owner_id: ownerId, key, request_hash: hash, response: JSON.stringify(sealer.seal(JSON.stringify(response), boundTo(ownerId, key))), expires_at: new Date(Date.now() + IDEMPOTENCY_HOURS * 3_600_000) })
    .execute();
}

export async function purgeExpiredKeys(db: Db): Promise<number> {
  const result = await db.deleteFrom('idempotency_keys').where('expires_at', '<=', sql<Date>`now()`).executeTakeFirst();
  return Number(result.numDeletedRows);
}
