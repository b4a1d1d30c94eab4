import { sql } from 'kysely';
import type { Db } from '../store/database.ts';

export const SERVER_RETENTION_DAYS = 30;

/** Deleted servers are kept 30 days (as in the original), then removed with their sealed credentials; old jobs keep their history. */
export async function purgeDeletedServers(db: Db): Promise<number> {
  return db.transaction().execute(async (tx) => {
    const expired = await tx
      .selectFrom('servers')
      .select('id')
      .where('deleted_at', '<', sql<Date>`now() - ${SERVER_RETENTION_DAYS} * interval '1 day'`)
      .execute();
    if (expired.length === 0) return 0;
    const ids = expired.map((row) => row.id);
    await tx.updateTable('jobs').set({ server_id: null }).where('server_id', 'in', ids).execute();
    await tx.deleteFrom('servers').where('id', 'in', ids).execute();
    return ids.length;
  });
}
