// The page's preprocess.js prepare() (resize shorter side, centre crop, normalise) on a 512x512 RGB crop,
// in node, two versions interleaved run by run so machine drift lands on both alike.
//   git show 76f656e:src/hypoderm/app/static/js/preprocess.js > /tmp/before.mjs
//   cp src/hypoderm/app/static/js/preprocess.js /tmp/after.mjs
//   node benchmarks/app/preprocess_bench.mjs /tmp/before.mjs /tmp/after.mjs
const [beforePath, afterPath] = process.argv.slice(2);
const versions = { before: await import(beforePath), after: await import(afterPath) };
const rgb = new Uint8ClampedArray(512 * 512 * 3).map(() => Math.random() * 255);
const RUNS = 200;
for (const [size, resize] of [[128, 146], [224, 256]]) {
  const input = { size, resize_size: resize, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const times = { before: [], after: [] };
  for (const m of Object.values(versions)) for (let i = 0; i < 20; i++) m.prepare(rgb, 512, 512, input);
  for (let i = 0; i < RUNS; i++) {
    for (const name of i % 2 ? ["after", "before"] : ["before", "after"]) {
      const t0 = performance.now();
      versions[name].prepare(rgb, 512, 512, input);
      times[name].push(performance.now() - t0);
    }
  }
  const med = (v) => +v.sort((a, b) => a - b)[v.length >> 1].toFixed(2);
  const p90 = (v) => +v.sort((a, b) => a - b)[Math.floor(v.length * 0.9)].toFixed(2);
  console.log(JSON.stringify({ crop: "512x512", size, resize, runs: RUNS, node: process.version,
    before_ms: { median: med(times.before), p90: p90(times.before) },
    after_ms: { median: med(times.after), p90: p90(times.after) } }));
}
