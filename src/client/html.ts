/**
 * Reads a rotor response back out of the HTML envelope (see src/transport/html.ts for the
 * format). Tolerant of what a filter may do to a page on the way — other tags and scripts
 * around it, attributes in another order or quoting, whitespace inside the base64 — and strict
 * about what rotor put there: a missing status, a malformed header or a body whose length does
 * not match is an error, never a guess.
 */
import type { Header, ResponseFrame } from '../wire/index.ts';

export class EnvelopeError extends Error {
  override name = 'EnvelopeError';
}

const TAG = /<(meta|pre)\b((?:[^>"']|"[^"]*"|'[^']*')*)>/gi;
const ATTRIBUTE = /([A-Za-z_:][-A-Za-z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;

export function parseEnvelope(html: string): ResponseFrame {
  let status: number | undefined;
  let reason = '';
  const headers: Header[] = [];
  let body: Buffer | undefined;
  for (const match of html.matchAll(TAG)) {
    const tag = match[1].toLowerCase();
    const attributes = parseAttributes(match[2]);
    if (tag === 'meta') {
      const name = attributes.get('name')?.toLowerCase();
      const content = attributes.get('content');
      if (name === undefined || content === undefined) continue;
      if (name === 'rotor-status') {
        if (!/^[1-5][0-9][0-9]$/.test(content)) throw new EnvelopeError(`bad rotor-status ${JSON.stringify(content)}`);
        status = Number(content);
      } else if (name === 'rotor-reason') {
        reason = content;
      } else if (name === 'rotor-header') {
        const colon = content.indexOf(':');
        if (colon <= 0) throw new EnvelopeError(`bad rotor-header ${JSON.stringify(content)}`);
        // Only blanks, as the frame parser trims: a value may end in any other (Unicode) space.
        headers.push([content.slice(0, colon), content.slice(colon + 1).replace(/^[ \t]+/, '')]);
      }
    } else if (attributes.get('id') === 'rotor-body') {
      const start = match.index! + match[0].length;
      const end = html.indexOf('</pre>', start);
      if (end === -1) throw new EnvelopeError('rotor-body is not closed');
      const text = html.slice(start, end).replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new EnvelopeError('rotor-body is not base64');
      body = Buffer.from(text, 'base64');
      const length = attributes.get('data-length');
      if (length !== undefined && Number(length) !== body.length) throw new EnvelopeError('rotor-body length does not match data-length');
    }
  }
  if (status === undefined) throw new EnvelopeError('not a rotor envelope: no rotor-status');
  return { kind: 'response', status, reason, headers, body };
}

function parseAttributes(text: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const match of text.matchAll(ATTRIBUTE)) {
    const name = match[1].toLowerCase();
    if (!attributes.has(name)) attributes.set(name, decodeEntities(match[2] ?? match[3] ?? match[4] ?? ''));
  }
  return attributes;
}

const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

function decodeEntities(text: string): string {
  return text.replace(/&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z]+);/g, (whole, entity: string) => {
    if (entity[0] !== '#') return NAMED[entity.toLowerCase()] ?? whole;
    const code = entity[1] === 'x' || entity[1] === 'X' ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10);
    return code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}
