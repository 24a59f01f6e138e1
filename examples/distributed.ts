/**
 * Data-parallel training: the adding problem (T = 50) learned by an LSTM on N ranks, each
 * with its share of every epoch and the gradients averaged across them. Rank 0 reports.
 *
 *   npx recurrent launch -n 2 --require tsx/cjs examples/distributed.ts   (npm run demo:distributed)
 *   npx tsx examples/distributed.ts                                       (a world of one)
 */
import { Adam, LSTM, SequenceModel, addingProblem, backends, fit, initDistributed, initForgetGateBias, mseLoss, noGrad, seed } from '../lib/index';

async function main(): Promise<void> {
  const { rank, worldSize } = initDistributed();
  const log = (line: string) => rank === 0 && console.log(line);
  log(`${worldSize} rank(s) (${backends().distributed.engine ?? 'no MPI: a world of one'}), ${backends().cpu.threads} CPU thread(s) each`);
  const train = addingProblem({ samples: 4096, steps: 50, seed: 1 });
  const test = addingProblem({ samples: 1000, steps: 50, seed: 2 });
  seed(1 + rank); // different on every rank on purpose: fit starts every rank from rank 0's weights
  const model = new SequenceModel({ cell: 'lstm', inputSize: 2, hiddenSize: 32, outputSize: 1, outputs: 'last' });
  initForgetGateBias(model.rnn as LSTM);
  const started = performance.now();
  const controller = new AbortController();
  const history = await fit(model, train, {
    distributed: true, epochs: 10, batchSize: Math.ceil(32 / worldSize), // about the same global batch on any world size
    optimizer: new Adam(model.parameters(), { lr: 1e-2 }), clipGradNorm: 1, seed: 1, signal: controller.signal,
    validationData: { inputs: test.inputs.slice(0, 0, 500), targets: test.targets.slice(0, 0, 500) },
    onEpochEnd: ({ epoch, loss, valLoss }) => {
      log(`epoch ${epoch + 1}: train MSE ${loss.toFixed(4)}, validation MSE ${valLoss!.toFixed(4)} (every rank agrees), ${((performance.now() - started) / 1000).toFixed(1)} s`);
      if (valLoss! < 0.003) controller.abort(); // the same decision on every rank
    },
  });
  model.eval();
  const mse = noGrad(() => mseLoss(model.forward(test.inputs.transpose(0, 1)).output, test.targets).item());
  log(`${history.steps} steps of ${Math.ceil(32 / worldSize) * worldSize} samples in ${((performance.now() - started) / 1000).toFixed(1)} s; test MSE ${mse.toFixed(4)} (predicting the mean: 0.167)`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
