// Form-action helpers shared by pages.
import { isRedirect, fail } from '@sveltejs/kit';
import { apiMessage } from './api';
import { FormError } from './event-form';

/** Runs an API-backed action; API and form errors come back as a failed action with their message. */
export async function attempt<T>(action: () => Promise<T>): Promise<T | ReturnType<typeof fail<{ error: string }>>> {
  try {
    return await action();
  } catch (error) {
    if (isRedirect(error)) throw error;
    return fail(error instanceof FormError ? 400 : 422, { error: apiMessage(error) });
  }
}
