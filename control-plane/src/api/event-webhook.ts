import { sql } from 'kysely';
import type { ServiceImpl } from '@connectrpc/connect';
import type { EventService } from '@cronium/proto/api/v1/event';
import { eventToProto } from '../wire/api-messages.ts';
import { webhookToProto } from '../wire/webhook-messages.ts';
import { NO_WEBHOOK, newWebhook, type WebhookColumns } from '../workflows/webhook-secret.ts';
import { principalOf } from './auth.ts';
import { findEvent, mustChange } from './event-service.ts';
import type { ApiDeps } from './deps.ts';
import type { Db } from '../store/database.ts';
import { audited } from './changes.ts';

type Handlers = Pick<ServiceImpl<typeof EventService>, 'rotateEventWebhook' | 'disableEventWebhook'>;

/** EventService's webhook calls: POST /hooks/events/<key> runs the event. */
export function eventWebhookHandlers(deps: ApiDeps): Handlers {
  const setWebhook = async (db: Db, id: string, values: WebhookColumns) =>
    db.updateTable('events').set({ ...values, updated_at: sql<Date>`now()` }).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
  return {
    async rotateEventWebhook(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findEvent(deps, principal, req.id);
      const { secret, columns } = newWebhook(deps.sealer, 'events', existing.id);
      return audited(deps.db, ctx, async (tx) => {
        const row = await setWebhook(tx, existing.id, columns);
        const event = eventToProto(row);
        event.webhook = webhookToProto('events', row.webhook_key, secret);
        return { event };
      });
    },
    async disableEventWebhook(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findEvent(deps, principal, req.id);
      return audited(deps.db, ctx, async (tx) => ({ event: eventToProto(await setWebhook(tx, existing.id, NO_WEBHOOK)) }));
    },
  };
}
