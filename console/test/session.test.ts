// The console's session cookie: the token inside cannot be read or forged,
// and a cookie made with another key does not open a session.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Cookies } from '@sveltejs/kit';

const dataDir = mkdtempSync(join(tmpdir(), 'cronium-session-'));
process.env.CRONIUM_DATA_DIR = dataDir;
delete process.env.CRONIUM_SESSION_KEY;
const { SESSION_COOKIE, SESSION_HOURS, endSession, readSession, sessionToken, startSession } = await import('../src/lib/server/session.ts');
after(() => rmSync(dataDir, { recursive: true, force: true }));

interface Set { value: string; options: Record<string, unknown> }
function jar(): Cookies & { sets: Map<string, Set> } {
  const sets = new Map<string, Set>();
  return {
    sets,
    get: (name: string) => sets.get(name)?.value,
    set: (name: string, value: string, options: Record<string, unknown>) => void sets.set(name, { value, options }),
    delete: (name: string) => void sets.delete(name),
  } as unknown as Cookies & { sets: Map<string, Set> };
}

test('a session carries the token in an HttpOnly, SameSite=Strict, expiring, encrypted cookie', async () => {
  const cookies = jar();
  await startSession(cookies, 'crn_secret-token', false);
  const cookie = cookies.sets.get(SESSION_COOKIE)!;
  assert.deepEqual(cookie.options, { path: '/', httpOnly: true, sameSite: 'strict', secure: false, maxAge: SESSION_HOURS * 3600 });
  assert.ok(!cookie.value.includes('crn_secret-token'));
  assert.ok(!Buffer.from(cookie.value.split('.')[3] ?? '', 'base64url').toString().includes('secret'), 'the payload is encrypted');
  assert.equal(await sessionToken(cookies), 'crn_secret-token');
  // The key was generated into the data dir, readable by its owner only.
  assert.equal(statSync(join(dataDir, 'console-session.key')).mode & 0o777, 0o600);
  assert.equal(Buffer.from(readFileSync(join(dataDir, 'console-session.key'), 'utf8').trim(), 'base64').length, 32);
  endSession(cookies);
  assert.equal(await sessionToken(cookies), undefined);
});

test('a tampered, foreign or expired cookie opens no session', async () => {
  const cookies = jar();
  await startSession(cookies, 'crn_a', true);
  const value = cookies.sets.get(SESSION_COOKIE)!.value;
  const parts = value.split('.');
  const flipped = parts[3]!.startsWith('A') ? 'B' + parts[3]!.slice(1) : 'A' + parts[3]!.slice(1);
  cookies.set(SESSION_COOKIE, [...parts.slice(0, 3), flipped, parts[4]].join('.'), { path: '/' });
  assert.equal(await sessionToken(cookies), undefined);
  cookies.set(SESSION_COOKIE, 'not-a-jwe', { path: '/' });
  assert.equal(await sessionToken(cookies), undefined);

  // The same cookie shape sealed with another key.
  const { EncryptJWT } = await import('jose');
  const foreign = await new EncryptJWT({ token: 'crn_forged' })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
    .setExpirationTime('1h')
    .encrypt(new Uint8Array(randomBytes(32)));
  cookies.set(SESSION_COOKIE, foreign, { path: '/' });
  assert.equal(await sessionToken(cookies), undefined);

  // The right key, but past its expiry.
  const key = new Uint8Array(Buffer.from(readFileSync(join(dataDir, 'console-session.key'), 'utf8').trim(), 'base64'));
  const expired = await new EncryptJWT({ token: 'crn_a' })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
    .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
    .encrypt(key);
  cookies.set(SESSION_COOKIE, expired, { path: '/' });
  assert.equal(await sessionToken(cookies), undefined);
});

test('a session from SignIn is marked as one and lasts no longer than the session it holds', async () => {
  const cookies = jar();
  const expiresAt = new Date(Date.now() + 2 * 3600_000);
  await startSession(cookies, 'eyJ.session.token', false, 'session', expiresAt);
  assert.deepEqual(await readSession(cookies), { token: 'eyJ.session.token', kind: 'session' });
  const maxAge = cookies.sets.get(SESSION_COOKIE)!.options.maxAge as number;
  assert.ok(maxAge <= 2 * 3600 && maxAge > 2 * 3600 - 60, `the cookie ends with the session (${maxAge} s)`);
  // The encrypted token expires then too, whatever the browser does with the cookie.
  const key = new Uint8Array(Buffer.from(readFileSync(join(dataDir, 'console-session.key'), 'utf8').trim(), 'base64'));
  const { jwtDecrypt } = await import('jose');
  const { payload } = await jwtDecrypt(cookies.sets.get(SESSION_COOKIE)!.value, key);
  assert.equal(payload.exp, Math.floor(expiresAt.getTime() / 1000));

  // An API token session (and cookies from before sessions had a kind) reads as a token.
  await startSession(cookies, 'crn_b', false);
  assert.equal((await readSession(cookies))?.kind, 'token');
});
