#!/usr/bin/env node
/**
 * The `spofless` executable. The commands live in run.ts; this file wires them to the process: its
 * arguments, streams, environment, and SIGINT/SIGTERM (which end `up` and `watch` cleanly; a second
 * one exits at once).
 */
import { run } from './run.js';

const ac = new AbortController();
const onSignal = (signal: NodeJS.Signals): void => {
  if (ac.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143);
  ac.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const code = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: ac.signal });
process.exitCode = code;
// Let stdout drain and the process end by itself; should a stray handle hold it, end it anyway.
setTimeout(() => process.exit(code), 1_000).unref();
