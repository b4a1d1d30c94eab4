import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { fail, redirect } from '@sveltejs/kit';
import { apiFor, apiMessage, callerOrigin } from '#lib/server/api.ts';
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

/** The sign-in page's words for an API refusal. */
function refusal(error: unknown, unauthenticated: string, form: { email?: string; withToken?: boolean }) {
  if (error instanceof ConnectError && error.code === Code.Unauthenticated) return fail(401, { error: unauthenticated, ...form });
  if (error instanceof ConnectError && error.code === Code.ResourceExhausted) {
    const seconds = Number(error.metadata.get('retry-after')) || Number(/retry in (\d+)/.exec(error.rawMessage)?.[1]);
    return fail(429, { error: `Too many failed sign-ins. Wait ${seconds ? `${seconds} s` : 'a moment'}, then try again.`, ...form });
  }
  return fail(502, { error: `The API could not be reached: ${apiMessage(error)}`, ...form });
}

export const actions: Actions = {
  password: async (event) => {
    const { request, cookies, url } = event;
    const form = await request.formData();
    const email = String(form.get('email') ?? '').trim();
    const password = String(form.get('password') ?? '');
    if (!email || !password) return fail(400, { error: 'Enter your email and password.', email });
    let signedIn;
    try {
      signedIn = await apiFor('', undefined, callerOrigin(event)).auth.signIn({ email, password });
    } catch (error) {
      return refusal(error, 'Wrong email or password.', { email });
    }
    // The session token, never the password, goes into the cookie, and lasts no longer than the session.
    const expiresAt = signedIn.expiresAt ? timestampDate(signedIn.expiresAt) : undefined;
    await startSession(cookies, signedIn.sessionToken, url.protocol === 'https:', 'session', expiresAt);
    redirect(303, safeNext(url.searchParams.get('next')));
  },
  token: async ({ request, cookies, url }) => {
    const form = await request.formData();
    const token = String(form.get('token') ?? '').trim();
    if (!token) return fail(400, { error: 'Paste an API token.', withToken: true });
    try {
      // One call proves the token: the API refuses unknown or revoked ones, whatever their role.
      await apiFor(token).auth.whoAmI({});
    } catch (error) {
      return refusal(error, 'That token was refused: it is unknown, expired or revoked.', { withToken: true });
    }
    await startSession(cookies, token, url.protocol === 'https:', 'token');
    redirect(303, safeNext(url.searchParams.get('next')));
  },
};
