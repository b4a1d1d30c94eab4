// Form-action helpers shared by pages.
import { isRedirect, fail } from '@sveltejs/kit';
import { apiMessage } from './api';
import { FormError } from './event-form';

/**
 * Runs an API-backed action; API and form errors come back as a failed action
 * with their message under `key` (`error` unless a page has several forms).
 */
export async function attempt<T, K extends string = 'error'>(action: () => Promise<T>, key?: K): Promise<T | ReturnType<typeof fail<Record<K, string>>>> {
  try {
    return await action();
  } catch (error) {
    if (isRedirect(error)) throw error;
    return fail(error instanceof FormError ? 400 : 422, { [key ?? 'error']: apiMessage(error) } as Record<K, string>);
  }
}
