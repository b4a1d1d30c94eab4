import { Code, ConnectError } from '@connectrpc/connect';
import { redirect } from '@sveltejs/kit';
import type { Handle } from '@sveltejs/kit/hooks';
import { apiFor, callerOrigin } from '#lib/server/api.ts';
import { endSession, readSession } from '#lib/server/session.ts';
import { whoAmI } from '#lib/server/whoami.ts';

const publicPaths = new Set(['/login', '/favicon.svg']);

export const handle: Handle = async ({ event, resolve }) => {
  const session = await readSession(event.cookies);
  const path = event.url.pathname;
  const toSignIn = () => {
    if (path.startsWith('/console-api/')) {
      return Response.json({ code: 'unauthenticated', message: 'sign in to the console' }, { status: 401 });
    }
    const next = path === '/' ? '' : `?next=${encodeURIComponent(path + event.url.search)}`;
    redirect(303, `/login${next}`);
  };
  if (session) {
    event.locals.token = session.token;
    event.locals.credential = session.kind;
    event.locals.api = apiFor(session.token, () => endSession(event.cookies), callerOrigin(event));
    // Pages learn who is signed in (and the role) from the API; the browser's API proxy does not need it.
    if (!path.startsWith('/console-api/') && path !== '/logout') {
      try {
        event.locals.me = await whoAmI(apiFor(session.token));
      } catch (error) {
        if (!(error instanceof ConnectError && error.code === Code.Unauthenticated)) throw error;
        // Signed out elsewhere, revoked, disabled or expired: the cookie is of no more use.
        endSession(event.cookies);
        delete event.locals.token;
        if (!publicPaths.has(path)) return toSignIn();
      }
    }
  } else if (!publicPaths.has(path)) {
    return toSignIn();
  }
  const response = await resolve(event);
  response.headers.set('x-frame-options', 'DENY');
  response.headers.set('referrer-policy', 'same-origin');
  return response;
};
