/**
 * recurrent: RNN, LSTM and GRU for Node.js at native speed, with PyTorch's names,
 * shapes and equations.
 */
export { Tensor } from './core/tensor';
export { numel } from './core/shape';
export { scope, keep } from './core/memory';
export type { Device } from './core/device';
export type { TensorOptions, TensorData } from './core/tensor';
export { backward } from './core/tensor';
export { noGrad, isGradEnabled, GradNode } from './core/autograd';
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
export type { RecurrentOptions, RNNOptions, ForwardOptions, RecurrentOutput, LSTMOutput, StepOptions } from './nn/recurrent';
export type { CodedError, ErrorCode } from './core/errors';

export { setNumThreads, setFloat32MatmulPrecision, getFloat32MatmulPrecision, memoryStats, emptyCache, backends } from './runtime';
export { runAsync, synchronize } from './core/stream';
export { crossEntropyLoss, mseLoss, huberLoss } from './nn/losses';
export { ctcLoss, ctcGreedyDecode, ctcBeamSearch } from './nn/ctc';
export type { CtcLossOptions, CtcDecodeOptions, CtcTargets } from './nn/ctc';
export type { Reduction } from './nn/losses';
export { Optimizer, SGD, Adam, AdamW, RMSprop, clipGradNorm, clipGradValue, LRScheduler, StepLR, CosineAnnealingLR, LinearLR } from './optim/optimizers';
export type { OptimizerState, SGDOptions, AdamOptions, RMSpropOptions } from './optim/optimizers';
export { saveSafetensors, loadSafetensors, serializeSafetensors, parseSafetensors } from './io/safetensors';
export type { SafetensorsContent } from './io/safetensors';
export { save, load, loadModel, registerModule, saveCheckpoint, loadCheckpoint } from './io/serialize';
export type { ModelSpec, CheckpointContent } from './io/serialize';
export { SequenceModel } from './nn/sequence-model';
export { Seq2Seq } from './nn/seq2seq';
export type { Seq2SeqOptions, TranslateOptions, NBestOptions, Hypothesis, Translation, AttentionType } from './nn/seq2seq';
export { BahdanauAttention, LuongAttention } from './nn/attention';
export type { AttentionOptions, AttentionOutput, BahdanauAttentionOptions, LuongAttentionOptions } from './nn/attention';
export type { SequenceModelOptions, RecurrentState, CellType, SampleOptions } from './nn/sequence-model';
export { fit } from './train/fit';
export type { FitData, FitOptions, History, Progress, EpochInfo, LossFn, LossContext } from './train/fit';
export { manualSeed as seed } from './core/random';
export { addingProblem } from './apps/datasets';
export { CharTokenizer, WordTokenizer, CharLanguageModel, sampleLogits, tokenizerFromJSON } from './apps/text';
export type { Tokenizer, CharModelOptions, CharTrainOptions } from './apps/text';
export { lineChartSvg, lossChartSvg, gradientFlowChartSvg, forgetTimeChartSvg, attentionHeatmapSvg } from './diagnostics/chart';
export type { Series, LossHistory } from './diagnostics/chart';
export { TimeSeriesForecaster, makeWindows } from './apps/timeseries';
export { exportOnnx, exportOnnxBuffer } from './io/onnx/export';
export { importOnnx, importOnnxBuffer, importOnnxFile } from './io/onnx/import';
export { ONNX_OPSET } from './io/onnx/common';
export { gradientFlow, gateStatistics } from './diagnostics/diagnostics';
export type { GradientFlow, GradientFlowLayer, GradientFlowOptions, GateSummary, GateStatisticsLayer } from './diagnostics/diagnostics';
export type { OnnxExportOptions } from './io/onnx/export';
export type { SeriesInput, WindowOptions, ForecasterOptions, ForecasterConfig } from './apps/timeseries';
export {
  initDistributed, isDistributedInitialized, getRank, getWorldSize, allReduce, broadcast, barrier, broadcastParameters,
  DistributedDataParallel, GradReducer,
} from './distributed/distributed';
export type { DistributedWorld, ReduceOp, GradReducerOptions, DistributedDataParallelOptions } from './distributed/distributed';
