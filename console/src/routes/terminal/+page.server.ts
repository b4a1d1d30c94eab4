import { error } from '@sveltejs/kit';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ url, locals }) => {
  const server = url.searchParams.get('server');
  const agent = url.searchParams.get('agent');
  if (server) {
    const found = (await locals.api.servers.getServer({ id: server })).server!;
    return { query: `server=${encodeURIComponent(server)}`, title: `${found.name} (${found.username}@${found.host})` };
  }
  if (agent) {
    const found = (await locals.api.agents.getAgent({ id: agent })).agent!;
    return { query: `agent=${encodeURIComponent(agent)}`, title: `agent ${found.name || found.id}` };
  }
  error(400, 'open a terminal from the Servers or Agents page');
};
