import { test } from 'node:test';
import assert from 'node:assert/strict';
import { maskJson, maskText, secretForms, StreamMasker } from '../src/secret-mask.ts';

const SECRET = 'p@ss w0rd/+=';

function maskedStream(forms: readonly string[], pieces: readonly string[]): string {
  const masker = new StreamMasker(forms);
  const out = pieces.map((piece) => masker.push(Buffer.from(piece)).toString());
  return out.join('') + masker.flush().toString();
}

test('raw, base64 and URL-encoded forms are masked', () => {
  const forms = secretForms([SECRET]);
  const text = `raw=${SECRET} b64=${Buffer.from(SECRET).toString('base64')} url=${encodeURIComponent(SECRET)} form=${new URLSearchParams({ v: SECRET }).toString().slice(2)}`;
  assert.equal(maskedStream(forms, [text]), 'raw=*** b64=*** url=*** form=***');
  assert.equal(maskText(text, forms), 'raw=*** b64=*** url=*** form=***');
});

test('a secret split across pieces, even byte by byte, is masked', () => {
  const forms = secretForms([SECRET]);
  const text = `before ${SECRET} after\n`;
  assert.equal(maskedStream(forms, [text.slice(0, 10), text.slice(10)]), 'before *** after\n');
  assert.equal(maskedStream(forms, [...text]), 'before *** after\n');
});

test('text that only starts like a secret comes out whole, at the latest when the stream ends', () => {
  const forms = secretForms([SECRET]);
  assert.equal(maskedStream(forms, ['ends with p@ss', ' w0r']), 'ends with p@ss w0r');
  const masker = new StreamMasker(forms);
  assert.equal(masker.push(Buffer.from('x p@')).toString(), 'x ');
  assert.equal(masker.push(Buffer.from('ty')).toString(), 'p@ty');
});

test('without secrets the bytes pass unchanged', () => {
  assert.equal(maskedStream([], ['a', 'b']), 'ab');
  assert.deepEqual(secretForms(['']), []);
});

test('secrets in a job output are masked in every string, keys included', () => {
  const forms = secretForms([SECRET]);
  assert.deepEqual(maskJson({ token: SECRET, [SECRET]: [1, `x${SECRET}`, null, true] }, forms), { token: '***', '***': [1, 'x***', null, true] });
  assert.equal(maskJson(42, forms), 42);
});
