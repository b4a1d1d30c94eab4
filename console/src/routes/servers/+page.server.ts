import { create } from '@bufbuild/protobuf';
import { fail } from '@sveltejs/kit';
import { ServerSchema } from '@cronium/proto/api/v1/server';
import { attempt } from '#lib/server/forms.ts';
import { parseLabels } from '#lib/install-command.ts';
import { serverView } from '#lib/views.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  const { servers } = await locals.api.servers.listServers({});
  return { servers: servers.map(serverView) };
};

function id(form: FormData): string {
  return String(form.get('id') ?? '');
}

export const actions: Actions = {
  create: async ({ request, locals }) => {
    const form = await request.formData();
    let labels: Record<string, string>;
    try {
      labels = parseLabels(String(form.get('labels') ?? ''));
    } catch (error) {
      return fail(400, { error: (error as Error).message });
    }
    const server = create(ServerSchema, {
      name: String(form.get('name') ?? '').trim(),
      host: String(form.get('host') ?? '').trim(),
      port: Number(form.get('port') || 22),
      username: String(form.get('username') ?? '').trim(),
      privateKey: String(form.get('privateKey') ?? ''),
      password: String(form.get('password') ?? ''),
      labels,
    });
    return attempt(async () => {
      const { server: created } = await locals.api.servers.createServer({ server });
      return { done: `Server ${created!.name} added. Test it to learn its host key, then approve the key.` };
    });
  },
  test: async ({ request, locals }) => {
    const serverId = id(await request.formData());
    return attempt(async () => {
      const result = await locals.api.servers.testServer({ id: serverId });
      return { tested: { id: serverId, ok: result.ok, fingerprint: result.hostKeyFingerprint, error: result.error, latencyMs: result.latencyMs } };
    });
  },
  approve: async ({ request, locals }) => {
    const form = await request.formData();
    return attempt(async () => {
      await locals.api.servers.approveHostKey({ id: id(form), fingerprint: String(form.get('fingerprint') ?? '') });
      return { done: 'Host key approved: jobs can run on this server now.' };
    });
  },
  delete: async ({ request, locals }) => {
    const serverId = id(await request.formData());
    return attempt(async () => {
      await locals.api.servers.deleteServer({ id: serverId });
      return { done: 'Server deleted.' };
    });
  },
};
