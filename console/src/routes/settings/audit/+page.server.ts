import { auditView, userView } from '#lib/server/account-views.ts';
import { requireAdmin } from '#lib/server/admin.ts';
import type { PageServerLoad } from './$types';

const objectTypes = ['event', 'run', 'workflow', 'execution', 'job', 'server', 'variable', 'channel', 'agent', 'user', 'token', 'session'];
const PAGE_SIZE = 50;

export const load: PageServerLoad = async ({ locals, url }) => {
  requireAdmin(locals.me);
  const filter = {
    userId: url.searchParams.get('user') ?? '',
    objectType: url.searchParams.get('type') ?? '',
    objectId: (url.searchParams.get('object') ?? '').trim(),
  };
  const [{ events, nextPageToken }, { users }] = await Promise.all([
    locals.api.audit.listAuditEvents({ ...filter, pageSize: PAGE_SIZE, pageToken: url.searchParams.get('page') ?? '' }),
    locals.api.users.listUsers({}),
  ]);
  const older = new URLSearchParams(url.searchParams);
  older.set('page', nextPageToken);
  return {
    events: events.map(auditView),
    users: users.map(userView),
    filter,
    objectTypes,
    olderHref: nextPageToken ? `?${older}` : null,
    paged: url.searchParams.has('page'),
  };
};
