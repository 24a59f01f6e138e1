/**
 * recurrent: RNN, LSTM and GRU for Node.js at native speed, with PyTorch's names,
 * shapes and equations.
 */
export { Tensor, numel, scope, keep } from './tensor';
export type { Device, TensorOptions, TensorData } from './tensor';
export { backward, noGrad, isGradEnabled, GradNode } from './autograd';
export type { BackwardOptions } from './autograd';
export { manualSeed, getRngState, setRngState, Generator } from './random';
export type { RngState } from './random';
export { linear, dropout, embedding } from './functional';
export { Module } from './nn/module';
export type { StateDict } from './nn/module';
export { Linear, Embedding, Dropout, Sequential } from './nn/layers';
export type { LinearOptions, EmbeddingOptions } from './nn/layers';
export { RNN, LSTM, GRU } from './nn/recurrent';
export { initForgetGateBias } from './nn/init';
export type { RecurrentOptions, RNNOptions, ForwardOptions, RecurrentOutput, LSTMOutput } from './nn/recurrent';
export type { CodedError, ErrorCode } from './errors';

import { native } from './native';
import { expectInteger } from './errors';

/**
 * Threads the CPU kernels split large GEMMs across (default: the machine's cores, or
 * RECURRENT_NUM_THREADS). Results are identical for any count.
 */
export function setNumThreads(threads: number): void {
  native.setNumThreads(expectInteger(threads, 'threads', 1, 256));
}

/** Bytes of freed tensor memory kept for reuse (and, once tensors were put on 'cuda', the GPU's: in use and cached). */
export function memoryStats(): ReturnType<typeof native.memoryStats> {
  return native.memoryStats();
}

/** Returns cached tensor memory to the system; resolves nothing, returns the bytes released. */
export function emptyCache(): number {
  return native.emptyCache();
}

/** What this build can run on: CPU details, and whether CUDA is compiled in and usable. */
export function backends(): ReturnType<typeof native.backends> {
  return native.backends();
}
export { runAsync, synchronize } from './stream';
export { crossEntropyLoss, mseLoss, huberLoss } from './losses';
export type { Reduction } from './losses';
export { Optimizer, SGD, Adam, AdamW, RMSprop, clipGradNorm, clipGradValue, LRScheduler, StepLR, CosineAnnealingLR, LinearLR } from './optim';
export type { OptimizerState, SGDOptions, AdamOptions, RMSpropOptions } from './optim';
export { saveSafetensors, loadSafetensors, serializeSafetensors, parseSafetensors } from './safetensors';
export type { SafetensorsContent } from './safetensors';
export { save, load, loadModel, registerModule, saveCheckpoint, loadCheckpoint } from './serialize';
export type { ModelSpec, CheckpointContent } from './serialize';
export { SequenceModel } from './nn/sequence-model';
export type { SequenceModelOptions, RecurrentState, CellType } from './nn/sequence-model';
export { fit } from './fit';
export type { FitData, FitOptions, History, Progress, EpochInfo, LossFn, LossContext } from './fit';
export { manualSeed as seed } from './random';
export { addingProblem } from './datasets';
export { CharTokenizer, WordTokenizer, CharLanguageModel, sampleLogits, tokenizerFromJSON } from './text';
export type { Tokenizer, CharModelOptions, CharTrainOptions } from './text';
export { lineChartSvg, lossChartSvg } from './chart';
export type { Series } from './chart';
export { TimeSeriesForecaster, makeWindows } from './timeseries';
export type { SeriesInput, WindowOptions, ForecasterOptions, ForecasterConfig } from './timeseries';
