import { redirect } from '@sveltejs/kit';
import type { Handle } from '@sveltejs/kit/hooks';
import { apiFor } from '#lib/server/api.ts';
import { endSession, sessionToken } from '#lib/server/session.ts';

const publicPaths = new Set(['/login', '/favicon.svg']);

export const handle: Handle = async ({ event, resolve }) => {
  const token = await sessionToken(event.cookies);
  const path = event.url.pathname;
  if (token) {
    event.locals.token = token;
    event.locals.api = apiFor(token, () => endSession(event.cookies));
  } else if (!publicPaths.has(path)) {
    if (path.startsWith('/console-api/')) {
      return Response.json({ code: 'unauthenticated', message: 'sign in to the console' }, { status: 401 });
    }
    const next = path === '/' ? '' : `?next=${encodeURIComponent(path + event.url.search)}`;
    redirect(303, `/login${next}`);
  }
  const response = await resolve(event);
  response.headers.set('x-frame-options', 'DENY');
  response.headers.set('referrer-policy', 'same-origin');
  return response;
};
