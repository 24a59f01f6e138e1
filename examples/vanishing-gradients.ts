/**
 * The background text's central claim, shown: on the adding problem (T = 100), gradients that
 * travel back through a tanh RNN's W_hh vanish, while the LSTM's additive cell path and the
 * GRU's update gate keep them alive. Trains each cell briefly, then measures ||dL/dh_t|| for
 * every step with gradientFlow (the real backward pass) and draws the three curves on one
 * chart, plus the LSTM's forget-gate time constants.
 *
 *   npx tsx examples/vanishing-gradients.ts        (about two minutes on 2 cores)
 *
 * Writes docs/vanishing-gradients.svg and docs/forget-time-constants.svg.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Adam, SequenceModel, addingProblem, fit, forgetTimeChartSvg, gateStatistics, gradientFlow, gradientFlowChartSvg, seed,
} from '../lib/index';
import type { GradientFlow } from '../lib/index';

const EPOCHS = 15;

async function main(): Promise<void> {
  seed(7);
  const T = 100;
  const train = addingProblem({ samples: 4096, steps: T, seed: 1 });
  const probe = addingProblem({ samples: 64, steps: T }).inputs.transpose(0, 1); // [T, B, 2]
  const flows: { name: string; flow: GradientFlow }[] = [];
  let lstmStats = null;
  for (const cell of ['rnn', 'lstm', 'gru'] as const) {
    seed(1);
    const model = new SequenceModel({ cell, inputSize: 2, hiddenSize: 32, outputSize: 1, outputs: 'last' });
    if (cell === 'lstm') {
      // forget-gate bias 1 (both biases' f block: 0.5 each), the usual start for long lags
      for (const bias of [model.rnn.namedParameters().find(([n]) => n === 'bias_ih_l0')![1], model.rnn.namedParameters().find(([n]) => n === 'bias_hh_l0')![1]]) {
        const values = bias.toArray();
        values.fill(0.5, 32, 64);
        bias.storage.write(values, 0);
      }
    }
    const history = await fit(model, train, { epochs: EPOCHS, batchSize: 32, optimizer: new Adam(model.parameters(), { lr: 1e-2 }), clipGradNorm: 1, seed: 1 });
    const flow = gradientFlow(model.rnn, probe);
    const l = flow.layers[0];
    const name = cell === 'rnn' ? 'tanh RNN' : cell.toUpperCase();
    flows.push({ name, flow });
    console.log(`${name.padEnd(8)} train MSE ${history.loss[history.loss.length - 1].toFixed(4)}; ||dL/dh_0|| / ||dL/dh_99|| = ${l.ratio.toExponential(2)}; ` +
      `largest singular value of W_hh (per gate) ${l.largestSingularValue.map((s) => s.toFixed(2)).join(', ')}`);
    if (cell === 'lstm') lstmStats = gateStatistics(model.rnn, probe);
  }
  const out = path.join(__dirname, '..', 'docs');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'vanishing-gradients.svg'), await gradientFlowChartSvg(flows, { title: `Gradient flow on the adding problem (T = ${T}), after ${EPOCHS} epochs` }));
  fs.writeFileSync(path.join(out, 'forget-time-constants.svg'), await forgetTimeChartSvg(lstmStats!));
  const taus = [...lstmStats!.layers[0].forgetTimeConstants!].sort((a, b) => a - b);
  console.log(`LSTM forget gate: mean f ${lstmStats!.layers[0].gates.f.mean.toFixed(3)}, median tau ${taus[taus.length >> 1].toFixed(1)} steps, max ${taus[taus.length - 1].toFixed(1)}`);
  console.log('wrote docs/vanishing-gradients.svg and docs/forget-time-constants.svg');
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
