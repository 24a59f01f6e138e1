/**
 * One step of fit() and what it needs of the model: calling it with the carried recurrent
 * state, the loss of a batch, and evaluation over a whole dataset.
 */
import { noGrad } from '../core/autograd';
import { describe, formatShape, rangeError, typeError } from '../core/errors';
import { Batch, IGNORE, Plan, TargetSpec } from './batching';
import { allReduceNumbers } from '../distributed/distributed';
import type { FitOptions } from './options';
import { crossEntropyLoss, huberLoss, mseLoss } from '../nn/losses';
import { scope } from '../core/memory';
import { Module } from '../nn/module';
import { LSTM, isRecurrent } from '../nn/recurrent';
import { SequenceModel } from '../nn/sequence-model';
import { Seq2Seq } from '../nn/seq2seq';
import { runAsync } from '../core/stream';
import { Tensor } from '../core/tensor';

/** The recurrent state carried from one window of a stream to the next. */
export interface State {
  h: Tensor;
  c?: Tensor;
}

export function callModel(model: Module, batchInput: Tensor, state: State | null, lengths: number[] | null): { output: Tensor; state: State | null } {
  // batches are built in host memory; a model on 'cuda' gets its copy there (inside the step's
  // scope), except token ids, which the embedding reads on the host anyway
  const tokens = model instanceof SequenceModel && model.embedding !== null;
  const onDevice = tokens ? batchInput : batchInput.to(model.device);
  // batches are time-major; a batch-first model gets [B, T, ...] and its per-step output is
  // turned back to [T, B, ...] for the loss
  const batchFirst = model instanceof SequenceModel ? model.options.batchFirst : isRecurrent(model) && model.batchFirst;
  const input = batchFirst ? onDevice.transpose(0, 1) : onDevice;
  const timeMajor = (output: Tensor) => (batchFirst && output.shape.length === 3 ? output.transpose(0, 1) : output);
  if (isRecurrent(model)) {
    const r = model.forward(input, { h0: state?.h ?? null, ...(model instanceof LSTM && state?.c ? { c0: state.c } : {}), lengths });
    return { output: timeMajor(r.output), state: { h: r.h, ...('c' in r ? { c: (r as { c: Tensor }).c } : {}) } };
  }
  if (model instanceof SequenceModel) {
    const r = model.forward(input, { state, lengths });
    return { output: timeMajor(r.output), state: r.state };
  }
  const r = (model as unknown as { forward(x: Tensor, o: object): unknown }).forward(input, { state, lengths });
  if (r instanceof Tensor) return { output: r, state: null };
  const out = r as { output?: unknown; state?: State | null };
  if (!out || !(out.output instanceof Tensor)) throw typeError(`fit: the model returned ${describe(r)}; expected a Tensor or { output, state }`);
  return { output: out.output, state: out.state ?? null };
}

/**
 * The loss of a batch of source and target pairs: the model's own (Seq2Seq#loss). Returns null
 * for other batches.
 */
export function pairLoss(model: Module, batch: Batch): Tensor | null {
  if (!batch.pairs) return null;
  if (!(model instanceof Seq2Seq)) {
    throw typeError(`fit: { sources, targets } data trains a sequence-to-sequence model (Seq2Seq), not ${describe(model)}`);
  }
  return model.loss(batch.pairs.sources, batch.pairs.targets);
}

export function detachState(state: State | null): State | null {
  if (!state) return null;
  return { h: state.h.detach(), ...(state.c ? { c: state.c.detach() } : {}) };
}

export function computeLoss(loss: FitOptions['loss'], output: Tensor, batch: Batch): Tensor {
  if (typeof loss === 'function') {
    const target = batch.target instanceof Tensor ? batch.target.to(output.device) : Tensor.from(Float32Array.from(batch.target), [batch.target.length], { device: output.device });
    const value = loss(output, target, { lengths: batch.lengths });
    if (!(value instanceof Tensor) || value.size !== 1) throw typeError(`fit: the loss function must return a one-element Tensor but returned ${describe(value)}`);
    return value;
  }
  if (loss === 'crossEntropy') {
    if (!(batch.target instanceof Int32Array)) throw typeError('fit: crossEntropy needs integer class targets');
    return crossEntropyLoss(output, batch.target, { ignoreIndex: IGNORE });
  }
  const target = (batch.target as Tensor).to(output.device);
  if (output.shape.length !== target.shape.length || output.shape.some((s, i) => s !== target.shape[i])) {
    throw rangeError(`fit: the model's output has shape ${formatShape(output.shape)} but the targets of this batch have shape ${formatShape(target.shape)}`, 'ERR_SHAPE_MISMATCH');
  }
  if (batch.mask) {
    // padded steps contribute nothing; the mean is over valid elements only
    const diff = output.sub(target).mul(batch.mask.to(output.device));
    const count = batch.timesteps * (output.size / (output.shape[0] * output.shape[1]));
    const values = loss === 'huber' ? huberLoss(diff, Tensor.zeros(diff.shape, { device: diff.device }), { reduction: 'sum' }) : diff.square().sum();
    return values.mul(1 / count);
  }
  return loss === 'huber' ? huberLoss(output, target) : mseLoss(output, target);
}

/** Mean loss of `model` over a dataset, in evaluation mode, without gradients. */
export async function evaluate(model: Module, plan: Plan & { spec: TargetSpec }, loss: FitOptions['loss'], distributed = false): Promise<{ loss: number; accuracy: number | null }> {
  const wasTraining = model.training;
  model.eval();
  let sum = 0;
  let weight = 0;
  let correct = 0;
  let counted = 0;
  let carried: State | null = null;
  const order = plan.order(false);
  try {
    for (let i = 0; i < plan.batchesPerEpoch; ++i) {
      const batch = plan.batch(order, i);
      if (!batch.carry) carried = null;
      const previous = carried;
      const { value, output, state } = await runAsync(() =>
        noGrad(() => scope(() => {
          const pairs = pairLoss(model, batch);
          if (pairs) return { value: pairs, output: null, state: null };
          const result = callModel(model, batch.input, previous, batch.lengths);
          return { value: computeLoss(loss, result.output, batch), output: result.output, state: result.state };
        })),
      );
      carried = state;
      sum += value.item() * batch.weight;
      weight += batch.weight;
      if (output && batch.target instanceof Int32Array) {
        // accuracy: the arg-max class against the target, padded steps excluded
        const scores = output.toArray();
        const classes = output.shape[output.ndim - 1];
        batch.target.forEach((target, row) => {
          if (target === IGNORE) return;
          let best = 0;
          for (let k = 1; k < classes; ++k) if (scores[row * classes + k] > scores[row * classes + best]) best = k;
          correct += best === target ? 1 : 0;
          counted += 1;
        });
      }
    }
  } finally {
    model.train(wasTraining);
  }
  // data-parallel: each rank evaluated its share; the totals are the whole set's
  if (distributed) [sum, weight, correct, counted] = allReduceNumbers([sum, weight, correct, counted]);
  return { loss: sum / Math.max(weight, 1e-12), accuracy: counted > 0 ? correct / counted : null };
}
