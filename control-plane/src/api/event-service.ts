import { randomUUID } from 'node:crypto';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { sql } from 'kysely';
import { EventService } from '@cronium/proto/api/v1/event';
import { eventToProto, plainJson, runToProto, scheduleFireToProto } from '../wire/api-messages.ts';
import { pageSize } from './pagination.ts';
import { fanOutAgents, fansOut } from '../queue/enqueue.ts';
import { startRun } from '../queue/start-run.ts';
import type { Cancelled } from '../queue/transitions.ts';
import { announceCancel } from './cancel.ts';
import { previewSchedule } from './schedule-preview.ts';
import { changingSchedules, kickDispatch } from '../job-events.ts';
import type { EventRow } from '../store/schema.ts';
import { mustChange, principalOf, type Principal } from './auth.ts';
import { eventFields } from './event-input.ts';
import { checkActionTargets } from './action-input.ts';
import { invalid, notFound } from './errors.ts';
import type { ApiDeps } from './deps.ts';
import { eventWebhookHandlers } from './event-webhook.ts';
import { audited } from './changes.ts';

export { mustChange };

export async function findEvent(deps: ApiDeps, principal: Principal, id: string): Promise<EventRow> {
  if (!id) throw invalid('id', 'required');
  let query = deps.db.selectFrom('events').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
  if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
  return query.executeTakeFirstOrThrow(() => notFound('event', id));
}

/** An event's servers must exist and belong to the caller (or the caller is an admin). */
async function checkServers(deps: ApiDeps, principal: Principal, fields: ReturnType<typeof eventFields>): Promise<void> {
  const target = JSON.parse(fields.target) as { serverIds?: string[] };
  if (!target.serverIds) return;
  let query = deps.db.selectFrom('servers').select('id').where('id', 'in', target.serverIds).where('deleted_at', 'is', null);
  if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
  const found = new Set((await query.execute()).map((row) => row.id));
  const missing = target.serverIds.find((id) => !found.has(id));
  if (missing !== undefined) throw invalid('event.target.servers.serverIds', `server ${JSON.stringify(missing)} not found`);
}

export function eventService(deps: ApiDeps): ServiceImpl<typeof EventService> {
  const { db, bus } = deps;
  return {
    ...eventWebhookHandlers(deps),
    async createEvent(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const fields = eventFields(req.event);
      await checkServers(deps, principal, fields);
      await checkActionTargets(deps, principal, fields.actions);
      return changingSchedules(bus, audited(db, ctx, async (tx) => {
        const row = await tx.insertInto('events').values({ ...fields, id: randomUUID(), owner_id: principal.ownerId }).returningAll().executeTakeFirstOrThrow();
        return { event: eventToProto(row) };
      }));
    },
    async getEvent(req, ctx) {
      return { event: eventToProto(await findEvent(deps, principalOf(ctx.values), req.id)) };
    },
    async listEvents(_req, ctx) {
      const principal = principalOf(ctx.values);
      let query = db.selectFrom('events').selectAll().where('deleted_at', 'is', null).orderBy('created_at').orderBy('id');
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      return { events: (await query.execute()).map(eventToProto) };
    },
    async updateEvent(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findEvent(deps, principal, req.event?.id ?? '');
      const fields = eventFields(req.event, existing);
      await checkServers(deps, principal, fields);
      await checkActionTargets(deps, principal, fields.actions);
      return changingSchedules(bus, audited(db, ctx, async (tx) => {
        const row = await tx.updateTable('events').set({ ...fields, updated_at: sql<Date>`now()` }).where('id', '=', existing.id).returningAll().executeTakeFirstOrThrow();
        return { event: eventToProto(row) };
      }));
    },
    async deleteEvent(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findEvent(deps, principal, req.id);
      return changingSchedules(bus, audited(db, ctx, async (tx) => {
        await tx.updateTable('events').set({ deleted_at: sql<Date>`now()`, status: 'archived' }).where('id', '=', existing.id).execute();
        return {};
      }));
    },
    async runEvent(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const event = await findEvent(deps, principal, req.id);
      const agents = fansOut(event) ? await fanOutAgents(db, deps.leaseTtlMs) : [];
      let cancelledJobs: readonly Cancelled[] = [];
      const response = await audited(
        db,
        ctx,
        async (tx) => {
          const started = await startRun(tx, event, plainJson(req.input), agents);
          if (!started.started) throw new ConnectError(`event ${event.id}: not started: ${started.reason}`, Code.FailedPrecondition);
          cancelledJobs = started.cancelled;
          return { run: runToProto(started.run, started.jobs) };
        },
        { type: 'run', id: (r) => r.run.id },
      );
      for (const cancelled of cancelledJobs) announceCancel(bus, cancelled);
      kickDispatch(bus);
      return response;
    },
    async listScheduleFires(req, ctx) {
      const event = await findEvent(deps, principalOf(ctx.values), req.eventId);
      const rows = await db
        .selectFrom('schedule_fires')
        .selectAll()
        .where('event_id', '=', event.id)
        .orderBy('fire_at', 'desc')
        .limit(pageSize(req.pageSize))
        .execute();
      return { fires: rows.map(scheduleFireToProto) };
    },
    async previewSchedule(req, ctx) {
      const principal = principalOf(ctx.values);
      const event = req.eventId ? await findEvent(deps, principal, req.eventId) : undefined;
      return { fireTimes: previewSchedule(req, event) };
    },
  };
}
