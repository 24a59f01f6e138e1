/**
 * The part of ONNX's protobuf schema (onnx/onnx.proto, opset 17 / IR 8) that export and import
 * use: models, graphs, nodes, attributes, tensors, value infos, types and shapes, opsets and
 * metadata. Field numbers and types are ONNX's; the messages are read and written by protobufjs
 * (its reflection runtime), with field names in camelCase as protobufjs gives them. Decoded
 * messages carry the schema's defaults (an unset string is '', a repeated field []), and int64
 * fields come back as numbers or Long objects: read them with Number().
 */
import * as protobuf from 'protobufjs/light';

type Fields = Record<string, { id: number; type: string; rule?: 'repeated'; options?: { packed: boolean } }>;
const repeated = (id: number, type: string) => ({ id, type, rule: 'repeated' as const });

const messages: Record<string, { fields: Fields; nested?: Record<string, { fields: Fields } | { values: Record<string, number> }> }> = {
  ModelProto: {
    fields: {
      irVersion: { id: 1, type: 'int64' }, producerName: { id: 2, type: 'string' }, producerVersion: { id: 3, type: 'string' },
      domain: { id: 4, type: 'string' }, modelVersion: { id: 5, type: 'int64' }, docString: { id: 6, type: 'string' },
      graph: { id: 7, type: 'GraphProto' }, opsetImport: repeated(8, 'OperatorSetIdProto'), metadataProps: repeated(14, 'StringStringEntryProto'),
    },
  },
  OperatorSetIdProto: { fields: { domain: { id: 1, type: 'string' }, version: { id: 2, type: 'int64' } } },
  StringStringEntryProto: { fields: { key: { id: 1, type: 'string' }, value: { id: 2, type: 'string' } } },
  GraphProto: {
    fields: {
      node: repeated(1, 'NodeProto'), name: { id: 2, type: 'string' }, initializer: repeated(5, 'TensorProto'), docString: { id: 10, type: 'string' },
      input: repeated(11, 'ValueInfoProto'), output: repeated(12, 'ValueInfoProto'), valueInfo: repeated(13, 'ValueInfoProto'),
    },
  },
  NodeProto: {
    fields: {
      input: repeated(1, 'string'), output: repeated(2, 'string'), name: { id: 3, type: 'string' }, opType: { id: 4, type: 'string' },
      attribute: repeated(5, 'AttributeProto'), docString: { id: 6, type: 'string' }, domain: { id: 7, type: 'string' },
    },
  },
  AttributeProto: {
    fields: {
      name: { id: 1, type: 'string' }, f: { id: 2, type: 'float' }, i: { id: 3, type: 'int64' }, s: { id: 4, type: 'bytes' },
      t: { id: 5, type: 'TensorProto' }, g: { id: 6, type: 'GraphProto' }, floats: repeated(7, 'float'), ints: repeated(8, 'int64'),
      strings: repeated(9, 'bytes'), tensors: repeated(10, 'TensorProto'), graphs: repeated(11, 'GraphProto'), docString: { id: 13, type: 'string' },
      type: { id: 20, type: 'AttributeType' }, refAttrName: { id: 21, type: 'string' },
    },
    nested: {
      AttributeType: {
        values: {
          UNDEFINED: 0, FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, SPARSE_TENSOR: 11, TYPE_PROTO: 13,
          FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10, SPARSE_TENSORS: 12, TYPE_PROTOS: 14,
        },
      },
    },
  },
  TensorProto: {
    fields: {
      dims: repeated(1, 'int64'), dataType: { id: 2, type: 'int32' }, floatData: repeated(4, 'float'), int32Data: repeated(5, 'int32'),
      stringData: repeated(6, 'bytes'), int64Data: repeated(7, 'int64'), name: { id: 8, type: 'string' }, rawData: { id: 9, type: 'bytes' },
      doubleData: repeated(10, 'double'), uint64Data: repeated(11, 'uint64'), docString: { id: 12, type: 'string' }, dataLocation: { id: 14, type: 'int32' },
    },
    nested: {
      DataType: {
        values: {
          UNDEFINED: 0, FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9, FLOAT16: 10,
          DOUBLE: 11, UINT32: 12, UINT64: 13, COMPLEX64: 14, COMPLEX128: 15, BFLOAT16: 16,
        },
      },
    },
  },
  ValueInfoProto: { fields: { name: { id: 1, type: 'string' }, type: { id: 2, type: 'TypeProto' }, docString: { id: 3, type: 'string' } } },
  TypeProto: {
    fields: { tensorType: { id: 1, type: 'Tensor' }, denotation: { id: 6, type: 'string' } },
    nested: { Tensor: { fields: { elemType: { id: 1, type: 'int32' }, shape: { id: 2, type: 'TensorShapeProto' } } } },
  },
  TensorShapeProto: {
    fields: { dim: repeated(1, 'Dimension') },
    nested: { Dimension: { fields: { dimValue: { id: 1, type: 'int64' }, dimParam: { id: 2, type: 'string' }, denotation: { id: 3, type: 'string' } } } },
  },
};

const root = protobuf.Root.fromJSON({ nested: { onnx: { nested: messages } } });

/** An int64 as protobufjs reads it: a number, or a Long (an object with toNumber()). */
export type Int64 = number | { toNumber(): number };

export interface TensorProto {
  dims?: Int64[];
  dataType?: number;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: Int64[];
  doubleData?: number[];
  name?: string;
  rawData?: Uint8Array;
}

export interface AttributeProto {
  name?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
}

export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  opType?: string;
  domain?: string;
  attribute?: AttributeProto[];
}

export interface ValueInfoProto {
  name?: string;
  type?: { tensorType?: { elemType?: number; shape?: { dim?: { dimValue?: Int64; dimParam?: string }[] } } };
}

export interface GraphProto {
  name?: string;
  node?: NodeProto[];
  initializer?: TensorProto[];
  input?: ValueInfoProto[];
  output?: ValueInfoProto[];
  valueInfo?: ValueInfoProto[];
}

export interface ModelProto {
  irVersion?: Int64;
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: Int64;
  docString?: string;
  graph?: GraphProto;
  opsetImport?: { domain?: string; version?: Int64 }[];
  metadataProps?: { key?: string; value?: string }[];
}

const modelType = root.lookupType('onnx.ModelProto');

/** An ONNX model's bytes. */
export function encodeModel(model: ModelProto): Uint8Array {
  return modelType.encode(modelType.fromObject(model as Record<string, unknown>)).finish();
}

/** An ONNX model from its bytes (throws on bytes that are not a protobuf message of this schema). */
export function decodeModel(bytes: Uint8Array): ModelProto {
  return modelType.decode(bytes) as unknown as ModelProto;
}

/** The element types of TensorProto.DataType. */
export const DataType = (messages.TensorProto.nested!.DataType as { values: Record<string, number> }).values as {
  readonly FLOAT: 1; readonly INT32: 6; readonly INT64: 7; readonly DOUBLE: 11; readonly [name: string]: number;
};

/** The kinds of AttributeProto.AttributeType. */
export const AttributeType = (messages.AttributeProto.nested!.AttributeType as { values: Record<string, number> }).values as {
  readonly FLOAT: 1; readonly INT: 2; readonly STRING: 3; readonly TENSOR: 4; readonly FLOATS: 6; readonly INTS: 7; readonly STRINGS: 8;
  readonly [name: string]: number;
};
