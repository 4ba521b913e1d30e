// RabbitMQ, one file per concern under amqp/: the topology, the connection (reconnect and setup
// through amqp-connection-manager), the confirming publisher and the acking consumer.
export * from './amqp/connection.js';
export * from './amqp/consumer.js';
export * from './amqp/errors.js';
export * from './amqp/publisher.js';
export * from './amqp/topology.js';
