import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { ChannelSchema, DiscordChannelSchema, EmailChannelSchema, SlackChannelSchema, SmtpTls, WebhookChannelSchema, type Channel } from '@cronium/proto/api/v1/notification';
import type { ChannelRow } from '../store/schema.ts';
import type { ChannelConfig, SmtpTlsMode } from '../notifications/channels.ts';
import { reverse } from '../wire/api-messages.ts';
import { invalid } from './errors.ts';

const tlsModes: Record<SmtpTlsMode, SmtpTls> = { none: SmtpTls.NONE, starttls: SmtpTls.STARTTLS, implicit: SmtpTls.IMPLICIT };
const tlsNames = reverse(tlsModes);
const DEFAULT_PORTS: Record<SmtpTlsMode, number> = { none: 25, starttls: 587, implicit: 465 };
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const EMAIL = /^[^@\s<>]+@[^@\s<>]+$/;
const HOST = /^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:]+\]?$/;

function url(value: string, field: string): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw invalid(field, 'not a valid URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalid(field, 'must be http or https');
  return parsed.toString();
}

/**
 * Checks a channel from the API. Write-only fields left empty keep the stored
 * value (`stored`, on update of a channel of the same kind).
 */
export function channelFields(channel: Channel | undefined, stored?: ChannelConfig): { name: string; config: ChannelConfig } {
  if (!channel) throw invalid('channel', 'required');
  const name = channel.name.trim();
  if (!name) throw invalid('channel.name', 'required');
  if (name.length > 200) throw invalid('channel.name', 'at most 200 characters');
  const kind = channel.kind;
  const same = <K extends ChannelConfig['kind']>(k: K) => (stored?.kind === k ? (stored as Extract<ChannelConfig, { kind: K }>) : undefined);
  switch (kind.case) {
    case 'webhook': {
      const old = same('webhook');
      const given = kind.value.url || old?.url;
      if (!given) throw invalid('channel.webhook.url', 'required');
      const headers = Object.keys(kind.value.headers).length > 0 ? { ...kind.value.headers } : { ...old?.headers };
      for (const header of Object.keys(headers)) if (!HEADER_NAME.test(header)) throw invalid(`channel.webhook.headers.${header}`, 'not a valid header name');
      return { name, config: { kind: 'webhook', url: url(given, 'channel.webhook.url'), headers, hmacSecret: kind.value.hmacSecret || old?.hmacSecret || '' } };
    }
    case 'slack':
    case 'discord': {
      const given = kind.value.webhookUrl || same(kind.case)?.url;
      if (!given) throw invalid(`channel.${kind.case}.webhookUrl`, 'required');
      return { name, config: { kind: kind.case, url: url(given, `channel.${kind.case}.webhookUrl`) } };
    }
    case 'email': {
      const email = kind.value;
      if (!HOST.test(email.host)) throw invalid('channel.email.host', 'a host name or IP address');
      if (email.port > 65535) throw invalid('channel.email.port', 'at most 65535');
      const tls: SmtpTlsMode = email.tls === SmtpTls.UNSPECIFIED ? 'starttls' : tlsNames.get(email.tls)!;
      if (!EMAIL.test(email.from.replace(/^.*<([^>]*)>\s*$/, '$1'))) throw invalid('channel.email.from', 'an email address');
      if (email.to.length === 0) throw invalid('channel.email.to', 'at least one address');
      email.to.forEach((to, i) => {
        if (!EMAIL.test(to)) throw invalid(`channel.email.to[${i}]`, 'an email address');
      });
      const password = email.password || (email.username ? (same('email')?.password ?? '') : '');
      return {
        name,
        config: { kind: 'email', host: email.host.replace(/^\[|\]$/g, ''), port: email.port || DEFAULT_PORTS[tls], tls, username: email.username, password, from: email.from, to: [...email.to] },
      };
    }
    default:
      throw invalid('channel', 'one of webhook, slack, discord or email is required');
  }
}

/** What the API shows of a channel: never a URL, header value, HMAC secret or password. */
export function channelToProto(row: ChannelRow): Channel {
  const s = row.settings as Record<string, any>;
  const kind: Channel['kind'] =
    row.kind === 'webhook'
      ? { case: 'webhook', value: create(WebhookChannelSchema, { headerNames: s.headerNames ?? [], signed: s.signed ?? false }) }
      : row.kind === 'email'
        ? {
            case: 'email',
            value: create(EmailChannelSchema, { host: s.host, port: s.port, tls: tlsModes[s.tls as SmtpTlsMode], username: s.username, from: s.from, to: s.to ?? [], hasPassword: s.hasPassword ?? false }),
          }
        : row.kind === 'slack'
          ? { case: 'slack', value: create(SlackChannelSchema) }
          : { case: 'discord', value: create(DiscordChannelSchema) };
  return create(ChannelSchema, { id: row.id, name: row.name, kind, createdAt: timestampFromDate(new Date(row.created_at)), updatedAt: timestampFromDate(new Date(row.updated_at)) });
}
