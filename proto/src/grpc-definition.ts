import { fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from '@bufbuild/protobuf';

/** The shape @grpc/grpc-js expects for a method, without importing grpc-js here. */
export interface GrpcMethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  originalName: string;
  requestSerialize(value: MessageShape<DescMessage>): Buffer;
  requestDeserialize(bytes: Buffer): MessageShape<DescMessage>;
  responseSerialize(value: MessageShape<DescMessage>): Buffer;
  responseDeserialize(bytes: Buffer): MessageShape<DescMessage>;
}

/** Wire bytes already made for a message (see binaryOnce), so sending it does not encode it again. */
const encodings = new WeakMap<object, Uint8Array>();

/**
 * toBinary, remembered for the grpc-js serializers: a message encoded for a
 * durable copy goes out with the same bytes. The message must not change
 * afterwards.
 */
export function binaryOnce<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Uint8Array {
  const bytes = encodings.get(message) ?? toBinary(schema, message);
  encodings.set(message, bytes);
  return bytes;
}

/** Records wire bytes made by hand for a message (they must be what toBinary would make), for binaryOnce and the serializers. */
export function withBinary<M extends object>(message: M, bytes: Uint8Array): M {
  encodings.set(message, bytes);
  return message;
}

/** What a server gets instead of a request whose bytes do not decode (see `tolerateBadRequests`). */
export interface UndecodableRequest {
  readonly undecodable: string;
}

export function isUndecodable(value: unknown): value is UndecodableRequest {
  return typeof (value as Partial<UndecodableRequest> | undefined)?.undecodable === 'string';
}

/**
 * Builds a grpc-js service definition from a generated descriptor. Stream flags
 * come from each method's kind (hard-coding them breaks bidi streams).
 * With `tolerateBadRequests` (servers), a request that does not decode is
 * handed over as an UndecodableRequest, so the server can answer
 * INVALID_ARGUMENT; grpc-js itself would answer INTERNAL.
 */
export function grpcServiceDefinition(service: DescService, options: { tolerateBadRequests?: boolean } = {}): Record<string, GrpcMethodDefinition> {
  const definition: Record<string, GrpcMethodDefinition> = {};
  for (const method of service.methods) {
    const serializer = (schema: DescMessage) => (value: MessageShape<DescMessage>) => {
      const bytes = encodings.get(value) ?? toBinary(schema, value);
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    };
    const decode = (schema: DescMessage) => (bytes: Buffer) => fromBinary(schema, bytes);
    const tolerant = (schema: DescMessage) => (bytes: Buffer) => {
      try {
        return fromBinary(schema, bytes);
      } catch (error) {
        return { undecodable: `not a valid ${schema.typeName}: ${(error as Error).message}` } as unknown as MessageShape<DescMessage>;
      }
    };
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      originalName: method.localName,
      requestSerialize: serializer(method.input),
      requestDeserialize: (options.tolerateBadRequests ? tolerant : decode)(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: decode(method.output),
    };
  }
  return definition;
}
