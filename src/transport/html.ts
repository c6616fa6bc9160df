/**
 * The HTML envelope: a rotor response dressed as a small HTML5 page, for networks whose filters
 * pass web pages and nothing else. A client asks for it with `Accept: text/html`; the HTTP
 * response is then always `200 OK`, `text/html`, and the rotor response sits in fixed places:
 *
 *   <meta name="rotor-status" content="401">             the rotor status
 *   <meta name="rotor-reason" content="Unauthorized">    its reason phrase
 *   <meta name="rotor-header" content="Token: k1.…">     one per header, in order, `Name: value`
 *   <pre id="rotor-body" data-length="5">aGVsbG8=</pre>  the body in base64; absent = no body
 *
 * A reply that hands over (spec §11) also has, in the head, `<link rel="out-of-band" href="…">`
 * (the peer's address) and `<link rel="hand-over" href="data:,<token>">`: its two headers again,
 * where a page's links go.
 *
 * Attribute values are HTML-escaped (& < > " '); base64 needs no escaping. src/client/html.ts
 * reads it back (parseEnvelope).
 */
import type { ResponseFrame } from '../wire/index.ts';

export const HTML_TYPE = 'text/html; charset=utf-8';

/** True when an Accept header lists text/html (with a q-value above zero). */
export function wantsHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    if (type !== 'text/html') continue;
    const q = params.find((param) => param.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Reply headers that are links of the page too (spec §11: the hand-over). */
const LINKS = new Map<string, { rel: string; href: (value: string) => string }>([
  ['out-of-band', { rel: 'out-of-band', href: (value) => value }],
  ['hand-over', { rel: 'hand-over', href: (value) => `data:,${value}` }],
]);

export function renderEnvelope(frame: ResponseFrame): string {
  const lines = [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>rotor ${frame.status} ${escapeHtml(frame.reason)}</title>`,
    `<meta name="rotor-status" content="${frame.status}">`,
    `<meta name="rotor-reason" content="${escapeHtml(frame.reason)}">`,
  ];
  for (const [name, value] of frame.headers) {
    lines.push(`<meta name="rotor-header" content="${escapeHtml(`${name}: ${value}`)}">`);
    const link = LINKS.get(name.toLowerCase());
    if (link) lines.push(`<link rel="${link.rel}" href="${escapeHtml(link.href(value))}">`);
  }
  lines.push('</head>', '<body>');
  if (frame.body !== undefined) {
    lines.push(`<pre id="rotor-body" data-length="${frame.body.length}">${frame.body.toString('base64')}</pre>`);
  }
  lines.push('</body>', '</html>', '');
  return lines.join('\n');
}
