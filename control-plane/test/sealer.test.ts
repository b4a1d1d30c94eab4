import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../src/secrets/sealer.ts';

test('a sealed secret opens only with its associated data, and never shows the plaintext', () => {
  const sealer = new Sealer(randomBytes(32));
  const sealed = sealer.seal('-----BEGIN OPENSSH PRIVATE KEY-----\nabc', 'cronium/servers/a/private_key');
  assert.ok(!sealed.includes('BEGIN'));
  assert.equal(sealer.open(sealed, 'cronium/servers/a/private_key'), '-----BEGIN OPENSSH PRIVATE KEY-----\nabc');
  assert.throws(() => sealer.open(sealed, 'cronium/servers/b/private_key'), 'a ciphertext copied to another row does not open');
  assert.notEqual(sealer.seal('same', 'x'), sealer.seal('same', 'x'), 'a fresh nonce each time');
});

test('rotation: old keys still open, the current key seals, stale values are detected', () => {
  const oldKey = randomBytes(32);
  const before = new Sealer(oldKey).seal('secret', 'ad');
  const rotated = new Sealer(randomBytes(32), [oldKey]);
  assert.equal(rotated.open(before, 'ad'), 'secret');
  assert.equal(rotated.stale(before), true);
  const again = rotated.seal(rotated.open(before, 'ad'), 'ad');
  assert.equal(rotated.stale(again), false);
  assert.throws(() => new Sealer(randomBytes(32)).open(before, 'ad'), /unknown key/);
});

test('a key that is not 32 bytes is refused', () => {
  assert.throws(() => new Sealer(randomBytes(16)), /32 bytes/);
});
