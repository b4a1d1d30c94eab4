import { attempt } from '#lib/server/forms.ts';
import { channelFromForm } from '#lib/server/channel-form.ts';
import { channelView, deliveryView } from '#lib/channel-views.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  const [{ channels }, { deliveries }, { events }] = await Promise.all([
    locals.api.notifications.listChannels({}),
    locals.api.notifications.listDeliveries({ limit: 50 }),
    locals.api.events.listEvents({}),
  ]);
  return {
    channels: channels.map(channelView),
    deliveries: deliveries.map(deliveryView),
    eventNames: Object.fromEntries(events.map((e) => [e.id, e.name])),
  };
};

const id = (form: FormData) => String(form.get('id') ?? '');

export const actions: Actions = {
  create: async ({ request, locals }) => {
    const form = await request.formData();
    return attempt(async () => {
      const { channel } = await locals.api.notifications.createChannel({ channel: channelFromForm(form) });
      return { done: `Channel ${channel!.name} added. Test it to send a message now.` };
    });
  },
  test: async ({ request, locals }) => {
    const channelId = id(await request.formData());
    return attempt(async () => {
      const result = await locals.api.notifications.testChannel({ id: channelId });
      return { tested: { id: channelId, ok: result.ok, error: result.error } };
    });
  },
  delete: async ({ request, locals }) => {
    const channelId = id(await request.formData());
    return attempt(async () => {
      await locals.api.notifications.deleteChannel({ id: channelId });
      return { done: 'Channel deleted.' };
    });
  },
};
