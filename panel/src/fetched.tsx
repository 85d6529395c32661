/**
 * A GET of the API as a component's state, and the states every view shows before its
 * data: an error (as text, announced) or "Loading…".
 */
import { useEffect, useState } from 'preact/hooks';
import { errorText, getJson } from './api.js';

/** The answer of `GET url` (undefined while it loads), or the error's text; fetched again when `url` changes. */
export function useFetched<T>(url: string): { value: T | undefined; error: string | undefined } {
  const [value, setValue] = useState<T | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    getJson<T>(url).then(setValue, (err: unknown) => setError(errorText(err)));
  }, [url]);
  return { value, error };
}

/** What to show instead of the data while it is not there: the error, or "Loading…"; undefined once loaded. */
export function pending(error: string | undefined, loaded: boolean) {
  if (error)
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  return loaded ? undefined : <p class="loading">Loading…</p>;
}
