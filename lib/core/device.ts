/** Devices: which ones can hold tensors here, and the check that an op's tensors share one. */
import { describe, typeError } from './errors';
import { native } from './native';
import type { Tensor } from './tensor';

export type Device = 'cpu' | 'cuda';

// Why 'cuda' cannot hold tensors here (null: it can); asked of the addon once.
let cudaReason: string | null | undefined;

function cudaUnavailable(): string | null {
  if (cudaReason === undefined) {
    const cuda = native.backends().cuda;
    cudaReason = !cuda.compiled
      ? (cuda.reason ?? 'CUDA was not compiled in')
      : cuda.deviceCount === 0
        ? (cuda.reason ?? 'no CUDA device')
        : null;
  }
  return cudaReason;
}

/** `device` as a Device that can hold tensors here; 'cuda' without a usable GPU throws ERR_CUDA_UNAVAILABLE saying why. */
export function checkDevice(device: unknown, name = 'options.device'): Device {
  if (device === undefined || device === 'cpu') return 'cpu';
  if (device === 'cuda') {
    const reason = cudaUnavailable();
    if (reason !== null) throw Object.assign(typeError(`Cannot create a tensor on 'cuda': ${reason}`), { code: 'ERR_CUDA_UNAVAILABLE' });
    return 'cuda';
  }
  throw typeError(`Expected ${name} to be 'cpu' or 'cuda' but received ${describe(device)}`);
}

/** Throws ERR_DEVICE_MISMATCH unless every tensor given lives on the device of the first. */
export function expectSameDevice(op: string, tensors: readonly (readonly [string, Tensor | null | undefined])[]): Device {
  const [firstName, first] = tensors[0];
  const device = first!.device;
  for (const [name, t] of tensors) {
    if (t && t.device !== device) {
      throw typeError(
        `${op}: ${name} is on '${t.device}' but ${firstName} is on '${device}'; move them to one device with .to()`,
        'ERR_DEVICE_MISMATCH',
      );
    }
  }
  return device;
}
