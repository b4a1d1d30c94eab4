// The console calls the API over loopback, so the socket's address is always
// the console's own. To let the audit log and the per-address sign-in limit
// see the browser's address instead, the console (loaded into this process)
// names it in a header that carries a random secret of this process; only the
// in-process console can know it, so no client can claim another address.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export const CONSOLE_CLIENT_HEADER = 'x-cronium-console-client';

const secret = randomBytes(32).toString('base64url');

/** Where the console finds the secret: a global, not the environment, so child processes never inherit it. */
export function shareWithConsole(): void {
  (globalThis as Record<symbol, unknown>)[Symbol.for('cronium.consoleClientSecret')] = secret;
}

/** The caller's address: the browser's when the in-process console vouches for it, else the socket's. */
export function callerAddress(headers: IncomingHttpHeaders, socketAddress: string | undefined): string {
  const value = headers[CONSOLE_CLIENT_HEADER];
  if (typeof value === 'string') {
    const space = value.indexOf(' ');
    const given = Buffer.from(space > 0 ? value.slice(0, space) : '');
    const expected = Buffer.from(secret);
    if (given.length === expected.length && timingSafeEqual(given, expected)) return value.slice(space + 1).slice(0, 100);
  }
  return socketAddress ?? '';
}
