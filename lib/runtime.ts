/**
 * Runtime settings and facts: CPU threads, matrix-product precision, native memory, and what
 * this build can run on. Settings are process-wide.
 */
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
 *   in FP32; states, gates and updates stay FP32. Only where that is faster than FP32: on AMD CPUs
 *   with AVX512_BF16 (Zen 4 and 5). Elsewhere, Intel's AVX512_BF16 included (slower than its FP32),
 *   products stay FP32: `backends().cpu` says which (`matmul: 'fp32' | 'bf16-avx512'`, `bf16`,
 *   `bf16Reason`).
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
 * for reuse, `packedWeightBytes` held by the recurrent layers' weights packed for the matrix
 * products and kept between calls (up to twice the weights' size in inference, four times in
 * training; freed with the weights, or by emptyCache()); once tensors were put on 'cuda', the
 * GPU's in use and cached (`cuda`).
 */
export function memoryStats(): ReturnType<typeof native.memoryStats> {
  return native.memoryStats();
}

/**
 * Returns the allocator's cached (freed, kept for reuse) memory to the system and drops the packed
 * weights (the next call of each layer packs its weights again); returns how many bytes that was.
 */
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
