import type { RequestHandler } from './$types';

/** The raw asciicast, for asciinema's own player (`asciinema play FILE`). */
export const GET: RequestHandler = async ({ params, locals }) => {
  const { asciicast } = await locals.api.terminals.getRecording({ id: params.id });
  return new Response(asciicast, { headers: { 'content-type': 'application/x-asciicast', 'content-disposition': `attachment; filename="terminal-${params.id}.cast"` } });
};
