/** Defining templates and issuing lots (`rotor template …`, `rotor lot …`): records checked once, from an operator's options. */
import type { RandomSource } from '../session/random.ts';
import type { Store } from '../store/types.ts';
import { codeId, newCode } from './codes.ts';
import { NO_USE } from './machine.ts';
import type { CodeRecord, LotRecord, TemplateRecord } from './types.ts';

export const RECORD_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
export const MAX_LOT = 100_000;

const BYTE_UNITS: ReadonlyMap<string, number> = new Map(Object.entries({ '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 }));

/**
 * A byte size for people: a whole number of bytes (`1500`), or of kB, MB, GB, TB (powers of
 * 1000) or KiB, MiB, GiB, TiB (powers of 1024), unit in any case (`2GB`, `500 MB`, `10kB`).
 * Whole numbers only, as durations are; throws a message that says what is wrong.
 */
export function parseBytes(text: string): number {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match ? BYTE_UNITS.get(match[2].toLowerCase()) : undefined;
  if (!match || unit === undefined) throw new Error(`bad byte size ${JSON.stringify(text)}: want e.g. 10kB, 500MB, 2GB or a number of bytes`);
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw new Error(`byte size ${JSON.stringify(text)} is too large`);
  return bytes;
}

export interface TemplateOptions {
  maxBytesIn?: number | undefined;
  maxBytesOut?: number | undefined;
  maxBytesTotal?: number | undefined;
  connectionMs?: number | undefined;
  usageMs?: number | undefined;
  wallMs?: number | undefined;
  ageMs?: number | undefined;
  reusable?: boolean | undefined;
  nodes?: readonly string[] | undefined;
}

/** A template from an operator's options; throws a message that says what is wrong. */
export function templateRecord(name: string, options: TemplateOptions, now: number): TemplateRecord {
  if (!RECORD_NAME.test(name)) throw new Error(`a template name is 1–64 of A–Z a–z 0–9 _ . - (got ${JSON.stringify(name)})`);
  const cap = (what: string, value: number | undefined): number | null => {
    if (value === undefined) return null;
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${what} must be a whole number of at least 1, got ${value}`);
    return value;
  };
  for (const node of options.nodes ?? []) if (!RECORD_NAME.test(node)) throw new Error(`a node name is 1–64 of A–Z a–z 0–9 _ . - (got ${JSON.stringify(node)})`);
  return {
    name,
    maxBytesIn: cap('--max-in', options.maxBytesIn),
    maxBytesOut: cap('--max-out', options.maxBytesOut),
    maxBytesTotal: cap('--max-total', options.maxBytesTotal),
    connectionMs: cap('--connection', options.connectionMs),
    usageMs: cap('--usage', options.usageMs),
    wallMs: cap('--wall', options.wallMs),
    ageMs: cap('--age', options.ageMs),
    reusable: options.reusable ?? true,
    nodes: [...new Set(options.nodes ?? [])],
    createdAt: now,
  };
}

/** A code as issued: unused, nothing spent, no connection yet. */
export function freshCode(made: Pick<CodeRecord, 'id' | 'lot' | 'template' | 'issuer' | 'owner' | 'issuedAt'>): CodeRecord {
  return { ...made, status: 'unused', firstUsedAt: null, used: NO_USE, session: null, connections: 0, lastEnd: null };
}

export interface IssuedLot {
  lot: LotRecord;
  /** The codes themselves, in the lot's order: shown once, never stored. */
  codes: string[];
}

export interface LotOptions {
  id: string;
  template: TemplateRecord;
  count: number;
  comment: string;
  issuer: string;
  owner: string;
  now: number;
}

/** Make a lot of fresh codes and store it: the codes first (all or none), then the lot. */
export async function issueLot(store: Store, random: RandomSource, options: LotOptions): Promise<IssuedLot> {
  const { id, template, count, now } = options;
  if (!RECORD_NAME.test(id)) throw new Error(`a lot id is 1–64 of A–Z a–z 0–9 _ . - (got ${JSON.stringify(id)})`);
  if (!Number.isInteger(count) || count < 1 || count > MAX_LOT) throw new Error(`--count must be a whole number from 1 to ${MAX_LOT}, got ${count}`);
  if (await store.loadRecord('lot', id)) throw new Error(`lot ${id} exists`);
  const codes = Array.from({ length: count }, () => newCode(random));
  const records = codes.map((code) => {
    const record = freshCode({ id: codeId(code.replace(/-/g, '')), lot: id, template: template.name, issuer: options.issuer, owner: options.owner, issuedAt: now });
    return { id: record.id, value: record };
  });
  // 80 random bits each: a repeat means a broken random source, and createRecords refuses it.
  if (!(await store.createRecords('code', records))) throw new Error('a code of this lot already exists: the random source repeats');
  const lot: LotRecord = { id, template: template.name, comment: options.comment, issuer: options.issuer, issuedAt: now, codes: records.map((r) => r.id), revokedAt: null };
  if (!(await store.commitRecord('lot', id, lot, 0))) throw new Error(`lot ${id} exists`);
  return { lot, codes };
}

/** One CSV line per code for printing cards: lot, code, template, comment. */
export function lotCsv(issued: IssuedLot): string {
  const field = (value: string) => (/[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);
  const lines = ['lot,code,template,comment'];
  for (const code of issued.codes) lines.push([issued.lot.id, code, issued.lot.template, issued.lot.comment].map(field).join(','));
  return `${lines.join('\n')}\n`;
}

/** One line per template for `rotor template list`. */
export function describeTemplate(template: TemplateRecord): string {
  const parts: string[] = [];
  const bytes = (what: string, value: number | null) => value !== null && parts.push(`${what} ${value} B`);
  const time = (what: string, value: number | null) => value !== null && parts.push(`${what} ${value / 1000} s`);
  bytes('in', template.maxBytesIn);
  bytes('out', template.maxBytesOut);
  bytes('total', template.maxBytesTotal);
  time('connection', template.connectionMs);
  time('usage', template.usageMs);
  time('wall', template.wallMs);
  time('age', template.ageMs);
  parts.push(template.reusable ? 'reusable' : 'single connection');
  if (template.nodes.length > 0) parts.push(`nodes ${template.nodes.join(' ')}`);
  return `${template.name}: ${parts.join(', ')}`;
}
