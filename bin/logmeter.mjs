#!/usr/bin/env node
// Entry point for `npx logmeter`: loads the TypeScript sources through tsx so the
// package runs from a plain `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
