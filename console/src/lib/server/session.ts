// The console session: the operator's API token inside an HttpOnly cookie,
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

export async function startSession(cookies: Cookies, token: string, secure: boolean): Promise<void> {
  const jwt = await new EncryptJWT({ token })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
    .setIssuedAt()
    .setExpirationTime(`${SESSION_HOURS}h`)
    .encrypt(sessionKey());
  cookies.set(SESSION_COOKIE, jwt, { path: '/', httpOnly: true, sameSite: 'strict', secure, maxAge: SESSION_HOURS * 3600 });
}

/** The token in a valid, unexpired session cookie. */
export async function sessionToken(cookies: Cookies): Promise<string | undefined> {
  const jwt = cookies.get(SESSION_COOKIE);
  if (!jwt) return undefined;
  try {
    const { payload } = await jwtDecrypt(jwt, sessionKey());
    return typeof payload.token === 'string' ? payload.token : undefined;
  } catch {
    return undefined;
  }
}

export function endSession(cookies: Cookies): void {
  cookies.delete(SESSION_COOKIE, { path: '/' });
}
