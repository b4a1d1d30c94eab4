import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface WebhookCredentials {
  /** Public: the last part of the URL. */
  readonly key: string;
  /** Shown once; only its hash is stored. */
  readonly secret: string;
  readonly secretHash: string;
}

export function newWebhookCredentials(): WebhookCredentials {
  const secret = `whs_${randomBytes(32).toString('base64url')}`;
  return { key: randomBytes(18).toString('base64url'), secret, secretHash: hashSecret(secret) };
}

// The secret is 256 random bits, so one SHA-256 is as strong as a slow hash here.
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Compares in constant time (both sides are hashes of equal length). */
export function secretMatches(given: string, storedHash: string | null): boolean {
  if (!storedHash) return false;
  return timingSafeEqual(Buffer.from(hashSecret(given), 'hex'), Buffer.from(storedHash, 'hex'));
}
