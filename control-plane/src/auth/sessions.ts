import { randomUUID } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import { sql } from 'kysely';
import type { Db } from '../store/database.ts';

export const SESSION_HOURS = 12;
const ISSUER = 'cronium';

/** Starts a session: a row (so it can be revoked) and a signed token naming it. */
export async function startSession(db: Db, key: Uint8Array, userId: string, hours = SESSION_HOURS): Promise<{ id: string; token: string; expiresAt: Date }> {
  const id = randomUUID();
  const expiresAt = new Date(Math.floor(Date.now() / 1000) * 1000 + hours * 3_600_000);
  await db.insertInto('sessions').values({ id, user_id: userId, expires_at: expiresAt }).execute();
  const token = await new SignJWT({ sid: id })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(expiresAt)
    .sign(key);
  return { id, token, expiresAt };
}

/** A session token's session id and user, when its signature, expiry and row all hold. */
export async function verifySession(db: Db, key: Uint8Array, token: string): Promise<{ sessionId: string; userId: string; expiresAt: Date } | undefined> {
  let claims: { sid?: unknown; sub?: unknown };
  try {
    claims = (await jwtVerify(token, key, { issuer: ISSUER, algorithms: ['HS256'] })).payload;
  } catch {
    return undefined;
  }
  if (typeof claims.sid !== 'string' || typeof claims.sub !== 'string') return undefined;
  const row = await db
    .selectFrom('sessions')
    .select(['id', 'user_id', 'expires_at'])
    .where('id', '=', claims.sid)
    .where('user_id', '=', claims.sub)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst();
  return row && { sessionId: row.id, userId: row.user_id, expiresAt: new Date(row.expires_at) };
}

export async function endSessions(db: Db, filter: { sessionId?: string; userId?: string; exceptSessionId?: string }): Promise<void> {
  let query = db.updateTable('sessions').set({ revoked_at: sql<Date>`now()` }).where('revoked_at', 'is', null);
  if (filter.sessionId) query = query.where('id', '=', filter.sessionId);
  if (filter.userId) query = query.where('user_id', '=', filter.userId);
  if (filter.exceptSessionId) query = query.where('id', '!=', filter.exceptSessionId);
  await query.execute();
}

/** A JWT (three base64url parts) rather than an API token. */
export function looksLikeSessionToken(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}
