// The first module of a part's worker thread (app/thread-host.ts): a worker does not
// inherit the main thread's tsx `register()` (bin/logmeter.mjs), so it registers tsx
// itself before loading the TypeScript entry.
import { register } from 'tsx/esm/api';

register();
await import('../app/thread-entry.ts');
