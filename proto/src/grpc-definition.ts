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

/**
 * Builds a grpc-js service definition from a generated descriptor. Stream flags
 * come from each method's kind (hard-coding them breaks bidi streams).
 */
export function grpcServiceDefinition(service: DescService): Record<string, GrpcMethodDefinition> {
  const definition: Record<string, GrpcMethodDefinition> = {};
  for (const method of service.methods) {
    const serializer = (schema: DescMessage) => (value: MessageShape<DescMessage>) => Buffer.from(toBinary(schema, value));
    const deserializer = (schema: DescMessage) => (bytes: Buffer) => fromBinary(schema, bytes);
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      originalName: method.localName,
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
    };
  }
  return definition;
}
