import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, exportPKCS8, exportSPKI, generateKeyPair, importPKCS8, importSPKI, jwtVerify, type CryptoKey } from 'jose';
import { sql } from 'kysely';
import type { Db } from '../store/database.ts';

const ISSUER = 'cronium-control-plane';
const AUDIENCE = 'cronium-enrollment';
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;
export const MAX_TOKEN_TTL_SECONDS = 7 * 86_400;
export const MAX_TOKEN_USES = 10_000;

export interface JoinTokenSigner {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

/** The Ed25519 key join tokens are signed with, created in `dir` on first start. */
export async function loadOrCreateSigner(dir: string): Promise<JoinTokenSigner> {
  const privatePath = join(dir, 'join-token.key');
  const publicPath = join(dir, 'join-token.pub');
  if (!existsSync(privatePath)) {
    const keys = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    writeFileSync(privatePath, await exportPKCS8(keys.privateKey), { mode: 0o600 });
    writeFileSync(publicPath, await exportSPKI(keys.publicKey));
  }
  return {
    privateKey: await importPKCS8(readFileSync(privatePath, 'utf8'), 'EdDSA'),
    publicKey: await importSPKI(readFileSync(publicPath, 'utf8'), 'EdDSA'),
  };
}

export interface NewJoinToken {
  readonly token: string;
  readonly agentId: string;
  readonly expiresAt: Date;
}

/**
 * A one-time token: a JWT naming the agent id it enrolls and pinning the CA
 * fingerprint the agent must find on the control plane, recorded so it can be
 * used once.
 */
export async function createJoinToken(
  db: Db,
  signer: JoinTokenSigner,
  options: { labels: Readonly<Record<string, string>>; ttlSeconds: number; name: string; createdBy: string; caFingerprint: string; maxUses?: number },
): Promise<NewJoinToken> {
  const id = randomUUID();
  const agentId = newAgentId();
  const expiresAt = new Date(Date.now() + options.ttlSeconds * 1000);
  await db
    .insertInto('join_tokens')
    .values({
      id,
      agent_id: agentId,
      name: options.name,
      labels: JSON.stringify(options.labels),
      created_by: options.createdBy,
      expires_at: expiresAt,
      max_uses: options.maxUses || 1,
    })
    .execute();
  const token = await new SignJWT({ cah: options.caFingerprint })
    .setProtectedHeader({ alg: 'EdDSA' })
    .setJti(id)
    .setSubject(agentId)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
    .sign(signer.privateKey);
  return { token, agentId, expiresAt };
}

export class EnrollmentRefused extends Error {}

function newAgentId(): string {
  return `agent-${randomBytes(6).toString('hex')}`;
}

/** Checks a join token and counts one use, in one step; a token works as many times as it allows, each time for a new agent. */
export async function redeemJoinToken(db: Db, signer: JoinTokenSigner, token: string) {
  let jti: string | undefined;
  try {
    const { payload } = await jwtVerify(token, signer.publicKey, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['EdDSA'] });
    jti = payload.jti;
  } catch (error) {
    throw new EnrollmentRefused(`join token refused: ${(error as Error).message}`);
  }
  const row = await db
    .updateTable('join_tokens')
    .set({ used_at: sql<Date>`now()`, uses: sql<number>`uses + 1` })
    .where('id', '=', jti ?? '')
    .where(sql<boolean>`uses < max_uses`)
    .where('expires_at', '>', sql<Date>`now()`)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw new EnrollmentRefused('join token refused: already used or expired');
  return { agentId: row.uses === 1 ? row.agent_id : newAgentId(), labels: row.labels, name: row.name };
}
