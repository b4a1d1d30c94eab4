import Mustache from 'mustache';
import type { NotificationMessage } from '../store/schema.ts';

export const DEFAULT_TEMPLATE = '{{event.name}} {{run.status}} (exit code {{run.exitCode}}, {{run.durationMs}} ms)';
export const DEFAULT_SUBJECT = '[Cronium] {{event.name}} {{run.status}}';

/** What a template can use. Secret variables are never part of it. */
export interface TemplateView {
  readonly event: { readonly id: string; readonly name: string };
  readonly run: { readonly id: string; readonly status: string; readonly exitCode: number | null; readonly durationMs: number | null };
  /** The run's output: a string as is, anything else as JSON. */
  readonly output: string;
  readonly variables: Readonly<Record<string, string>>;
}

/** The template's problem, or undefined when it parses. */
export function templateProblem(template: string): string | undefined {
  try {
    Mustache.parse(template);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

// Messages are plain text (and JSON is built with JSON.stringify), so nothing is HTML-escaped.
function render(template: string, view: TemplateView): string {
  try {
    return Mustache.render(template, view, {}, { escape: (value: unknown) => String(value) });
  } catch {
    return template;
  }
}

export function renderMessage(templates: { readonly template: string; readonly subject: string }, view: TemplateView): NotificationMessage {
  return {
    subject: render(templates.subject || DEFAULT_SUBJECT, view),
    text: render(templates.template || DEFAULT_TEMPLATE, view),
    event: view.event,
    run: view.run,
  };
}
