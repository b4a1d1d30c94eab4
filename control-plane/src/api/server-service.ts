import { randomUUID } from 'node:crypto';
import type { ServiceImpl } from '@connectrpc/connect';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { sql } from 'kysely';
import { ServerSchema, ServerService, ServerStatus, type Server } from '@cronium/proto/api/v1/server';
import type { ServerRow } from '../store/schema.ts';
import { openCredentials, sealCredential } from '../servers/credentials.ts';
import { probeServer } from '../servers/probe.ts';
import { principalOf, type Principal } from './auth.ts';
import { invalid, notFound } from './errors.ts';
import { mustChange } from './event-service.ts';
import type { ApiDeps } from './deps.ts';
import { audited } from './changes.ts';

const HOST = /^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:]+\]?$/;
const USER = /^[a-z_][a-z0-9_.-]{0,31}\$?$/i;
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

export function serverToProto(row: ServerRow): Server {
  return create(ServerSchema, {
    id: row.id,
    name: row.name,
    host: row.host,
    port: row.port,
    username: row.username,
    hostKeyFingerprint: row.host_key_fingerprint,
    seenHostKeyFingerprint: row.seen_host_key_fingerprint,
    labels: { ...row.labels },
    status: row.host_key_fingerprint ? ServerStatus.READY : ServerStatus.HOST_KEY_UNAPPROVED,
    hasPrivateKey: row.private_key_sealed !== null,
    hasPassword: row.password_sealed !== null,
    createdAt: timestampFromDate(new Date(row.created_at)),
    updatedAt: timestampFromDate(new Date(row.updated_at)),
  });
}

function fields(server: Server | undefined) {
  if (!server) throw invalid('server', 'required');
  const name = server.name.trim();
  if (!name) throw invalid('server.name', 'required');
  if (!HOST.test(server.host)) throw invalid('server.host', 'a host name or IP address');
  if (server.port > 65535) throw invalid('server.port', 'at most 65535');
  if (!USER.test(server.username)) throw invalid('server.username', 'a valid user name');
  if (server.hostKeyFingerprint && !FINGERPRINT.test(server.hostKeyFingerprint)) {
    throw invalid('server.hostKeyFingerprint', 'SHA256:… as `ssh-keygen -l` prints it');
  }
  if (server.privateKey && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(server.privateKey)) throw invalid('server.privateKey', 'a PEM or OpenSSH private key');
  return { name, host: server.host.replace(/^\[|\]$/g, ''), port: server.port || 22, username: server.username, labels: JSON.stringify(server.labels) };
}

export async function findServer(deps: ApiDeps, principal: Principal, id: string): Promise<ServerRow> {
  if (!id) throw invalid('id', 'required');
  let query = deps.db.selectFrom('servers').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
  if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
  return query.executeTakeFirstOrThrow(() => notFound('server', id));
}

export function serverService(deps: ApiDeps): ServiceImpl<typeof ServerService> {
  const { db, sealer } = deps;
  return {
    async createServer(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const values = fields(req.server);
      const server = req.server!;
      if (!server.privateKey && !server.password) throw invalid('server.privateKey', 'a private key or a password is required');
      const id = randomUUID();
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .insertInto('servers')
          .values({
            ...values,
            id,
            owner_id: principal.ownerId,
            private_key_sealed: sealCredential(sealer, id, 'private_key', server.privateKey),
            password_sealed: sealCredential(sealer, id, 'password', server.password),
            host_key_fingerprint: server.hostKeyFingerprint,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        return { server: serverToProto(row) };
      });
    },
    async getServer(req, ctx) {
      return { server: serverToProto(await findServer(deps, principalOf(ctx.values), req.id)) };
    },
    async listServers(_req, ctx) {
      const principal = principalOf(ctx.values);
      let query = db.selectFrom('servers').selectAll().where('deleted_at', 'is', null).orderBy('created_at').orderBy('id');
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      return { servers: (await query.execute()).map(serverToProto) };
    },
    async updateServer(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findServer(deps, principal, req.server?.id ?? '');
      const values = fields(req.server);
      const server = req.server!;
      const moved = values.host !== existing.host || values.port !== existing.port;
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .updateTable('servers')
          .set({
            ...values,
            updated_at: sql<Date>`now()`,
            // A new credential replaces the stored one; none given keeps it.
            ...(server.privateKey ? { private_key_sealed: sealCredential(sealer, existing.id, 'private_key', server.privateKey) } : {}),
            ...(server.password ? { password_sealed: sealCredential(sealer, existing.id, 'password', server.password) } : {}),
            // Another address is another machine: its key must be approved again.
            host_key_fingerprint: server.hostKeyFingerprint || (moved ? '' : existing.host_key_fingerprint),
          })
          .where('id', '=', existing.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { server: serverToProto(row) };
      });
    },
    async deleteServer(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const existing = await findServer(deps, principal, req.id);
      return audited(db, ctx, async (tx) => {
        await tx.updateTable('servers').set({ deleted_at: sql<Date>`now()` }).where('id', '=', existing.id).execute();
        return {};
      });
    },
    async testServer(req, ctx) {
      const principal = principalOf(ctx.values);
      const server = await findServer(deps, principal, req.id);
      const result = await probeServer({ host: server.host, port: server.port, username: server.username, ...openCredentials(sealer, server) });
      if (result.hostKeyFingerprint) {
        await db.updateTable('servers').set({ seen_host_key_fingerprint: result.hostKeyFingerprint }).where('id', '=', server.id).execute();
      }
      let { ok, error } = result;
      if (ok && server.host_key_fingerprint && server.host_key_fingerprint !== result.hostKeyFingerprint) {
        ok = false;
        error = `host key changed: expected ${server.host_key_fingerprint}, got ${result.hostKeyFingerprint}`;
      } else if (ok && !server.host_key_fingerprint) {
        error = `host key ${result.hostKeyFingerprint} not approved yet: call ApproveHostKey`;
      }
      return { ok, hostKeyFingerprint: result.hostKeyFingerprint, error, latencyMs: result.latencyMs };
    },
    async approveHostKey(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const server = await findServer(deps, principal, req.id);
      if (!FINGERPRINT.test(req.fingerprint)) throw invalid('fingerprint', 'SHA256:… as `ssh-keygen -l` prints it');
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .updateTable('servers')
          .set({ host_key_fingerprint: req.fingerprint, updated_at: sql<Date>`now()` })
          .where('id', '=', server.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { server: serverToProto(row) };
      });
    },
  };
}
