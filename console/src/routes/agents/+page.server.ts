import { fail } from '@sveltejs/kit';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { attempt } from '#lib/server/forms.ts';
import { installCommand, parseLabels } from '#lib/install-command.ts';
import { requireAdmin } from '#lib/server/admin.ts';
import { agentView } from '#lib/views.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  requireAdmin(locals.me);
  const { agents } = await locals.api.agents.listAgents({});
  return { agents: agents.map(agentView), now: Date.now() };
};

export const actions: Actions = {
  join: async ({ request, locals, url }) => {
    const form = await request.formData();
    let labels: Record<string, string>;
    try {
      labels = parseLabels(String(form.get('labels') ?? ''));
    } catch (error) {
      return fail(400, { joinError: (error as Error).message });
    }
    const hours = Number(form.get('ttlHours') || 1);
    return attempt(async () => {
      const created = await locals.api.agents.createJoinToken({
        name: String(form.get('name') ?? '').trim(),
        labels,
        ttlSeconds: Math.round(hours * 3600),
      });
      // Agents dial the agent link port on the host operators reach the console by.
      const controlPlane = `${url.hostname}:${process.env.CRONIUM_AGENT_PORT || 8443}`;
      return {
        join: {
          agentId: created.agentId,
          expiresAt: created.expiresAt ? timestampDate(created.expiresAt).toISOString() : null,
          command: installCommand({ controlPlane, token: created.token, labels }),
        },
      };
    });
  },
  drain: async ({ request, locals }) => {
    const id = String((await request.formData()).get('id'));
    return attempt(async () => {
      await locals.api.agents.drainAgent({ id });
      return { done: `Agent ${id} is draining: it takes no new jobs; running ones finish.` };
    });
  },
  revoke: async ({ request, locals }) => {
    const id = String((await request.formData()).get('id'));
    return attempt(async () => {
      await locals.api.agents.revokeAgent({ id });
      return { done: `Agent ${id} is revoked: its connection is closed and it is refused from now on.` };
    });
  },
};
