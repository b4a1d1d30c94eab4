import { create } from '@bufbuild/protobuf';
import { WebhookSchema, type Webhook } from '@cronium/proto/api/v1/webhook';

/** The public view of a webhook; the secret only in the answer that just made it. */
export function webhookToProto(kind: 'workflows' | 'events', key: string | null, secret = ''): Webhook | undefined {
  if (!key) return undefined;
  return create(WebhookSchema, { enabled: true, key, secret, path: `/hooks/${kind}/${key}` });
}
