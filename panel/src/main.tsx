/**
 * The panel's shell: sign-in, the session, the tenant picker of the operator, and the
 * pages (hash routes: #/logs, #/apps, #/usage, #/bills). Every text from the server reaches the
 * page as a Preact text child, never as markup.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { SIGNED_OUT_EVENT, currentSession, errorText, signIn, signOut, type SessionInfo } from './api.js';
import { LogsPage } from './logs.js';
import { UsagePage } from './usage.js';
import { BillsPage } from './bills.js';
import { AppsPage } from './apps.js';

const PAGES = { logs: 'Logs', apps: 'Apps', usage: 'Usage', bills: 'Bills' } as const;
type Page = keyof typeof PAGES;

const pageOf = (hash: string): Page => {
  const p = hash.replace(/^#\/?/, '').split('?')[0];
  return p === 'apps' || p === 'usage' || p === 'bills' ? p : 'logs';
};

function SignIn(props: { onSignedIn: () => void; notice: string | undefined }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await signIn(token.trim());
      setToken('');
      props.onSignedIn();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={(e) => void submit(e)} aria-label="Sign in">
        <h1>logmeter</h1>
        {props.notice && <p class="notice">{props.notice}</p>}
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <button type="submit" disabled={busy || token.trim() === ''}>{busy ? 'Signing in…' : 'Sign in'}</button>
        {error && <p class="error" role="alert">{error}</p>}
        <p class="hint">Your tenant token, or the operator token to look at any tenant.</p>
      </form>
    </main>
  );
}

function App() {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>();
  const [page, setPage] = useState<Page>(pageOf(location.hash));
  const [tenant, setTenant] = useState<string | undefined>();
  const [error, setError] = useState<string | undefined>();

  const load = () =>
    currentSession().then(
      (s) => {
        setSession(s);
        if (s) setTenant(s.principal.kind === 'tenant' ? s.principal.tenant : s.tenants[0]);
      },
      (err: unknown) => setError(errorText(err)),
    );

  useEffect(() => {
    void load();
    const onHash = () => setPage(pageOf(location.hash));
    const onSignedOut = () => {
      setSession((s) => {
        if (s) setNotice('Your session has ended: sign in again.');
        return null;
      });
    };
    window.addEventListener('hashchange', onHash);
    window.addEventListener(SIGNED_OUT_EVENT, onSignedOut);
    return () => {
      window.removeEventListener('hashchange', onHash);
      window.removeEventListener(SIGNED_OUT_EVENT, onSignedOut);
    };
  }, []);

  if (error) return <p class="error page-error" role="alert">{error}</p>;
  if (session === undefined) return <p class="loading">Loading…</p>;
  if (session === null)
    return (
      <SignIn
        notice={notice}
        onSignedIn={() => {
          setNotice(undefined);
          void load();
        }}
      />
    );

  const isAdmin = session.principal.kind === 'admin';
  const who = session.principal.kind === 'tenant' ? session.principal.tenant : 'operator';
  return (
    <div class="shell">
      <header>
        <span class="brand">logmeter</span>
        <nav aria-label="Pages">
          {(Object.keys(PAGES) as Page[]).map((p) => (
            <a href={`#/${p}`} aria-current={p === page ? 'page' : undefined}>
              {PAGES[p]}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        {isAdmin && (
          <label class="picker">
            Tenant{' '}
            <select value={tenant ?? ''} onChange={(e) => setTenant(e.currentTarget.value)}>
              {session.tenants.map((t) => (
                <option value={t}>{t}</option>
              ))}
            </select>
          </label>
        )}
        <span class="who" title={`session until ${session.expires}`}>
          {who}
        </span>
        <button
          type="button"
          class="secondary"
          onClick={() =>
            void signOut(session.csrf).then(
              () => setSession(null),
              (err: unknown) => setError(errorText(err)),
            )
          }
        >
          Sign out
        </button>
      </header>
      <main>
        {page === 'logs' && <LogsPage tenant={isAdmin ? tenant : undefined} key={`logs-${tenant ?? ''}`} />}
        {page === 'apps' && <AppsPage tenant={isAdmin ? tenant : undefined} key={`apps-${tenant ?? ''}`} />}
        {page === 'usage' && <UsagePage tenant={isAdmin ? tenant : undefined} key={`usage-${tenant ?? ''}`} />}
        {page === 'bills' && <BillsPage tenant={isAdmin ? tenant : undefined} key={`bills-${tenant ?? ''}`} />}
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
