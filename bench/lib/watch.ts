// JobService/WatchJob as a live Connect JSON stream (the harness's watchJob reads the whole body at the end).
import { ADMIN_TOKEN } from '../../test/harness.ts';
import { nowMs } from './stats.ts';

export const TERMINAL = new Set(['JOB_STATUS_SUCCEEDED', 'JOB_STATUS_FAILED', 'JOB_STATUS_TIMED_OUT', 'JOB_STATUS_CANCELLED']);

/**
 * Calls onMessage for each message as it arrives (with its arrival time) and
 * resolves when the server ends the stream.
 */
export async function watchJobLive(
  baseUrl: string,
  jobId: string,
  onMessage: (message: any, at: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const payload = Buffer.from(JSON.stringify({ id: jobId }));
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(payload.length, 1);
  payload.copy(frame, 5);
  const res = await fetch(`${baseUrl}/api/cronium.api.v1.JobService/WatchJob`, {
    method: 'POST',
    headers: { 'content-type': 'application/connect+json', authorization: `Bearer ${ADMIN_TOKEN}` },
    body: frame,
    signal,
  });
  if (!res.ok || !res.body) throw new Error(`WatchJob answered ${res.status}`);
  let buffer = Buffer.alloc(0);
  for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
    const at = nowMs();
    buffer = buffer.length === 0 ? Buffer.from(piece) : Buffer.concat([buffer, piece]);
    let offset = 0;
    while (buffer.length - offset >= 5) {
      const length = buffer.readUInt32BE(offset + 1);
      if (buffer.length - offset < 5 + length) break;
      const flags = buffer[offset]!;
      const body = JSON.parse(buffer.subarray(offset + 5, offset + 5 + length).toString('utf8'));
      offset += 5 + length;
      if (flags & 0x02) {
        if (body.error) throw new Error(`WatchJob ended with ${JSON.stringify(body.error)}`);
      } else onMessage(body, at);
    }
    buffer = buffer.subarray(offset);
  }
}
