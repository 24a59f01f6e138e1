/** In-place initializers (outside autograd), drawing from the global generator. */
import { native } from '../native';
import { nextSeed } from '../random';
import type { Tensor } from '../tensor';

export function uniform_(tensor: Tensor, low: number, high: number): Tensor {
  native.uniformFill(tensor.storage, tensor.size, low, high, nextSeed());
  return tensor;
}

export function normal_(tensor: Tensor, mean = 0, std = 1): Tensor {
  native.normalFill(tensor.storage, tensor.size, mean, std, nextSeed());
  return tensor;
}
