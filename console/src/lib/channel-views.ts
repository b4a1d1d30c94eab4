// Notification channels and deliveries as plain views: what a channel is and
// where it goes, without any of its credentials (the API never returns them).
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { DeliveryStatus, SmtpTls, type Channel, type Delivery } from '@cronium/proto/api/v1/notification';

function iso(ts: Timestamp | undefined): string | null {
  return ts ? timestampDate(ts).toISOString() : null;
}

export interface ChannelView {
  id: string;
  name: string;
  kind: string;
  details: string;
  createdAt: string | null;
}

function details(channel: Channel): string {
  const kind = channel.kind;
  switch (kind.case) {
    case 'webhook':
      return [kind.value.signed ? 'signed (HMAC)' : 'unsigned', kind.value.headerNames.length ? `headers: ${kind.value.headerNames.join(', ')}` : ''].filter(Boolean).join('; ');
    case 'email':
      return `${kind.value.from} → ${kind.value.to.join(', ')} via ${kind.value.host}:${kind.value.port} (${(SmtpTls[kind.value.tls] ?? '').toLowerCase()}${kind.value.hasPassword ? ', with password' : ''})`;
    default:
      return 'incoming webhook';
  }
}

export function channelView(channel: Channel): ChannelView {
  return { id: channel.id, name: channel.name, kind: channel.kind.case ?? 'unknown', details: details(channel), createdAt: iso(channel.createdAt) };
}

export interface DeliveryView {
  id: string;
  channelId: string;
  runId: string;
  eventId: string;
  status: string;
  attempts: number;
  lastError: string;
  subject: string;
  createdAt: string | null;
  deliveredAt: string | null;
}

export function deliveryView(delivery: Delivery): DeliveryView {
  return {
    id: delivery.id,
    channelId: delivery.channelId,
    runId: delivery.runId,
    eventId: delivery.eventId,
    status: (DeliveryStatus[delivery.status] ?? 'UNSPECIFIED').toLowerCase(),
    attempts: delivery.attempts,
    lastError: delivery.lastError,
    subject: delivery.subject,
    createdAt: iso(delivery.createdAt),
    deliveredAt: iso(delivery.deliveredAt),
  };
}
