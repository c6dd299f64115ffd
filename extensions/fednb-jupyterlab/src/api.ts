/**
 * Talking to fednb's server extension (/fednb/api/...). The tokens stay on the server; the
 * browser only ever sees what the handlers return.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

let language = 'en';

/** Error messages come back in the lab's language. */
export function setApiLanguage(lang: string): void {
  language = lang;
}

export async function requestAPI<T>(
  path: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url =
    URLExt.join(settings.baseUrl, 'fednb', 'api', path) +
    `?lang=${encodeURIComponent(language)}`;
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(0, String(error));
  }
  let data: any = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message =
      data && typeof data.error === 'string'
        ? data.error
        : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data as T;
}

export function post<T>(path: string, body: unknown): Promise<T> {
  return requestAPI<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

export function seg(value: string): string {
  return encodeURIComponent(value);
}

// -- what the handlers return --------------------------------------------------------------

export interface IDomainRow {
  domain: string;
  url: string;
  up: boolean;
  version: string | null;
  isolation: string | null;
  analyst: string | null;
  problem: string;
}

export interface IDatasetRow {
  domain: string;
  name: string;
  rows: number;
  columns: string[];
  description: string;
}

export interface IPart {
  domain: string;
  id: string;
  status: string;
  reason: string | null;
  decided_at: number | null;
  finished_at: number | null;
}

export interface ISubmission {
  dataset: string;
  kind: string;
  name: string;
  description: string;
  code_hash: string;
  created_at: number;
  parts: IPart[];
}

export interface IRequestRow {
  domain: string;
  id: string;
  analyst: string;
  dataset: string;
  kind: string;
  name: string;
  description: string;
  status: string;
  reason: string | null;
  decided_by: string | null;
  created_at: number;
  decided_at: number | null;
  finished_at: number | null;
  code_hash: string;
}

export interface IResultRow {
  key: string;
  value: string;
}

export interface IResultTable {
  caption: string;
  headers: string[];
  rows: string[][];
  notes: string[];
}

export interface IDiffLine {
  op: '+' | '-' | ' ' | '@';
  text: string;
}

export interface IComparison {
  id: string;
  status: string;
  date: string;
  identical: boolean;
  diff: IDiffLine[];
}

export interface IRequestDetail extends IRequestRow {
  code: string | null;
  args: Record<string, unknown>;
  limits: Record<string, unknown>;
  result: IResultRow[];
  tables?: IResultTable[];
  disclosure: Record<string, unknown> | null;
  previous?: IComparison | null;
  /** custom code only: may this dataset release output the domain cannot check (null: unknown) */
  unchecked_output?: boolean | null;
}

export interface IOwnerDomain {
  domain: string | null;
  kind: string;
  location: string;
  problem: string;
}

export interface IMockRow {
  domain: string;
  dataset: string;
  tier: number;
  status: string;
  correlation_error?: number | null;
  pmse_ratio?: number | null;
  exact_match_rate?: number | null;
  closer_to_real?: number | null;
}

export interface IOwnerListing {
  domains: IOwnerDomain[];
  pending: IRequestRow[];
  recent: IRequestRow[];
  mocks?: IMockRow[];
}
