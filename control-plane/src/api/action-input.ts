import type { EventAction } from '@cronium/proto/api/v1/event';
import type { ActionRow, ActionTrigger } from '../store/schema.ts';
import { templateProblem } from '../notifications/template.ts';
import { actionTriggers } from '../wire/action-messages.ts';
import { reverse } from '../wire/api-messages.ts';
import type { Principal } from './auth.ts';
import type { ApiDeps } from './deps.ts';
import { invalid } from './errors.ts';

const MAX_ACTIONS = 20;
const MAX_TEMPLATE_CHARS = 16 * 1024;
const triggerNames = reverse(actionTriggers);

/** Checks an event's actions from the API; every error names its field. */
export function actionFields(actions: readonly EventAction[]): ActionRow[] {
  if (actions.length > MAX_ACTIONS) throw invalid('event.actions', `at most ${MAX_ACTIONS}`);
  return actions.map((action, i) => {
    const field = `event.actions[${i}]`;
    const trigger: ActionTrigger | undefined = triggerNames.get(action.trigger);
    if (!trigger) throw invalid(`${field}.trigger`, 'required: one of ACTION_ON_SUCCESS, ACTION_ON_FAILURE, ACTION_ALWAYS, ACTION_ON_CONDITION');
    if (action.kind.case === 'runEvent') {
      if (!action.kind.value.eventId) throw invalid(`${field}.runEvent.eventId`, 'required');
      return { trigger, runEvent: { eventId: action.kind.value.eventId } };
    }
    if (action.kind.case === 'notify') {
      const { channelId, template, subject } = action.kind.value;
      if (!channelId) throw invalid(`${field}.notify.channelId`, 'required');
      for (const [name, text] of [['template', template], ['subject', subject]] as const) {
        if (text.length > MAX_TEMPLATE_CHARS) throw invalid(`${field}.notify.${name}`, `at most ${MAX_TEMPLATE_CHARS} characters`);
        const problem = templateProblem(text);
        if (problem) throw invalid(`${field}.notify.${name}`, problem);
      }
      return { trigger, notify: { channelId, template, subject } };
    }
    throw invalid(field, 'runEvent or notify is required');
  });
}

/** The events and channels that actions name must exist and belong to the caller. */
export async function checkActionTargets(deps: ApiDeps, principal: Principal, actionsJson: string | undefined): Promise<void> {
  const actions = JSON.parse(actionsJson ?? '[]') as ActionRow[];
  for (const [i, action] of actions.entries()) {
    const [table, id, field] =
      'runEvent' in action
        ? (['events', action.runEvent.eventId, `event.actions[${i}].runEvent.eventId`] as const)
        : (['notification_channels', action.notify.channelId, `event.actions[${i}].notify.channelId`] as const);
    const found = await deps.db.selectFrom(table).select('id').where('id', '=', id).where('owner_id', '=', principal.ownerId).where('deleted_at', 'is', null).executeTakeFirst();
    if (!found) throw invalid(field, `${table === 'events' ? 'event' : 'channel'} ${JSON.stringify(id)} not found`);
  }
}

