import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';
import { openWebhookSecret, sealWebhookSecret, type WebhookOwner } from './webhook-secret.ts';

/** Key rotation: webhook secrets sealed with an old key are sealed again with the current one. Returns how many changed. */
export async function resealWebhooks(db: Db, sealer: Sealer): Promise<number> {
  let changed = 0;
  for (const owner of ['workflows', 'events'] as const satisfies readonly WebhookOwner[]) {
    const rows = await db.selectFrom(owner).select(['id', 'webhook_secret_sealed']).where('webhook_secret_sealed', 'is not', null).execute();
    for (const row of rows) {
      if (!sealer.stale(row.webhook_secret_sealed!)) continue;
      const secret = openWebhookSecret(sealer, owner, { id: row.id, webhook_secret_sealed: row.webhook_secret_sealed! });
      await db.updateTable(owner).set({ webhook_secret_sealed: sealWebhookSecret(sealer, owner, row.id, secret) }).where('id', '=', row.id).execute();
      changed++;
    }
  }
  return changed;
}
