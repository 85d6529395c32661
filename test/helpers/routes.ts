/** Shared by the routes tests that start HAProxy. */

/** A TCP port free on 127.0.0.1 right now (HAProxy's frontend binds it next). */
export { freePort } from './env.js';
