/**
 * The adding problem at T = 100 (two marked numbers in a sequence of 100 steps; the
 * target is their sum). Predicting the mean gives an MSE of about 0.167. The gated
 * cells must learn it to a test MSE below 0.01; the tanh RNN is reported beside them.
 */
import { expect } from 'chai';
import { Adam, LSTM, SequenceModel, addingProblem, fit, initForgetGateBias, mseLoss, noGrad, seed } from '../lib/index';
import type { CellType } from '../lib/index';

const T = 100;
const train = addingProblem({ samples: 4096, steps: T, seed: 1 });
const test = addingProblem({ samples: 1000, steps: T, seed: 2 });
const results: Record<string, { testMse: number; epochs: number; seconds: number }> = {};

function testMse(model: SequenceModel): number {
  return noGrad(() => mseLoss(model.forward(test.inputs.transpose(0, 1)).output, test.targets).item());
}

async function solve(cell: CellType, maxEpochs: number, stopBelow: number): Promise<{ testMse: number; untrained: number }> {
  seed(1);
  const model = new SequenceModel({ cell, inputSize: 2, hiddenSize: 32, outputSize: 1, outputs: 'last' });
  if (cell === 'lstm') initForgetGateBias(model.rnn as LSTM); // forget-gate bias 1: the usual start for long lags
  const untrained = testMse(model);
  const controller = new AbortController();
  const started = performance.now();
  const history = await fit(model, train, {
    epochs: maxEpochs, batchSize: 32, optimizer: new Adam(model.parameters(), { lr: 1e-2 }), clipGradNorm: 1, seed: 1,
    validationData: { inputs: test.inputs.slice(0, 0, 250), targets: test.targets.slice(0, 0, 250) },
    onEpochEnd: ({ valLoss }) => { if (valLoss! < stopBelow) controller.abort(); },
    signal: controller.signal,
  });
  model.eval();
  const mse = testMse(model);
  results[cell] = { testMse: mse, epochs: history.epochs, seconds: (performance.now() - started) / 1000 };
  return { testMse: mse, untrained };
}

describe('the adding problem, T = 100', function () {
  this.timeout(300_000);

  after(() => {
    console.log('      cell      test MSE   epochs   seconds   (predicting the mean: 0.167)');
    for (const [cell, r] of Object.entries(results)) {
      console.log(`      ${cell.padEnd(9)} ${r.testMse.toFixed(4).padStart(8)}   ${String(r.epochs).padStart(6)}   ${r.seconds.toFixed(1).padStart(7)}`);
    }
  });

  it('GRU learns it: test MSE < 0.01', async () => {
    expect((await solve('gru', 12, 0.003)).testMse).to.be.below(0.01);
  });

  it('LSTM learns it: test MSE < 0.01', async () => {
    expect((await solve('lstm', 30, 0.003)).testMse).to.be.below(0.01);
  });

  it('tanh RNN: in as many epochs as the GRU needs, it learns the mean and stalls there (the vanishing gradient)', async () => {
    const { testMse: mse, untrained } = await solve('rnn', 3, 0);
    expect(mse, 'trained towards the mean').to.be.below(Math.min(untrained, 0.25));
    expect(mse, 'not past the mean: the signal 100 steps back does not reach it').to.be.above(0.12);
  });
});
