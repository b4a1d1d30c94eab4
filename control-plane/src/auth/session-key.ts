import { randomBytes } from 'node:crypto';
import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';

const NAME = 'session-signing';
/** The same associated data as the other cluster keys, so resealClusterKeys re-seals this one too. */
const ASSOCIATED_DATA = `cluster_keys:${NAME}:private`;

/**
 * The HS256 key that signs session tokens, shared by every replica through the
 * cluster_keys table (sealed with the master key): the first replica to start makes it.
 */
export async function loadSessionKey(db: Db, sealer: Sealer): Promise<Uint8Array> {
  await db
    .insertInto('cluster_keys')
    .values({ name: NAME, public_pem: '', private_sealed: sealer.seal(randomBytes(32).toString('base64'), ASSOCIATED_DATA) })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
  const row = await db.selectFrom('cluster_keys').select('private_sealed').where('name', '=', NAME).executeTakeFirstOrThrow();
  return Buffer.from(sealer.open(row.private_sealed, ASSOCIATED_DATA), 'base64');
}
