/**
 * The safetensors format (https://github.com/huggingface/safetensors):
 *   8 bytes   N, the header size, unsigned little-endian 64-bit
 *   N bytes   JSON header: { name: { dtype, shape, data_offsets: [begin, end] }, ...,
 *             "__metadata__": { string: string } }, padded with spaces to 8 bytes
 *   rest      the data buffer; offsets are relative to its start, little-endian, row-major
 *
 * Files are treated as hostile: every size, dtype, shape and offset is checked against
 * the file before anything is allocated or read, and a failure names what is wrong.
 * Writes are atomic (temp file in the same directory, fsync, rename).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, rangeError, setOwn, typeError } from '../core/errors';
import { Tensor } from '../core/tensor';

export interface SafetensorsContent {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

const DTYPE_SIZES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};
const MAX_HEADER = 100 * 1024 * 1024; // the reference implementation's limit

function badFile(message: string, file: string): RangeError {
  return rangeError(`Invalid safetensors file ${file}: ${message}`, 'ERR_BAD_FILE') as RangeError;
}

function checkName(name: string): void {
  if (name.length === 0 || name === '__metadata__') throw typeError(`Invalid tensor name ${JSON.stringify(name)}`, 'ERR_INVALID_ARG_VALUE');
}

function entriesOf(tensors: unknown): [string, Tensor][] {
  const entries = tensors instanceof Map ? [...tensors.entries()] : tensors && typeof tensors === 'object' && !Array.isArray(tensors) ? Object.entries(tensors) : null;
  if (!entries) throw typeError(`Expected tensors to be an object or a Map of Tensors but received ${describe(tensors)}`);
  return entries.map(([name, t]) => {
    checkName(String(name));
    if (!(t instanceof Tensor)) throw typeError(`Expected tensors[${JSON.stringify(name)}] to be a Tensor but received ${describe(t)}`);
    t.live();
    return [String(name), t];
  });
}

/** The bytes of a safetensors file holding `tensors` (as F32) and string `metadata`. */
export function serializeSafetensors(tensors: Record<string, Tensor> | Map<string, Tensor>, metadata: Record<string, string> = {}): Buffer {
  const entries = entriesOf(tensors).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (!metadata || typeof metadata !== 'object') throw typeError(`Expected metadata to be an object of strings but received ${describe(metadata)}`);
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw typeError(`Expected metadata[${JSON.stringify(key)}] to be a string but received ${describe(value)}`);
  }
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const bytes = t.size * 4;
    setOwn(header, name, { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] });
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const rawLength = Buffer.byteLength(json);
  json += ' '.repeat((8 - (rawLength % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let position = 8 + headerBytes.length;
  for (const [, t] of entries) {
    const data = t.toArray();
    // Float32Array is platform-endian; every supported platform is little-endian, as the format
    const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    view.copy(out, position);
    position += view.length;
  }
  return out;
}

interface HeaderEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** Parses and validates a header against a data buffer of `dataSize` bytes. */
function parseHeader(json: string, dataSize: number, file: string): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch (error) {
    throw badFile(`the header is not valid JSON (${(error as Error).message})`, file);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw badFile('the header is not a JSON object', file);
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!value || typeof value !== 'object' || Array.isArray(value)) throw badFile('__metadata__ is not an object', file);
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') throw badFile(`__metadata__.${k} is not a string`, file);
        setOwn(metadata, k, v);
      }
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!info || typeof info !== 'object') throw badFile(`entry ${JSON.stringify(name)} is not an object`, file);
    const dtype = info.dtype;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_SIZES, dtype)) throw badFile(`tensor ${JSON.stringify(name)} has unsupported dtype ${JSON.stringify(dtype)}`, file);
    const shape = info.shape;
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      throw badFile(`tensor ${JSON.stringify(name)} has an invalid shape ${JSON.stringify(shape)}`, file);
    }
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw badFile(`tensor ${JSON.stringify(name)} has invalid data_offsets ${JSON.stringify(offsets)}`, file);
    }
    const [begin, end] = offsets as number[];
    if (begin > end || end > dataSize) {
      throw badFile(`tensor ${JSON.stringify(name)} spans bytes [${begin}, ${end}) but the data section has ${dataSize} bytes`, file);
    }
    let elements = 1;
    for (const s of shape as number[]) elements *= s;
    if (elements * DTYPE_SIZES[dtype] !== end - begin) {
      throw badFile(`tensor ${JSON.stringify(name)} of shape ${JSON.stringify(shape)} and dtype ${dtype} needs ${elements * DTYPE_SIZES[dtype]} bytes, its offsets give ${end - begin}`, file);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; ++i) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw badFile(`tensors ${JSON.stringify(sorted[i - 1].name)} and ${JSON.stringify(sorted[i].name)} overlap`, file);
    }
  }
  return { entries, metadata };
}

function decode(bytes: Buffer, dtype: string, count: number): Float32Array {
  const out = new Float32Array(count);
  switch (dtype) {
    case 'F32': return new Float32Array(new Uint8Array(bytes).buffer, 0, count); // copy: aligned, little-endian
    case 'F64': for (let i = 0; i < count; ++i) out[i] = bytes.readDoubleLE(8 * i); break;
    case 'F16': for (let i = 0; i < count; ++i) out[i] = halfToFloat(bytes.readUInt16LE(2 * i)); break;
    case 'BF16': {
      const scratch = new DataView(new ArrayBuffer(4));
      for (let i = 0; i < count; ++i) {
        scratch.setUint32(0, bytes.readUInt16LE(2 * i) << 16);
        out[i] = scratch.getFloat32(0);
      }
      break;
    }
    case 'I64': for (let i = 0; i < count; ++i) out[i] = Number(bytes.readBigInt64LE(8 * i)); break;
    case 'U64': for (let i = 0; i < count; ++i) out[i] = Number(bytes.readBigUInt64LE(8 * i)); break;
    case 'I32': for (let i = 0; i < count; ++i) out[i] = bytes.readInt32LE(4 * i); break;
    case 'U32': for (let i = 0; i < count; ++i) out[i] = bytes.readUInt32LE(4 * i); break;
    case 'I16': for (let i = 0; i < count; ++i) out[i] = bytes.readInt16LE(2 * i); break;
    case 'U16': for (let i = 0; i < count; ++i) out[i] = bytes.readUInt16LE(2 * i); break;
    case 'I8': for (let i = 0; i < count; ++i) out[i] = bytes.readInt8(i); break;
    case 'U8': case 'BOOL': for (let i = 0; i < count; ++i) out[i] = bytes[i]; break;
  }
  return out;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Parses safetensors bytes (all dtypes read into float32 tensors). */
export function parseSafetensors(bytes: Uint8Array, file = '<buffer>'): SafetensorsContent {
  if (!(bytes instanceof Uint8Array)) throw typeError(`Expected bytes to be a Uint8Array but received ${describe(bytes)}`);
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { headerSize } = readPrefix(buffer, buffer.length, file);
  const dataStart = 8 + headerSize;
  const { entries, metadata } = parseHeader(buffer.toString('utf8', 8, dataStart), buffer.length - dataStart, file);
  const tensors: Record<string, Tensor> = {};
  for (const e of entries) {
    const count = (e.end - e.begin) / DTYPE_SIZES[e.dtype];
    setOwn(tensors, e.name, Tensor.from(decode(buffer.subarray(dataStart + e.begin, dataStart + e.end), e.dtype, count), e.shape));
  }
  return { tensors, metadata };
}

/**
 * A file whose first bytes cannot start a safetensors file (a header length larger than the file
 * or the format allows): said plainly, with what the file looks like instead.
 */
function notSafetensors(prefix: Buffer, file: string, detail: string): RangeError {
  let hint = '';
  if (/\.onnx$/i.test(file) || prefix[0] === 0x08) hint = '; it looks like an ONNX model: load it with importOnnx() (or CharLanguageModel.fromOnnx)';
  else if ([...prefix.subarray(0, 8)].every((c) => c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127))) hint = '; it looks like a text file';
  return rangeError(`${file} is not a safetensors model file (${detail})${hint}`, 'ERR_BAD_FILE') as RangeError;
}

function readPrefix(prefix: Buffer, fileSize: number, file: string): { headerSize: number } {
  if (fileSize < 8) throw badFile(`it has ${fileSize} bytes, fewer than the 8-byte header size`, file);
  const declared = prefix.readBigUInt64LE(0);
  if (declared > BigInt(MAX_HEADER)) throw notSafetensors(prefix, file, `its first 8 bytes give a header of ${declared} bytes, over the format's limit of ${MAX_HEADER}`);
  const headerSize = Number(declared);
  if (headerSize < 2) throw badFile(`the header size ${headerSize} is too small for a JSON object`, file);
  if (8 + headerSize > fileSize) throw badFile(`the header claims ${headerSize} bytes but the file has only ${fileSize - 8} after the size`, file);
  return { headerSize };
}

/** Reads a safetensors file; every dtype is read into float32 tensors. */
export async function loadSafetensors(file: string): Promise<SafetensorsContent> {
  if (typeof file !== 'string') throw typeError(`Expected path to be a string but received ${describe(file)}`);
  const handle = await fs.promises.open(file, 'r');
  try {
    const fileSize = (await handle.stat()).size;
    const prefix = Buffer.alloc(8);
    if (fileSize >= 8) await handle.read(prefix, 0, 8, 0);
    const { headerSize } = readPrefix(prefix, fileSize, file);
    const headerBytes = Buffer.alloc(headerSize);
    await handle.read(headerBytes, 0, headerSize, 8);
    const dataStart = 8 + headerSize;
    const { entries, metadata } = parseHeader(headerBytes.toString('utf8'), fileSize - dataStart, file);
    const tensors: Record<string, Tensor> = {};
    for (const e of entries) {
      // sizes were checked against the file above, so this allocates what is really there
      const bytes = Buffer.alloc(e.end - e.begin);
      const { bytesRead } = await handle.read(bytes, 0, bytes.length, dataStart + e.begin);
      if (bytesRead !== bytes.length) throw badFile(`tensor ${JSON.stringify(e.name)} is truncated`, file);
      setOwn(tensors, e.name, Tensor.from(decode(bytes, e.dtype, bytes.length / DTYPE_SIZES[e.dtype]), e.shape));
    }
    return { tensors, metadata };
  } finally {
    await handle.close();
  }
}

/**
 * Writes `bytes` to `file` atomically: a temp file in the same directory, fsync, rename,
 * then fsync of the directory. A crash at any point leaves either the old file or the
 * new one, never a torn one.
 */
export async function writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.promises.open(temp, 'w', 0o644);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fs.promises.rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await fs.promises.rename(temp, file);
  } catch (error) {
    await fs.promises.rm(temp, { force: true });
    throw error;
  }
  const dirHandle = await fs.promises.open(dir, 'r').catch(() => null);
  if (dirHandle) {
    await dirHandle.sync().catch(() => undefined);
    await dirHandle.close();
  }
}

/** Saves named tensors (as F32) and string metadata to a safetensors file, atomically. */
export async function saveSafetensors(file: string, tensors: Record<string, Tensor> | Map<string, Tensor>, metadata: Record<string, string> = {}): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) throw typeError(`Expected path to be a file path but received ${describe(file)}`);
  await writeFileAtomic(file, serializeSafetensors(tensors, metadata));
}
