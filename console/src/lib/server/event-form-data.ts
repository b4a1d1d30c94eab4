// What the event form needs besides the event: servers and agents for the
// target, and events and channels for the actions.
import type { Api } from './api.ts';
import { agentView, serverView } from '#lib/views.ts';

export async function eventFormData(api: Api) {
  const [{ servers }, { agents }, { events }, { channels }] = await Promise.all([
    api.servers.listServers({}),
    api.agents.listAgents({}),
    api.events.listEvents({}),
    api.notifications.listChannels({}),
  ]);
  return {
    servers: servers.map(serverView),
    agents: agents.map(agentView),
    eventChoices: events.map((e) => ({ id: e.id, name: e.name })),
    channelChoices: channels.map((c) => ({ id: c.id, name: c.name })),
  };
}
