#!/usr/bin/env node
// Merges several results files of one benchmark into one: every metric is the median of the runs,
// and each run is listed (its date, load, commit and metrics), so a noisy machine's spread is on record.
//
//   node bench/merge-runs.mjs <out.json> <run1.json> <run2.json> ... [--note "text"] [--keys a,b,c]
//
// --keys: the metrics listed per run (default: all). Everything else (node, machine, settings, ...)
// comes from the last run; `load` spans the runs (lowest start, highest end). A metric missing from a
// run, or not a number in one, is an error: runs of different code or settings are not merged.
import { readFileSync, writeFileSync } from 'node:fs';

const args = process.argv.slice(2);
let note;
let keys;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--note') note = args[++i];
  else if (args[i] === '--keys') keys = args[++i]?.split(',');
  else files.push(args[i]);
}
const [out, ...inputs] = files;
if (out === undefined || inputs.length < 2) {
  console.error('usage: node bench/merge-runs.mjs <out.json> <run1.json> <run2.json> ... [--note "text"] [--keys a,b,c]');
  process.exit(2);
}
const runs = inputs.map((f) => {
  const r = JSON.parse(readFileSync(f, 'utf8'));
  if (typeof r.metrics !== 'object' || r.metrics === null) throw new Error(`${f}: no "metrics" object`);
  return r;
});
const names = Object.keys(runs[0].metrics);
for (const [i, r] of runs.entries()) {
  const these = Object.keys(r.metrics);
  const diff = names.filter((n) => !these.includes(n)).concat(these.filter((n) => !names.includes(n)));
  if (diff.length > 0) throw new Error(`${inputs[i]}: metrics differ from ${inputs[0]}'s: ${diff.join(', ')}`);
  for (const n of these) if (typeof r.metrics[n] !== 'number') throw new Error(`${inputs[i]}: metric ${n} is not a number`);
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x) => (Number.isInteger(x) ? x : Math.round(x * 1000) / 1000);
const metrics = Object.fromEntries(names.map((n) => [n, round(median(runs.map((r) => r.metrics[n])))]));
const last = runs.at(-1);
const loads = runs.map((r) => r.load).filter((l) => typeof l === 'object' && l !== null);
const merged = {
  ...last,
  ...(loads.length > 0 ? { load: { start: Math.min(...loads.map((l) => l.start)), end: Math.max(...loads.map((l) => l.end)) } } : {}),
  metrics,
  runs: runs.map((r) => ({
    date: r.date,
    load: r.load,
    source: r.source?.commit,
    ...Object.fromEntries((keys ?? names).map((k) => [k, r.metrics[k]])),
  })),
  note: note ?? `metrics are per-metric medians of the ${runs.length} runs listed in runs`,
};
writeFileSync(out, `${JSON.stringify(merged, null, 2)}\n`);
console.log(`${out}: medians of ${runs.length} runs`);
for (const k of keys ?? names) console.log(`  ${k}: ${metrics[k]}  (${runs.map((r) => r.metrics[k]).join(', ')})`);
