import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';

/** A key pair every replica must share, kept as two files in the PKI folder. */
interface SharedKey {
  readonly name: string;
  readonly publicFile: string;
  readonly privateFile: string;
}

/** The agent CA (agents trust any replica's server certificate) and the join-token signing key (any replica redeems a token). */
const SHARED_KEYS: readonly SharedKey[] = [
  { name: 'agent-ca', publicFile: 'ca.crt', privateFile: 'ca.key' },
  { name: 'join-token', publicFile: 'join-token.pub', privateFile: 'join-token.key' },
];

export class ClusterKeyError extends Error {}

/**
 * Makes the PKI folder hold the cluster's shared keys, with the database as
 * the source of truth: the first replica to start stores its keys (sealed
 * with the master key); every later one, or a restarted one, takes those.
 * Keys created by `create` land in the folder first, so a single node that
 * predates this keeps its CA and its enrolled agents.
 */
export async function syncClusterKeys(db: Db, sealer: Sealer, pkiDir: string, create: () => Promise<void>): Promise<void> {
  for (const key of SHARED_KEYS) {
    const publicPath = join(pkiDir, key.publicFile);
    const privatePath = join(pkiDir, key.privateFile);
    let stored = await db.selectFrom('cluster_keys').selectAll().where('name', '=', key.name).executeTakeFirst();
    if (!stored) {
      if (!existsSync(publicPath) || !existsSync(privatePath)) await create();
      const publicPem = readFileSync(publicPath, 'utf8');
      const privatePem = readFileSync(privatePath, 'utf8');
      await db
        .insertInto('cluster_keys')
        .values({ name: key.name, public_pem: publicPem, private_sealed: sealer.seal(privatePem, associatedData(key.name)) })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute();
      stored = await db.selectFrom('cluster_keys').selectAll().where('name', '=', key.name).executeTakeFirstOrThrow();
    }
    let privatePem: string;
    try {
      privatePem = sealer.open(stored.private_sealed, associatedData(key.name));
    } catch {
      throw new ClusterKeyError(
        `the cluster's ${key.name} key in the database was sealed with another encryption key: give every replica the same CRONIUM_ENCRYPTION_KEY`,
      );
    }
    if (!existsSync(publicPath) || readFileSync(publicPath, 'utf8') !== stored.public_pem) writeFileSync(publicPath, stored.public_pem);
    if (!existsSync(privatePath) || readFileSync(privatePath, 'utf8') !== privatePem) writeFileSync(privatePath, privatePem, { mode: 0o600 });
  }
}

/** Key rotation: cluster keys sealed with an old master key are sealed again with the current one. */
export async function resealClusterKeys(db: Db, sealer: Sealer): Promise<number> {
  const rows = await db.selectFrom('cluster_keys').selectAll().execute();
  let changed = 0;
  for (const row of rows) {
    if (!sealer.stale(row.private_sealed)) continue;
    const privatePem = sealer.open(row.private_sealed, associatedData(row.name));
    await db.updateTable('cluster_keys').set({ private_sealed: sealer.seal(privatePem, associatedData(row.name)) }).where('name', '=', row.name).execute();
    changed++;
  }
  return changed;
}

function associatedData(name: string): string {
  return `cluster_keys:${name}:private`;
}
