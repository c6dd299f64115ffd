/**
 * The panels' strings, from the same en/es table as the Python widgets (fednb/i18n.py), served
 * by the server extension in the lab's language.
 */
import { requestAPI, setApiLanguage } from './api';

let table: Record<string, string> = {};

/** 'es-ES', 'es_AR', 'es' -> 'es'; anything else -> 'en'. */
export function languageOf(code: string | undefined): string {
  return (code || 'en').slice(0, 2).toLowerCase() === 'es' ? 'es' : 'en';
}

export async function loadStrings(languageCode: string): Promise<string> {
  const lang = languageOf(languageCode);
  setApiLanguage(lang);
  const answer = await requestAPI<{
    language: string;
    strings: Record<string, string>;
  }>('strings');
  table = answer.strings;
  return answer.language;
}

/** The string `key` with its {fields} filled in (the key itself if the table lacks it). */
export function tr(key: string, fields: Record<string, unknown> = {}): string {
  const text = table[key] ?? key;
  return text.replace(/\{(\w+)(![rs])?\}/g, (whole, name: string) =>
    name in fields ? String(fields[name]) : whole
  );
}

/** A request state in words ("pending review", "denegada", ...). */
export function stateLabel(status: string): string {
  return table[`status.${status}`] ?? status;
}
