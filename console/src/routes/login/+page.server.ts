import { Code, ConnectError } from '@connectrpc/connect';
import { fail, redirect } from '@sveltejs/kit';
import { apiFor, apiMessage } from '#lib/server/api.ts';
import { startSession } from '#lib/server/session.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = ({ locals }) => {
  if (locals.token) redirect(303, '/');
};

/** Only same-site paths: `next` must not send the operator elsewhere. */
function safeNext(next: string | null): string {
  // `//host` and `/\host` are other sites to a browser.
  return next && next.startsWith('/') && next[1] !== '/' && next[1] !== '\\' ? next : '/';
}

export const actions: Actions = {
  default: async ({ request, cookies, url }) => {
    const form = await request.formData();
    const token = String(form.get('token') ?? '').trim();
    if (!token) return fail(400, { error: 'Paste an API token.' });
    try {
      // One call proves the token: the API refuses unknown or revoked ones, whatever their role.
      await apiFor(token).events.listEvents({});
    } catch (error) {
      if (error instanceof ConnectError && error.code === Code.Unauthenticated) {
        return fail(401, { error: 'That token was refused: it is unknown or revoked.' });
      }
      return fail(502, { error: `The API could not be reached: ${apiMessage(error)}` });
    }
    await startSession(cookies, token, url.protocol === 'https:');
    redirect(303, safeNext(url.searchParams.get('next')));
  },
};
