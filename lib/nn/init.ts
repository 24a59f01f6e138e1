/** In-place initializers (outside autograd), drawing from the global generator. */
import { native } from '../core/native';
import { nextSeed } from '../core/random';
import type { Tensor } from '../core/tensor';

export function uniform_(tensor: Tensor, low: number, high: number): Tensor {
  native.uniformFill(tensor.storage, tensor.size, low, high, nextSeed());
  return tensor;
}

export function normal_(tensor: Tensor, mean = 0, std = 1): Tensor {
  native.normalFill(tensor.storage, tensor.size, mean, std, nextSeed());
  return tensor;
}

/**
 * Sets the forget-gate bias of every layer and direction of an LSTM to `value` (in
 * bias_ih; bias_hh is left alone), the usual start for long time lags (Jozefowicz et
 * al., 2015). PyTorch's default initialization stays the library's default.
 */
export function initForgetGateBias(lstm: { hiddenSize: number; namedParameters(): [string, Tensor][] }, value = 1): void {
  const H = lstm.hiddenSize;
  for (const [name, p] of lstm.namedParameters()) {
    if (!name.split('.').pop()!.startsWith('bias_ih')) continue;
    const values = p.toArray();
    values.fill(value, H, 2 * H); // gate order i, f, g, o: rows H..2H are the forget gate
    p.storage.write(values, 0);
  }
}
