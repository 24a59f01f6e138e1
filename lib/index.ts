/**
 * recurrent: RNN, LSTM and GRU for Node.js at native speed, with PyTorch's names,
 * shapes and equations.
 */
export { Tensor } from './core/tensor';
export { numel } from './core/shape';
export { scope, keep } from './core/memory';
export type { Device } from './core/device';
export type { TensorOptions, TensorData } from './core/tensor';
export { backward, noGrad, isGradEnabled, GradNode } from './core/autograd';
export type { BackwardOptions } from './core/autograd';
export { manualSeed, getRngState, setRngState, Generator } from './core/random';
export type { RngState } from './core/random';
export { linear, dropout, embedding } from './nn/functional';
export { Module } from './nn/module';
export type { StateDict } from './nn/module';
export { Linear, Embedding, Dropout, Sequential } from './nn/layers';
export type { LinearOptions, EmbeddingOptions } from './nn/layers';
export { RNN, LSTM, GRU } from './nn/recurrent';
export { initForgetGateBias } from './nn/init';
export type { RecurrentOptions, RNNOptions, ForwardOptions, RecurrentOutput, LSTMOutput } from './nn/recurrent';
export type { CodedError, ErrorCode } from './core/errors';

import { native } from './core/native';
import { distributedBackend } from './distributed/distributed';
import { describe, expectInteger, typeError } from './core/errors';

/**
 * Threads the CPU kernels split large GEMMs across (default: the machine's cores, or
 * RECURRENT_NUM_THREADS). Results are identical for any count.
 */
export function setNumThreads(threads: number): void {
  native.setNumThreads(expectInteger(threads, 'threads', 1, 256));
}

let matmulPrecision: 'highest' | 'high' | 'medium' = 'highest';

/**
 * Precision of float32 matrix products, as torch.set_float32_matmul_precision:
 * - 'highest' (the default): FP32 everywhere.
 * - 'high': on 'cuda', large products (the layers' input projections and weight gradients, big
 *   matmuls) use the tensor cores in TF32 (10-bit mantissas, FP32 accumulation). The CPU stays FP32.
 * - 'medium': as 'high' on 'cuda'; on the CPU every matrix product (the recurrent step's too)
 *   rounds its operands to bfloat16 and multiplies them with AVX512_BF16 (vdpbf16ps), accumulating
 *   in FP32; states, gates and updates stay FP32. Where the CPU lacks AVX512_BF16 it stays FP32:
 *   `backends().cpu` says which (`matmul: 'bf16' | 'fp32'`, `bf16`, `bf16Reason`).
 */
export function setFloat32MatmulPrecision(precision: 'highest' | 'high' | 'medium'): void {
  if (precision !== 'highest' && precision !== 'high' && precision !== 'medium') {
    throw typeError(`Expected precision to be 'highest', 'high' or 'medium' but received ${describe(precision)}`);
  }
  native.setTf32(precision !== 'highest');
  native.setBf16Matmul(precision === 'medium');
  matmulPrecision = precision;
}

export function getFloat32MatmulPrecision(): 'highest' | 'high' | 'medium' {
  return matmulPrecision;
}

/**
 * Native memory: `allocatedBytes` held by live tensors on the CPU, `cachedBytes` freed and kept
 * for reuse; once tensors were put on 'cuda', the GPU's in use and cached (`cuda`).
 */
export function memoryStats(): ReturnType<typeof native.memoryStats> {
  return native.memoryStats();
}

/** Returns cached tensor memory to the system; resolves nothing, returns the bytes released. */
export function emptyCache(): number {
  return native.emptyCache();
}

/**
 * What this build can run on: CPU details, whether CUDA is compiled in and usable, and whether
 * data-parallel training can load its MPI engine (`distributed`: { available, engine?, reason? }).
 */
export function backends(): ReturnType<typeof native.backends> & { distributed: ReturnType<typeof distributedBackend> } {
  return { ...native.backends(), distributed: distributedBackend() };
}
export { runAsync, synchronize } from './core/stream';
export { crossEntropyLoss, mseLoss, huberLoss } from './nn/losses';
export type { Reduction } from './nn/losses';
export { Optimizer, SGD, Adam, AdamW, RMSprop, clipGradNorm, clipGradValue, LRScheduler, StepLR, CosineAnnealingLR, LinearLR } from './optim/optimizers';
export type { OptimizerState, SGDOptions, AdamOptions, RMSpropOptions } from './optim/optimizers';
export { saveSafetensors, loadSafetensors, serializeSafetensors, parseSafetensors } from './io/safetensors';
export type { SafetensorsContent } from './io/safetensors';
export { save, load, loadModel, registerModule, saveCheckpoint, loadCheckpoint } from './io/serialize';
export type { ModelSpec, CheckpointContent } from './io/serialize';
export { SequenceModel } from './nn/sequence-model';
export type { SequenceModelOptions, RecurrentState, CellType } from './nn/sequence-model';
export { fit } from './train/fit';
export type { FitData, FitOptions, History, Progress, EpochInfo, LossFn, LossContext } from './train/fit';
export { manualSeed as seed } from './core/random';
export { addingProblem } from './apps/datasets';
export { CharTokenizer, WordTokenizer, CharLanguageModel, sampleLogits, tokenizerFromJSON } from './apps/text';
export type { Tokenizer, CharModelOptions, CharTrainOptions } from './apps/text';
export { lineChartSvg, lossChartSvg, gradientFlowChartSvg, forgetTimeChartSvg } from './diagnostics/chart';
export type { Series } from './diagnostics/chart';
export { TimeSeriesForecaster, makeWindows } from './apps/timeseries';
export { exportOnnx, exportOnnxBuffer, importOnnx, importOnnxBuffer, importOnnxFile, ONNX_OPSET } from './io/onnx';
export { gradientFlow, gateStatistics } from './diagnostics/diagnostics';
export type { GradientFlow, GradientFlowLayer, GradientFlowOptions, GateSummary, GateStatisticsLayer } from './diagnostics/diagnostics';
export type { OnnxExportOptions } from './io/onnx';
export type { SeriesInput, WindowOptions, ForecasterOptions, ForecasterConfig } from './apps/timeseries';
export {
  initDistributed, isDistributedInitialized, getRank, getWorldSize, allReduce, broadcast, barrier, broadcastParameters,
  DistributedDataParallel, GradReducer,
} from './distributed/distributed';
export type { DistributedWorld, ReduceOp, GradReducerOptions, DistributedDataParallelOptions } from './distributed/distributed';
