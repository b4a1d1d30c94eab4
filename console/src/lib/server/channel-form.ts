// The new-channel form → the API's Channel message. Credentials go one way:
// they are sent here and never read back.
import { create } from '@bufbuild/protobuf';
import { ChannelSchema, SmtpTls, type Channel } from '@cronium/proto/api/v1/notification';
import { FormError } from './event-form.ts';

function text(form: FormData, name: string): string {
  return String(form.get(name) ?? '').trim();
}

/** `Name: value` lines (HTTP header style). */
function headerLines(source: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [i, raw] of source.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new FormError(`Headers line ${i + 1}: write Name: value`);
    headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return headers;
}

export function channelFromForm(form: FormData): Channel {
  const name = text(form, 'name');
  switch (text(form, 'kind')) {
    case 'slack':
      return create(ChannelSchema, { name, kind: { case: 'slack', value: { webhookUrl: text(form, 'slackUrl') } } });
    case 'discord':
      return create(ChannelSchema, { name, kind: { case: 'discord', value: { webhookUrl: text(form, 'discordUrl') } } });
    case 'email': {
      const tls = SmtpTls[text(form, 'smtpTls') as keyof typeof SmtpTls] ?? SmtpTls.STARTTLS;
      const to = text(form, 'emailTo').split(/[,\s]+/).filter(Boolean);
      const value = { host: text(form, 'smtpHost'), port: Number(text(form, 'smtpPort') || 587), tls, username: text(form, 'smtpUser'), password: String(form.get('smtpPassword') ?? ''), from: text(form, 'emailFrom'), to };
      return create(ChannelSchema, { name, kind: { case: 'email', value } });
    }
    default: {
      const value = { url: text(form, 'webhookUrl'), headers: headerLines(String(form.get('webhookHeaders') ?? '')), hmacSecret: String(form.get('hmacSecret') ?? '') };
      return create(ChannelSchema, { name, kind: { case: 'webhook', value } });
    }
  }
}
