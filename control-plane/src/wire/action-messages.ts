import { create } from '@bufbuild/protobuf';
import { Action, EventActionSchema, type EventAction } from '@cronium/proto/api/v1/event';
import type { ActionRow, ActionTrigger } from '../store/schema.ts';

export const actionTriggers: Record<ActionTrigger, Action> = {
  on_success: Action.ON_SUCCESS,
  on_failure: Action.ON_FAILURE,
  always: Action.ALWAYS,
  on_condition: Action.ON_CONDITION,
};

export function actionsToProto(rows: readonly ActionRow[] | undefined): EventAction[] {
  return (rows ?? []).map((row) =>
    create(EventActionSchema, {
      trigger: actionTriggers[row.trigger],
      kind: 'runEvent' in row ? { case: 'runEvent', value: { eventId: row.runEvent.eventId } } : { case: 'notify', value: { ...row.notify } },
    }),
  );
}
