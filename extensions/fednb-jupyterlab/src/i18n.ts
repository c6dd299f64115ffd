/**
 * The panels' strings through JupyterLab's own translation system: `trans._p(key, english)` on the
 * `fednb_jupyterlab` bundle, so the lab's language (Settings → Language) decides, as for its menus.
 * The English texts (the msgids) come from the one en/es table, fednb/i18n.py, served by the server
 * extension; the Spanish bundle is fednb/locale/es_ES/LC_MESSAGES/fednb_jupyterlab.json, which
 * jupyterlab_server serves with the installed language pack (entry point `jupyterlab.locale`).
 */
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';

import { requestAPI, setApiLanguage } from './api';

export const DOMAIN = 'fednb_jupyterlab';

let english: Record<string, string> = {};
let trans: TranslationBundle = nullTranslator.load(DOMAIN);

/** 'es-ES', 'es_AR', 'es' -> 'es'; anything else -> 'en'. */
export function languageOf(code: string | undefined): string {
  return (code || 'en').slice(0, 2).toLowerCase() === 'es' ? 'es' : 'en';
}

/** Load the English msgids and the lab's bundle; returns the language the panels speak. */
export async function loadStrings(translator: ITranslator): Promise<string> {
  setApiLanguage('en');
  const answer = await requestAPI<{
    language: string;
    strings: Record<string, string>;
  }>('strings');
  english = answer.strings;
  trans = translator.load(DOMAIN);
  const lang = languageOf(translator.languageCode);
  setApiLanguage(lang); // the server extension's own errors, in the lab's language
  return lang;
}

/** The string `key` in the lab's language with its {fields} filled in (the key if unknown). */
export function tr(key: string, fields: Record<string, unknown> = {}): string {
  const msgid = english[key];
  const text = msgid === undefined ? key : trans._p(key, msgid);
  return text.replace(/\{(\w+)(![rs])?\}/g, (whole, name: string) =>
    name in fields ? String(fields[name]) : whole
  );
}

/** A request state in words ("pending review", "denegada", ...). */
export function stateLabel(status: string): string {
  return `status.${status}` in english ? tr(`status.${status}`) : status;
}

/** A column kind or isolation level in words ("categórica", "fuerte"); unknown ones as they are. */
export function label(
  group: 'kind' | 'isolation',
  value: string | undefined | null
): string {
  const key = `${group}.${value ?? ''}`;
  return key in english ? tr(key) : (value ?? '');
}
