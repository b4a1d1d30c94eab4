import type { ServiceImpl } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { AgentSchema, AgentService, AgentStatus, type Agent } from '@cronium/proto/api/v1/agent';
import { sql } from 'kysely';
import { subjects } from '../bus/bus.ts';
import type { AgentRow } from '../store/schema.ts';
import { createJoinToken, DEFAULT_TOKEN_TTL_SECONDS, MAX_TOKEN_TTL_SECONDS, MAX_TOKEN_USES } from '../enrollment/join-tokens.ts';
import { mustAdmin, principalOf } from './auth.ts';
import { invalid, notFound } from './errors.ts';
import type { ApiDeps } from './deps.ts';

const LABEL_KEY = /^[A-Za-z0-9_./-]{1,63}$/;


/** Online needs a live stream and a heartbeat within one lease; silence past it is offline. */
export function agentStatus(row: AgentRow, leaseTtlMs: number, now = Date.now()): AgentStatus {
  if (row.revoked_at) return AgentStatus.REVOKED;
  const fresh = row.last_heartbeat_at !== null && now - new Date(row.last_heartbeat_at).getTime() <= leaseTtlMs;
  if (!row.connected || !fresh) return AgentStatus.OFFLINE;
  return row.draining ? AgentStatus.DRAINING : AgentStatus.ONLINE;
}

export function agentService(deps: ApiDeps): ServiceImpl<typeof AgentService> {
  const { db, bus } = deps;

  async function toProto(rows: readonly AgentRow[]): Promise<Agent[]> {
    const ids = rows.map((row) => row.id);
    const running = ids.length
      ? await db
          .selectFrom('jobs')
          .select(['agent_id', sql<number>`count(*)::int`.as('count')])
          .where('agent_id', 'in', ids)
          .where('status', 'in', ['offered', 'running'])
          .groupBy('agent_id')
          .execute()
      : [];
    const counts = new Map(running.map((r) => [r.agent_id, r.count]));
    return rows.map((row) =>
      create(AgentSchema, {
        id: row.id,
        name: row.name,
        mode: row.mode,
        labels: { ...row.labels, ...row.pinned_labels },
        pinnedLabels: { ...row.pinned_labels },
        executors: row.executors,
        slots: row.slots,
        runningJobs: counts.get(row.id) ?? 0,
        status: agentStatus(row, deps.leaseTtlMs),
        lastHeartbeatAt: row.last_heartbeat_at ? timestampFromDate(new Date(row.last_heartbeat_at)) : undefined,
        version: row.version,
        createdAt: timestampFromDate(new Date(row.created_at)),
      }),
    );
  }

  async function find(id: string): Promise<AgentRow> {
    if (!id) throw invalid('id', 'required');
    return db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirstOrThrow(() => notFound('agent', id));
  }

  return {
    async createJoinToken(req, ctx) {
      const principal = principalOf(ctx.values);
      mustAdmin(principal);
      for (const key of Object.keys(req.labels)) if (!LABEL_KEY.test(key)) throw invalid(`labels.${key}`, 'not a valid label key');
      if (req.ttlSeconds > MAX_TOKEN_TTL_SECONDS) throw invalid('ttlSeconds', `at most ${MAX_TOKEN_TTL_SECONDS}`);
      if (req.maxUses > MAX_TOKEN_USES) throw invalid('maxUses', `at most ${MAX_TOKEN_USES}`);
      const token = await createJoinToken(db, deps.enrollment.signer, {
        labels: req.labels,
        ttlSeconds: req.ttlSeconds || DEFAULT_TOKEN_TTL_SECONDS,
        name: req.name,
        createdBy: principal.ownerId,
        caFingerprint: deps.enrollment.caFingerprint,
        maxUses: req.maxUses,
      });
      return { token: token.token, agentId: token.agentId, expiresAt: timestampFromDate(token.expiresAt) };
    },
    async listAgents(_req, ctx) {
      mustAdmin(principalOf(ctx.values));
      return { agents: await toProto(await db.selectFrom('agents').selectAll().orderBy('created_at').orderBy('id').execute()) };
    },
    async getAgent(req, ctx) {
      mustAdmin(principalOf(ctx.values));
      const [agent] = await toProto([await find(req.id)]);
      return { agent };
    },
    async drainAgent(req, ctx) {
      mustAdmin(principalOf(ctx.values));
      await find(req.id);
      await db.updateTable('agents').set({ draining: true }).where('id', '=', req.id).execute();
      bus.publish(subjects.agentControl(req.id), new TextEncoder().encode('drain'));
      const [agent] = await toProto([await find(req.id)]);
      return { agent };
    },
    async revokeAgent(req, ctx) {
      mustAdmin(principalOf(ctx.values));
      await find(req.id);
      await db.updateTable('agents').set({ revoked_at: sql<Date>`coalesce(revoked_at, now())`, connected: false }).where('id', '=', req.id).execute();
      bus.publish(subjects.agentControl(req.id), new TextEncoder().encode('revoke'));
      const [agent] = await toProto([await find(req.id)]);
      return { agent };
    },
  };
}
