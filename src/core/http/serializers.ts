import type { FastifyServerOptions } from 'fastify';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

type BuildSerializer = NonNullable<
  NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
>['buildSerializer'];

/**
 * Fastify's own response serializers (fast-json-stringify, with its options and shared schemas),
 * each compiled on its route's first answer with that status rather than at start-up: compiling
 * every route's response schemas was the largest part of a service's start after loading its code
 * (about 15 % of the integration's start-up CPU). Answers are serialized exactly as before.
 */
export const compileSerializersOnFirstUse: BuildSerializer = (externalSchemas, serializerOpts) => {
  const compile = SerializerSelector()(externalSchemas, serializerOpts);
  return (route) => {
    let serialize: ((data: unknown) => string) | undefined;
    return (data: unknown) => (serialize ??= compile(route))(data);
  };
};
