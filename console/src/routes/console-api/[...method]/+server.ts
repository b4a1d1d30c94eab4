// The browser's way to the public API: Connect requests (unary and server
// streams such as WatchJob) go through here with the session's token added, so
// the token itself never reaches page scripts (the cookie is HttpOnly).
import { error } from '@sveltejs/kit';
import { apiUrl } from '#lib/server/api.ts';
import type { RequestHandler } from './$types';

const forwardedRequestHeaders = ['content-type', 'connect-protocol-version', 'connect-timeout-ms'];
const forwardedResponseHeaders = ['content-type', 'grpc-status', 'grpc-message'];

export const POST: RequestHandler = async ({ params, request, locals }) => {
  if (!/^cronium\.api\.v1\.\w+Service\/\w+$/.test(params.method)) error(404, 'not an API method');
  const headers = new Headers({ authorization: `Bearer ${locals.token}` });
  for (const name of forwardedRequestHeaders) {
    const value = request.headers.get(name);
    if (value) headers.set(name, value);
  }
  const upstream = await fetch(`${apiUrl()}/${params.method}`, {
    method: 'POST',
    headers,
    body: await request.arrayBuffer(),
    signal: request.signal,
  });
  const responseHeaders = new Headers({ 'cache-control': 'no-store' });
  for (const name of forwardedResponseHeaders) {
    const value = upstream.headers.get(name);
    if (value) responseHeaders.set(name, value);
  }
  return new Response(upstream.body, { status: upstream.status, headers: responseHeaders });
};
