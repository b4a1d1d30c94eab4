import type { LayoutServerLoad } from './$types';

export const load: LayoutServerLoad = ({ locals }) => ({ signedIn: Boolean(locals.token), me: locals.me ?? null });
