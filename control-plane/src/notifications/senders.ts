import { createHmac } from 'node:crypto';
import nodemailer from 'nodemailer';
import type { NotificationMessage } from '../store/schema.ts';
import type { ChannelConfig } from './channels.ts';

const TIMEOUT_MS = 15_000;
const DISCORD_MAX_CHARS = 2000;

/** Sends one notification; throws with a reason (never a credential) when it was not accepted. */
export async function deliver(config: ChannelConfig, message: NotificationMessage, deliveryId: string): Promise<void> {
  switch (config.kind) {
    case 'webhook': {
      const body = JSON.stringify({ subject: message.subject, text: message.text, event: message.event, run: message.run, deliveryId });
      const signature: Record<string, string> = config.hmacSecret ? { 'X-Cronium-Signature': `sha256=${createHmac('sha256', config.hmacSecret).update(body).digest('hex')}` } : {};
      return post(config.url, body, { ...config.headers, ...signature, 'X-Cronium-Delivery': deliveryId });
    }
    case 'slack':
      return post(config.url, JSON.stringify({ text: message.text }), {});
    case 'discord':
      return post(config.url, JSON.stringify({ content: message.text.slice(0, DISCORD_MAX_CHARS) }), {});
    case 'email':
      return sendMail(config, message, deliveryId);
  }
}

async function post(url: string, body: string, headers: Readonly<Record<string, string>>): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'User-Agent': 'Cronium', ...headers, 'Content-Type': 'application/json' },
      body,
      redirect: 'error',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (error) {
    // The URL itself is a credential (Slack, Discord): name only the cause.
    const cause = (error as { cause?: { message?: string } }).cause?.message;
    throw new Error(`request failed: ${cause ?? (error as Error).message}`);
  }
  const text = await response.text().catch(() => '');
  if (!response.ok) throw new Error(`HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
}

async function sendMail(config: Extract<ChannelConfig, { kind: 'email' }>, message: NotificationMessage, deliveryId: string): Promise<void> {
  const transport = nodemailer.createTransport({
    host: config.host,
    port: config.port,
    secure: config.tls === 'implicit',
    requireTLS: config.tls === 'starttls',
    ignoreTLS: config.tls === 'none',
    auth: config.username ? { user: config.username, pass: config.password } : undefined,
    connectionTimeout: TIMEOUT_MS,
    greetingTimeout: TIMEOUT_MS,
    socketTimeout: TIMEOUT_MS,
  });
  try {
    await transport.sendMail({ from: config.from, to: [...config.to], subject: message.subject, text: message.text, headers: { 'X-Cronium-Delivery': deliveryId } });
  } finally {
    transport.close();
  }
}
