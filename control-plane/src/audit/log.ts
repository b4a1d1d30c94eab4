import type { Db } from '../store/database.ts';

export interface AuditEntry {
  readonly userId: string;
  readonly credentialId: string;
  /** Full method name: cronium.api.v1.EventService/CreateEvent. */
  readonly method: string;
  readonly objectType: string;
  readonly objectId: string;
  /** Names of the fields the change set; never values. */
  readonly fields: readonly string[];
  readonly remoteAddress: string;
  readonly userAgent: string;
  readonly outcome?: string;
}

export async function writeAudit(db: Db, entry: AuditEntry): Promise<void> {
  await db
    .insertInto('audit_events')
    .values({
      user_id: entry.userId,
      credential_id: entry.credentialId,
      method: entry.method,
      object_type: entry.objectType,
      object_id: entry.objectId,
      fields: JSON.stringify(entry.fields),
      remote_address: entry.remoteAddress.slice(0, 200),
      user_agent: entry.userAgent.slice(0, 500),
      outcome: entry.outcome ?? 'ok',
    })
    .execute();
}
