import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';
import type { ChannelKind, ChannelRow } from '../store/schema.ts';

export type SmtpTlsMode = 'none' | 'starttls' | 'implicit';

/** A channel with its credentials opened: what a sender needs. */
export type ChannelConfig =
  | { readonly kind: 'webhook'; readonly url: string; readonly headers: Readonly<Record<string, string>>; readonly hmacSecret: string }
  | { readonly kind: 'slack' | 'discord'; readonly url: string }
  | {
      readonly kind: 'email';
      readonly host: string;
      readonly port: number;
      readonly tls: SmtpTlsMode;
      readonly username: string;
      readonly password: string;
      readonly from: string;
      readonly to: readonly string[];
    };

/** What may be shown, and the write-only rest (sealed as one JSON value). */
export interface SplitConfig {
  readonly kind: ChannelKind;
  readonly settings: Record<string, unknown>;
  readonly secrets: Record<string, unknown>;
}

export function splitConfig(config: ChannelConfig): SplitConfig {
  switch (config.kind) {
    case 'webhook':
      return {
        kind: 'webhook',
        settings: { headerNames: Object.keys(config.headers).sort(), signed: config.hmacSecret !== '' },
        secrets: { url: config.url, headers: config.headers, hmacSecret: config.hmacSecret },
      };
    case 'slack':
    case 'discord':
      return { kind: config.kind, settings: {}, secrets: { url: config.url } };
    case 'email': {
      const { password, kind, ...settings } = config;
      return { kind, settings: { ...settings, hasPassword: password !== '' }, secrets: { password } };
    }
  }
}

function boundTo(channelId: string): string {
  return `cronium/notification_channels/${channelId}/secrets`;
}

export function sealChannelSecrets(sealer: Sealer, channelId: string, secrets: Record<string, unknown>): string {
  return sealer.seal(JSON.stringify(secrets), boundTo(channelId));
}

export function openChannelSecrets(sealer: Sealer, row: Pick<ChannelRow, 'id' | 'secrets_sealed'>): Record<string, unknown> {
  return JSON.parse(sealer.open(row.secrets_sealed, boundTo(row.id))) as Record<string, unknown>;
}

export function openChannel(sealer: Sealer, row: ChannelRow): ChannelConfig {
  const { hasPassword: _shown, ...settings } = row.settings;
  return { kind: row.kind, ...settings, ...openChannelSecrets(sealer, row) } as ChannelConfig;
}

/** Key rotation: channel credentials sealed with an old key are sealed again with the current one. */
export async function resealChannels(db: Db, sealer: Sealer): Promise<number> {
  const rows = await db.selectFrom('notification_channels').select(['id', 'secrets_sealed']).execute();
  let changed = 0;
  for (const row of rows) {
    if (!sealer.stale(row.secrets_sealed)) continue;
    await db.updateTable('notification_channels').set({ secrets_sealed: sealChannelSecrets(sealer, row.id, openChannelSecrets(sealer, row)) }).where('id', '=', row.id).execute();
    changed++;
  }
  return changed;
}
