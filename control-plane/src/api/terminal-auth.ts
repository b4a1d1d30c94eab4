// Who opens a terminal WebSocket: the credential in the console's session
// cookie (the same encrypted JWE the console sets, read with its key: a
// session token from SignIn, or an API token) or in `Authorization: Bearer`;
// and whether the page asking is ours (Origin). The credential itself is
// checked by api/auth.ts like any API call's.
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { jwtDecrypt } from 'jose';

const SESSION_COOKIE = 'cronium_session';

/** The console's session key: CRONIUM_SESSION_KEY, or the file the console writes into the data dir on first sign-in. */
export function consoleSessionKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): () => Uint8Array | undefined {
  let key: Uint8Array | undefined;
  return () => {
    if (key) return key;
    const given = env.CRONIUM_SESSION_KEY;
    try {
      const base64 = given || readFileSync(join(dataDir, 'console-session.key'), 'utf8').trim();
      const bytes = new Uint8Array(Buffer.from(base64, 'base64'));
      if (bytes.length === 32) key = bytes;
    } catch {
      // No sign-in yet: no cookie can be valid.
    }
    return key;
  };
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return decodeURIComponent(part.slice(at + 1).trim());
  }
  return undefined;
}

async function tokenFromCookie(req: IncomingMessage, key: Uint8Array | undefined): Promise<string | undefined> {
  const jwt = cookie(req, SESSION_COOKIE);
  if (!jwt || !key) return undefined;
  try {
    const { payload } = await jwtDecrypt(jwt, key);
    return typeof payload.token === 'string' ? payload.token : undefined;
  } catch {
    return undefined;
  }
}

export type Credential = { readonly token: string; readonly via: 'bearer' | 'cookie' } | undefined;

export async function credentialOf(req: IncomingMessage, sessionKey: Uint8Array | undefined): Promise<Credential> {
  const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (bearer) return { token: bearer, via: 'bearer' };
  const token = await tokenFromCookie(req, sessionKey);
  return token ? { token, via: 'cookie' } : undefined;
}

/**
 * A browser always sends Origin on a WebSocket: it must be this server (its
 * Host) or one of `allowed`, or a page elsewhere could use the operator's
 * cookie (cross-site WebSocket hijacking). A cookie without an Origin is
 * refused too; a bearer token without one (a script) is fine.
 */
export function originAllowed(req: IncomingMessage, via: 'bearer' | 'cookie', allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (!origin) return via === 'bearer';
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  return host === req.headers.host || allowed.includes(origin);
}
