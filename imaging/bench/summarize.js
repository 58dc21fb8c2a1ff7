// Summary of imaging/bench/run.sh: ours (imaging-bench JSON lines) next to sharp (bench.js
// table), one line per op. Median of the per-round medians on each side; ratio = ours / sharp.
// usage: node summarize.js OURS.jsonl SHARP.txt
const fs = require('fs');

const [oursPath, sharpPath] = process.argv.slice(2);
const ours = {};
for (const line of fs.readFileSync(oursPath, 'utf8').split('\n')) {
  if (!line.startsWith('{')) continue;
  const r = JSON.parse(line);
  (ours[r.op] ??= []).push(r);
}
const sharp = {};
let sharpVersion = '';
for (const line of fs.readFileSync(sharpPath, 'utf8').split('\n')) {
  if (line.startsWith('# sharp')) sharpVersion = line.split(' ').slice(1, 5).join(' ');
  const f = line.trim().split(/\s+/);
  // op med_ms p10 p90 min cpu_ms out_bytes
  if (f.length === 7 && !line.startsWith('op') && !line.startsWith('#')) {
    (sharp[f[0]] ??= []).push({ median_ms: +f[1], out_bytes: +f[6] });
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const goals = { ratio: 0.80, size: 0.01, peakMb: 64 };
const pad = (s, n) => String(s).padStart(n);
console.log(`# ours: lumi-imaging; sharp: ${sharpVersion}`);
console.log(
  ['op'.padEnd(16), pad('ours_ms', 8), pad('sharp_ms', 9), pad('ratio', 6), pad('ours_B', 8),
    pad('sharp_B', 8), pad('size', 7), pad('peak_MB', 8), '  goals (ratio<=0.80, size+-1%, peak<=64MB)'].join(' '));
let allMet = true;
for (const op of Object.keys(ours)) {
  const o = ours[op];
  const s = sharp[op];
  const oMs = median(o.map((r) => r.median_ms));
  const oBytes = o[o.length - 1].out_bytes;
  const peak = Math.max(...o.map((r) => r.peak_mb ?? NaN));
  if (!s) {
    console.log(`${op.padEnd(16)} ${pad(oMs.toFixed(2), 8)}   (no sharp figure)`);
    allMet = false;
    continue;
  }
  const sMs = median(s.map((r) => r.median_ms));
  const sBytes = s[s.length - 1].out_bytes;
  const ratio = oMs / sMs;
  const size = oBytes / sBytes - 1;
  const met = [ratio <= goals.ratio, Math.abs(size) <= goals.size, peak <= goals.peakMb];
  allMet &&= met.every(Boolean);
  console.log([
    op.padEnd(16), pad(oMs.toFixed(2), 8), pad(sMs.toFixed(2), 9), pad(ratio.toFixed(3), 6),
    pad(oBytes, 8), pad(sBytes, 8), pad(`${size >= 0 ? '+' : ''}${(size * 100).toFixed(2)}%`, 7),
    pad(peak.toFixed(1), 8), '  ' + met.map((m) => (m ? 'ok' : 'MISSED')).join(' '),
  ].join(' '));
}
console.log(allMet ? '# every goal met' : '# some goal missed');
