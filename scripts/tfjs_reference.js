#!/usr/bin/env node
// Run a TF.js graph model with the real TF.js runtime (tfjs-core + tfjs-converter + the pure-JS
// CPU backend, no native TensorFlow) and dump its outputs, as the reference for our ONNX
// conversion. Driven by scripts/make_tfjs_reference.py, which prepares the input and packs the
// outputs; see there for the full command.
//
// usage: NODE_PATH=<dir>/node_modules node tfjs_reference.js MODEL_JSON INPUT_F32 SHAPE OUT_DIR
//   INPUT_F32: raw little-endian float32 input tensor; SHAPE: comma-separated dims.
//   Writes OUT_DIR/<i>.f32 per signature output and OUT_DIR/outputs.json (names, shapes).
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const tfc = require('@tensorflow/tfjs-converter');

async function main() {
  const [modelJson, inputPath, shapeArg, outDir] = process.argv.slice(2);
  if (!outDir) throw new Error('usage: tfjs_reference.js MODEL_JSON INPUT_F32 SHAPE OUT_DIR');
  await tf.setBackend('cpu');
  const doc = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  // Load from memory: the file:// loader needs tfjs-node, which we do not want.
  const shards = doc.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(path.dirname(modelJson), p))));
  const bin = Buffer.concat(shards);
  const model = await tfc.loadGraphModel(tf.io.fromMemory({
    modelTopology: doc.modelTopology,
    weightSpecs: doc.weightsManifest.flatMap((g) => g.weights),
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    format: doc.format,
    signature: doc.signature,
  }));
  const shape = shapeArg.split(',').map(Number);
  const raw = fs.readFileSync(inputPath);
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const input = tf.tensor(data, shape, 'float32');
  const names = model.outputNodes;
  const outs = await model.executeAsync(input, names);
  const list = Array.isArray(outs) ? outs : [outs];
  fs.mkdirSync(outDir, { recursive: true });
  const meta = [];
  for (let i = 0; i < list.length; i++) {
    const values = await list[i].data();
    fs.writeFileSync(path.join(outDir, `${i}.f32`), Buffer.from(new Float32Array(values).buffer));
    meta.push({ name: names[i], shape: list[i].shape, dtype: list[i].dtype });
  }
  fs.writeFileSync(path.join(outDir, 'outputs.json'), JSON.stringify({
    tfjs_version: tf.version_core, backend: tf.getBackend(), outputs: meta,
  }, null, 1));
}

main().catch((err) => { console.error(err); process.exit(1); });
