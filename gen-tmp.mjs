import { parquetWriteFile } from 'hyparquet-writer';
const [,, out, nStr, dStr, codec] = process.argv;
const n = +nStr, d = +dStr;
const emb = new Array(n);
let s = 1;
for (let i = 0; i < n; i++) { const r = new Array(d); let q = 0; for (let j = 0; j < d; j++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; r[j] = s / 2 ** 32 - 0.5; q += r[j] * r[j]; } q = Math.sqrt(q); for (let j = 0; j < d; j++) r[j] = Math.fround(r[j] / q); emb[i] = r; }
const ids = Array.from({ length: n }, (_, i) => `img_${i}.jpg`);
const quality = Float64Array.from({ length: n }, (_, i) => (i * 37 % 101) / 101);
const t = performance.now();
parquetWriteFile({ filename: out, codec: codec ?? 'SNAPPY', rowGroupSize: 10000, schema: [
 { name: 'root', num_children: 3 },
 { name: 'id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
 { name: 'embedding', repetition_type: 'REQUIRED', converted_type: 'LIST', num_children: 1 },
 { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
 { name: 'element', type: 'FLOAT', repetition_type: 'REQUIRED' },
 { name: 'quality_score', type: 'DOUBLE', repetition_type: 'REQUIRED' },
], columnData: [
  { name: 'id', data: ids },
  { name: 'embedding', data: emb },
  { name: 'quality_score', data: quality },
]});
console.log('wrote', out, performance.now() - t, 'ms');
