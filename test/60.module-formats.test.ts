/**
 * The package imports by name from ESM and CommonJS through package.json's exports
 * (the built JavaScript in dist/, which `npm install` produces).
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

const root = path.join(__dirname, '..');
const script = (load: string) => `${load}
const lstm = new LSTM({ inputSize: 2, hiddenSize: 3, numLayers: 2, bidirectional: true });
const x = Tensor.randn([4, 2, 2], { requiresGrad: true });
const { output, h, c } = lstm.forward(x, { lengths: [4, 2] });
backward([output, h, c], [Tensor.ones(output.shape), Tensor.ones(h.shape), Tensor.ones(c.shape)]);
console.log(JSON.stringify([output.shape, h.shape, x.grad.shape]));`;

describe('package entry points', () => {
  it('import ... from "recurrent" (ESM)', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script("import { Tensor, LSTM, backward } from 'recurrent';")], { cwd: root });
    expect(JSON.parse(out.toString())).to.deep.equal([[4, 2, 6], [4, 2, 3], [4, 2, 2]]);
  });

  it('require("recurrent") (CommonJS)', () => {
    const out = execFileSync(process.execPath, ['-e', script("const { Tensor, LSTM, backward } = require('recurrent');")], { cwd: root });
    expect(JSON.parse(out.toString())).to.deep.equal([[4, 2, 6], [4, 2, 3], [4, 2, 2]]);
  });
});
