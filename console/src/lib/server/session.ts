// The console session: the operator's credential (a session token from
// AuthService/SignIn, or an API token) inside an HttpOnly cookie,
// encrypted and authenticated (JWE, dir + A256GCM) so it can be neither read nor
// forged, and expiring. The key comes from CRONIUM_SESSION_KEY (base64,
// 32 bytes) or is generated once into the data dir.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { EncryptJWT, jwtDecrypt } from 'jose';
import type { Cookies } from '@sveltejs/kit';

export const SESSION_COOKIE = 'cronium_session';
export const SESSION_HOURS = 12;

let key: Uint8Array | undefined;

function sessionKey(): Uint8Array {
  if (key) return key;
  const given = process.env.CRONIUM_SESSION_KEY;
  if (given) {
    key = new Uint8Array(Buffer.from(given, 'base64'));
    if (key.length !== 32) throw new Error('CRONIUM_SESSION_KEY: expected base64 of 32 bytes');
    return key;
  }
  const file = join(resolve(process.env.CRONIUM_DATA_DIR || '.cronium'), 'console-session.key');
  try {
    key = new Uint8Array(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64'));
  } catch {
    mkdirSync(dirname(file), { recursive: true });
    const fresh = randomBytes(32);
    // wx: when two processes race, the first key wins and the other reads it.
    try {
      writeFileSync(file, fresh.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
      key = new Uint8Array(fresh);
    } catch {
      key = new Uint8Array(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64'));
    }
  }
  return key;
}

/** `session`: a token from AuthService/SignIn (ended with SignOut); `token`: an API token. */
export type CredentialKind = 'session' | 'token';

export interface Session {
  readonly token: string;
  readonly kind: CredentialKind;
}

/**
 * Seals `token` into the cookie. It lasts SESSION_HOURS, or less when the
 * credential itself expires sooner (`expiresAt`, as SignIn answers).
 */
export async function startSession(cookies: Cookies, token: string, secure: boolean, kind: CredentialKind = 'token', expiresAt?: Date): Promise<void> {
  const nowSeconds = Math.floor(Date.now() / 1000);
  const longest = nowSeconds + SESSION_HOURS * 3600;
  const expires = expiresAt ? Math.min(longest, Math.floor(expiresAt.getTime() / 1000)) : longest;
  const jwt = await new EncryptJWT({ token, kind })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
    .setIssuedAt()
    .setExpirationTime(expires)
    .encrypt(sessionKey());
  cookies.set(SESSION_COOKIE, jwt, { path: '/', httpOnly: true, sameSite: 'strict', secure, maxAge: Math.max(0, expires - nowSeconds) });
}

/** The credential in a valid, unexpired session cookie. */
export async function readSession(cookies: Cookies): Promise<Session | undefined> {
  const jwt = cookies.get(SESSION_COOKIE);
  if (!jwt) return undefined;
  try {
    const { payload } = await jwtDecrypt(jwt, sessionKey());
    if (typeof payload.token !== 'string') return undefined;
    return { token: payload.token, kind: payload.kind === 'session' ? 'session' : 'token' };
  } catch {
    return undefined;
  }
}

/** The token in a valid, unexpired session cookie. */
export async function sessionToken(cookies: Cookies): Promise<string | undefined> {
  return (await readSession(cookies))?.token;
}

export function endSession(cookies: Cookies): void {
  cookies.delete(SESSION_COOKIE, { path: '/' });
}
