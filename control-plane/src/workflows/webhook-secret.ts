import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Sealer } from '../secrets/sealer.ts';

/** Whose webhook: a workflow's or an event's (also the table that holds it). */
export type WebhookOwner = 'workflows' | 'events';

export interface WebhookColumns {
  readonly webhook_key: string | null;
  readonly webhook_secret_sealed: string | null;
}

export const NO_WEBHOOK: WebhookColumns = { webhook_key: null, webhook_secret_sealed: null };

/** What the caller offers as proof: the secret itself, or an HMAC-SHA256 of the body keyed with it (`sha256=<hex>`). */
export interface WebhookProof {
  readonly secret?: string;
  readonly signature?: string;
}

function boundTo(owner: WebhookOwner, id: string): string {
  return `cronium/${owner}/${id}/webhook_secret`;
}

export function sealWebhookSecret(sealer: Sealer, owner: WebhookOwner, id: string, secret: string): string {
  return sealer.seal(secret, boundTo(owner, id));
}

export function openWebhookSecret(sealer: Sealer, owner: WebhookOwner, row: { id: string; webhook_secret_sealed: string }): string {
  return sealer.open(row.webhook_secret_sealed, boundTo(owner, row.id));
}

/** A new key (public, in the URL) and secret (shown once; stored sealed, to check signatures). */
export function newWebhook(sealer: Sealer, owner: WebhookOwner, id: string): { secret: string; columns: WebhookColumns } {
  const secret = `whs_${randomBytes(32).toString('base64url')}`;
  return { secret, columns: { webhook_key: randomBytes(18).toString('base64url'), webhook_secret_sealed: sealWebhookSecret(sealer, owner, id, secret) } };
}

// Digests first, so the comparison is constant-time whatever the lengths.
function same(a: string, b: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(a), digest(b));
}

export function signBody(secret: string, body: Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export function webhookAuthorized(sealer: Sealer, owner: WebhookOwner, row: { id: string; webhook_secret_sealed: string | null }, proof: WebhookProof, body: Uint8Array): boolean {
  if (!row.webhook_secret_sealed) return false;
  const secret = openWebhookSecret(sealer, owner, { id: row.id, webhook_secret_sealed: row.webhook_secret_sealed });
  if (proof.secret !== undefined) return same(proof.secret, secret);
  if (proof.signature !== undefined) return same(proof.signature.toLowerCase(), signBody(secret, body));
  return false;
}
