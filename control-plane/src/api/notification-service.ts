import { randomUUID } from 'node:crypto';
import type { ServiceImpl } from '@connectrpc/connect';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { sql } from 'kysely';
import { DeliverySchema, DeliveryStatus, NotificationService, type Delivery } from '@cronium/proto/api/v1/notification';
import type { ChannelRow, DeliveryRow, DeliveryStatus as DeliveryStatusName } from '../store/schema.ts';
import { openChannel, sealChannelSecrets, splitConfig } from '../notifications/channels.ts';
import { deliver } from '../notifications/senders.ts';
import { principalOf, type Principal } from './auth.ts';
import { channelFields, channelToProto } from './channel-input.ts';
import { invalid, notFound } from './errors.ts';
import { mustChange } from './event-service.ts';
import type { ApiDeps } from './deps.ts';
import { audited } from './changes.ts';

const deliveryStatuses: Record<DeliveryStatusName, DeliveryStatus> = { pending: DeliveryStatus.PENDING, delivered: DeliveryStatus.DELIVERED, failed: DeliveryStatus.FAILED };

function deliveryToProto(row: DeliveryRow): Delivery {
  const time = (date: Date | null) => (date ? timestampFromDate(new Date(date)) : undefined);
  return create(DeliverySchema, {
    id: row.id,
    channelId: row.channel_id,
    runId: row.run_id ?? '',
    eventId: row.event_id ?? '',
    status: deliveryStatuses[row.status],
    attempts: row.attempts,
    lastError: row.last_error,
    subject: row.message.subject,
    text: row.message.text,
    createdAt: time(row.created_at),
    deliveredAt: time(row.delivered_at),
    nextAttemptAt: row.status === 'pending' ? time(row.next_attempt_at) : undefined,
  });
}

async function findChannel(deps: ApiDeps, principal: Principal, id: string): Promise<ChannelRow> {
  if (!id) throw invalid('id', 'required');
  let query = deps.db.selectFrom('notification_channels').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
  if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
  return query.executeTakeFirstOrThrow(() => notFound('channel', id));
}

export function notificationService(deps: ApiDeps): ServiceImpl<typeof NotificationService> {
  const { db, sealer } = deps;
  return {
    async createChannel(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const { name, config } = channelFields(req.channel);
      const { kind, settings, secrets } = splitConfig(config);
      const id = randomUUID();
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .insertInto('notification_channels')
          .values({ id, owner_id: principal.ownerId, name, kind, settings: JSON.stringify(settings), secrets_sealed: sealChannelSecrets(sealer, id, secrets) })
          .returningAll()
          .executeTakeFirstOrThrow();
        return { channel: channelToProto(row) };
      });
    },
    async getChannel(req, ctx) {
      return { channel: channelToProto(await findChannel(deps, principalOf(ctx.values), req.id)) };
    },
    async listChannels(_req, ctx) {
      const principal = principalOf(ctx.values);
      let query = db.selectFrom('notification_channels').selectAll().where('deleted_at', 'is', null).orderBy('created_at').orderBy('id');
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      return { channels: (await query.execute()).map(channelToProto) };
    },
    async updateChannel(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findChannel(deps, principal, req.channel?.id ?? '');
      const { name, config } = channelFields(req.channel, openChannel(sealer, existing));
      const { kind, settings, secrets } = splitConfig(config);
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .updateTable('notification_channels')
          .set({ name, kind, settings: JSON.stringify(settings), secrets_sealed: sealChannelSecrets(sealer, existing.id, secrets), updated_at: sql<Date>`now()` })
          .where('id', '=', existing.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { channel: channelToProto(row) };
      });
    },
    async deleteChannel(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findChannel(deps, principal, req.id);
      return audited(db, ctx, async (tx) => {
        await tx.updateTable('notification_channels').set({ deleted_at: sql<Date>`now()` }).where('id', '=', existing.id).execute();
        return {};
      });
    },
    async testChannel(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const channel = await findChannel(deps, principal, req.id);
      const message = { subject: `[Cronium] test of ${channel.name}`, text: `This is a test message from Cronium to the channel "${channel.name}".`, event: null, run: null };
      try {
        await deliver(openChannel(sealer, channel), message, `test-${randomUUID()}`);
        return { ok: true, error: '' };
      } catch (error) {
        return { ok: false, error: (error as Error).message };
      }
    },
    async listDeliveries(req, ctx) {
      const principal = principalOf(ctx.values);
      let query = db.selectFrom('notification_deliveries').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').limit(Math.min(req.limit || 500, 500));
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      if (req.channelId) query = query.where('channel_id', '=', req.channelId);
      if (req.runId) query = query.where('run_id', '=', req.runId);
      return { deliveries: (await query.execute()).map(deliveryToProto) };
    },
  };
}
