import type { ServiceImpl } from '@connectrpc/connect';
import { AuditService } from '@cronium/proto/api/v1/audit';
import { auditToProto } from '../wire/user-messages.ts';
import { mustAdmin, principalOf } from './auth.ts';
import { invalid } from './errors.ts';
import { pageSize } from './pagination.ts';
import type { ApiDeps } from './deps.ts';

export function auditService(deps: ApiDeps): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(req, ctx) {
      mustAdmin(principalOf(ctx.values));
      const size = pageSize(req.pageSize);
      let query = deps.db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(size + 1);
      if (req.pageToken) {
        const after = Number(Buffer.from(req.pageToken, 'base64url').toString());
        if (!Number.isSafeInteger(after)) throw invalid('pageToken', 'not a token this API returned');
        query = query.where('id', '<', after);
      }
      if (req.objectType) query = query.where('object_type', '=', req.objectType);
      if (req.objectId) query = query.where('object_id', '=', req.objectId);
      if (req.userId) query = query.where('user_id', '=', req.userId);
      const rows = await query.execute();
      const page = rows.slice(0, size);
      return {
        events: page.map(auditToProto),
        nextPageToken: rows.length > size ? Buffer.from(String(page[page.length - 1]!.id)).toString('base64url') : '',
      };
    },
  };
}
