import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';
import { openCredentials, sealCredential } from './credentials.ts';

/** Key rotation: credentials sealed with an old key are sealed again with the current one. Returns how many servers changed. */
export async function resealServers(db: Db, sealer: Sealer): Promise<number> {
  const rows = await db.selectFrom('servers').select(['id', 'private_key_sealed', 'password_sealed']).execute();
  let changed = 0;
  for (const row of rows) {
    const stale = [row.private_key_sealed, row.password_sealed].some((value) => value !== null && sealer.stale(value));
    if (!stale) continue;
    const { privateKey, password } = openCredentials(sealer, row);
    await db
      .updateTable('servers')
      .set({ private_key_sealed: sealCredential(sealer, row.id, 'private_key', privateKey), password_sealed: sealCredential(sealer, row.id, 'password', password) })
      .where('id', '=', row.id)
      .execute();
    changed++;
  }
  return changed;
}
