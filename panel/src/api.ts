/**
 * How the panel talks to its server: `/api/v1` and `/panel/session`, same origin, with
 * the session cookie. A 401 anywhere means the session is over (expired, signed out
 * elsewhere, token withdrawn): the app goes back to sign-in.
 */

export type Principal = { kind: 'tenant'; tenant: string } | { kind: 'admin' };

export interface SessionInfo {
  principal: Principal;
  csrf: string;
  expires: string;
  tenants: string[];
}

export const SIGNED_OUT_EVENT = 'logmeter:signed-out';
const CSRF_HEADER = 'x-logmeter-csrf';

export class ApiProblem extends Error {}

async function problem(res: Response): Promise<ApiProblem> {
  if (res.status === 401) window.dispatchEvent(new Event(SIGNED_OUT_EVENT));
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: unknown };
    if (typeof body.error === 'string') message = body.error;
  } catch {
    /* not JSON: the status says it */
  }
  return new ApiProblem(res.status === 401 ? 'Your session has ended: sign in again.' : message);
}

/** A query string from the set values only. */
export function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (!res.ok) throw await problem(res);
  return (await res.json()) as T;
}

export async function currentSession(): Promise<SessionInfo | null> {
  const res = await fetch('/panel/session', { credentials: 'same-origin' });
  if (res.status === 401) return null;
  if (!res.ok) throw await problem(res);
  return (await res.json()) as SessionInfo;
}

export async function signIn(token: string): Promise<void> {
  const res = await fetch('/panel/session', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', [CSRF_HEADER]: 'signin' },
    body: JSON.stringify({ token }),
  });
  if (res.status === 401) throw new ApiProblem('That token is not known here.');
  if (!res.ok) throw await problem(res);
}

export async function signOut(csrf: string): Promise<void> {
  const res = await fetch('/panel/session/end', { method: 'POST', credentials: 'same-origin', headers: { [CSRF_HEADER]: csrf } });
  if (!res.ok && res.status !== 401) throw await problem(res);
}

/** A report id (`tenant/label`) as path segments. */
export const idPath = (id: string): string => id.split('/').map(encodeURIComponent).join('/');

export const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
