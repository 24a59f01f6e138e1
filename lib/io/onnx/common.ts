/**
 * What ONNX export and import share: the opset, the metadata key of our model description, and
 * how the gates of ONNX's RNN, LSTM and GRU operators are ordered against PyTorch's.
 */
export { AttributeType, DataType } from './schema';

export const ONNX_OPSET = 17;
export const IR_VERSION = 8; // the IR version that opset 17 shipped with (ONNX 1.12)

/** Rows of `w` ([G*H, ...]) regrouped by gate block in `order` (ONNX's order, as indices into ours). */
export function reorderGates(w: Float32Array, gates: number, order: readonly number[]): Float32Array {
  const block = w.length / gates;
  const out = new Float32Array(w.length);
  order.forEach((from, to) => out.set(w.subarray(from * block, (from + 1) * block), to * block));
  return out;
}

export const ONNX_GATE_ORDER: Record<string, readonly number[]> = {
  LSTM: [0, 3, 1, 2], // ONNX i, o, f, c from PyTorch i, f, g, o
  GRU: [1, 0, 2], // ONNX z, r, h from PyTorch r, z, n
  RNN: [0],
};

