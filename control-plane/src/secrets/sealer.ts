import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const VERSION = 'v1';

/**
 * Encrypts secrets at rest with AES-256-GCM: a random 96-bit nonce per value,
 * and associated data that binds each ciphertext to its row and field, so a
 * value copied into another row does not decrypt. The output names the key it
 * was sealed with, so keys can be rotated: old keys still open, the current
 * key seals.
 */
export class Sealer {
  readonly #current: { id: string; key: Buffer };
  readonly #keys = new Map<string, Buffer>();

  constructor(current: Buffer, old: readonly Buffer[] = []) {
    for (const key of [current, ...old]) {
      if (key.length !== 32) throw new Error('CRONIUM_ENCRYPTION_KEY: expected 32 bytes, base64-encoded');
      this.#keys.set(keyId(key), key);
    }
    this.#current = { id: keyId(current), key: current };
  }

  seal(plaintext: string, associatedData: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#current.key, nonce);
    cipher.setAAD(Buffer.from(associatedData));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [VERSION, this.#current.id, nonce.toString('base64'), body.toString('base64'), cipher.getAuthTag().toString('base64')].join(':');
  }

  open(sealed: string, associatedData: string): string {
    const [version, id, nonce, body, tag] = sealed.split(':');
    const key = id ? this.#keys.get(id) : undefined;
    if (version !== VERSION || !key || !nonce || body === undefined || !tag) throw new Error('secret sealed with an unknown key or format');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64'));
    decipher.setAAD(Buffer.from(associatedData));
    decipher.setAuthTag(Buffer.from(tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64')), decipher.final()]).toString('utf8');
  }

  /** True when the value was sealed with an older key and should be sealed again. */
  stale(sealed: string): boolean {
    return sealed.split(':')[1] !== this.#current.id;
  }
}

function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 12);
}

function decodeKey(value: string, name: string): Buffer {
  const key = Buffer.from(value.trim(), 'base64');
  if (key.length !== 32) throw new Error(`${name}: expected 32 bytes, base64-encoded (openssl rand -base64 32)`);
  return key;
}

/**
 * The master key: CRONIUM_ENCRYPTION_KEY, or one generated into the data dir
 * on first start (for the embedded default). CRONIUM_ENCRYPTION_OLD_KEYS
 * (comma-separated) still decrypt during a rotation.
 */
export function loadSealer(keys: { current?: string; old: readonly string[] }, dataDir: string): Sealer {
  let current: Buffer;
  if (keys.current) {
    current = decodeKey(keys.current, 'CRONIUM_ENCRYPTION_KEY');
  } else {
    const path = join(dataDir, 'encryption.key');
    if (!existsSync(path)) writeFileSync(path, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    current = decodeKey(readFileSync(path, 'utf8'), path);
  }
  return new Sealer(current, keys.old.map((s) => decodeKey(s, 'CRONIUM_ENCRYPTION_OLD_KEYS')));
}
