import { redirect } from '@sveltejs/kit';
import { endSession } from '#lib/server/session.ts';
import type { RequestHandler } from './$types';

export const POST: RequestHandler = async ({ cookies, locals }) => {
  // A session from SignIn ends at the API too, so a copy of the cookie opens nothing; an API token stays valid.
  if (locals.token && locals.credential === 'session') await locals.api.auth.signOut({}).catch(() => undefined);
  endSession(cookies);
  redirect(303, '/login');
};
