import type { ServiceImpl } from '@connectrpc/connect';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { sql } from 'kysely';
import { TerminalRecordingSchema, TerminalService, type TerminalRecording } from '@cronium/proto/api/v1/terminal';
import type { Selectable } from 'kysely';
import type { TerminalSessionsTable } from '../store/schema.ts';
import { readRecording } from '../terminal/recording.ts';
import { mustAdmin, principalOf } from './auth.ts';
import { invalid, notFound } from './errors.ts';
import { encodeCursor, pageSize } from './pagination.ts';
import type { ApiDeps } from './deps.ts';

function recordingToProto(row: Selectable<TerminalSessionsTable>): TerminalRecording {
  return create(TerminalRecordingSchema, {
    id: row.id,
    openedBy: row.opened_by,
    role: row.role,
    targetKind: row.target_kind,
    targetId: row.target_id,
    targetName: row.target_name,
    agentId: row.agent_id,
    clientAddress: row.client_address,
    startedAt: timestampFromDate(new Date(row.started_at)),
    endedAt: row.ended_at ? timestampFromDate(new Date(row.ended_at)) : undefined,
    endReason: row.end_reason,
    outputBytes: BigInt(row.output_bytes),
  });
}

function cursorId(token: string): string | undefined {
  if (!token) return undefined;
  try {
    const after = (JSON.parse(Buffer.from(token, 'base64url').toString()) as { after?: unknown }).after;
    if (typeof after === 'string') return after;
  } catch {
    // fall through
  }
  throw invalid('pageToken', 'not a token this API returned');
}

/** The audit trail of interactive terminals and their asciicast recordings (admins only). */
export function terminalService(deps: ApiDeps): ServiceImpl<typeof TerminalService> {
  return {
    async listRecordings(req, ctx) {
      mustAdmin(principalOf(ctx.values));
      const size = pageSize(req.pageSize);
      const after = cursorId(req.pageToken);
      let query = deps.db.selectFrom('terminal_sessions').selectAll().orderBy('started_at', 'desc').orderBy('id', 'desc').limit(size + 1);
      if (after) query = query.where(sql<boolean>`(started_at, id) < (select c.started_at, c.id from terminal_sessions c where c.id = ${after})`);
      const rows = await query.execute();
      const page = rows.slice(0, size);
      return { recordings: page.map(recordingToProto), nextPageToken: rows.length > size ? encodeCursor(page[page.length - 1]!) : '' };
    },
    async getRecording(req, ctx) {
      mustAdmin(principalOf(ctx.values));
      if (!req.id) throw invalid('id', 'required');
      const row = await deps.db.selectFrom('terminal_sessions').selectAll().where('id', '=', req.id).executeTakeFirstOrThrow(() => notFound('terminal recording', req.id));
      return { recording: recordingToProto(row), asciicast: await readRecording(deps.db, row.id) };
    },
  };
}
