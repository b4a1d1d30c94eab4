// What the event form needs besides the event: servers and agents for the
// target, and events and channels for the actions. Agents are admin-only at
// the API, so others get no agent count (`agents` undefined).
import type { Api } from './api.ts';
import { isAdmin, type Me } from '#lib/roles.ts';
import { agentView, serverView } from '#lib/views.ts';

export async function eventFormData(api: Api, me: Me | null | undefined) {
  const [{ servers }, agents, { events }, { channels }] = await Promise.all([
    api.servers.listServers({}),
    isAdmin(me) ? api.agents.listAgents({}) : undefined,
    api.events.listEvents({}),
    api.notifications.listChannels({}),
  ]);
  return {
    servers: servers.map(serverView),
    agents: agents?.agents.map(agentView),
    eventChoices: events.map((e) => ({ id: e.id, name: e.name })),
    channelChoices: channels.map((c) => ({ id: c.id, name: c.name })),
  };
}
