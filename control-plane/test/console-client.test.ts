// The browser address the in-process console names is believed only with this
// process's secret; anyone else's claim leaves the socket's address.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONSOLE_CLIENT_HEADER, callerAddress, shareWithConsole } from '../src/api/console-client.ts';

test("the console's header names the browser's address only with the process's secret", () => {
  shareWithConsole();
  const secret = (globalThis as Record<symbol, unknown>)[Symbol.for('cronium.consoleClientSecret')] as string;
  assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(callerAddress({ [CONSOLE_CLIENT_HEADER]: `${secret} 203.0.113.7` }, '127.0.0.1'), '203.0.113.7');
  assert.equal(callerAddress({}, '127.0.0.1'), '127.0.0.1');
  assert.equal(callerAddress({ [CONSOLE_CLIENT_HEADER]: 'guessed-secret 203.0.113.7' }, '198.51.100.1'), '198.51.100.1');
  assert.equal(callerAddress({ [CONSOLE_CLIENT_HEADER]: '203.0.113.7' }, '198.51.100.1'), '198.51.100.1');
  assert.equal(callerAddress({ [CONSOLE_CLIENT_HEADER]: `${secret.slice(1)}x 203.0.113.7` }, '198.51.100.1'), '198.51.100.1');
  assert.equal(callerAddress({}, undefined), '');
});
