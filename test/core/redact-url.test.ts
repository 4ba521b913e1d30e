import { describe, expect, it } from 'vitest';
import { redactUrl } from '../../src/core/config.js';

describe('redactUrl', () => {
  it('masks passwords and keeps what helps to read a database or broker URL', () => {
    expect(redactUrl('postgres://mip:hunter2@db:5432/crm?sslmode=require&password=x')).toBe(
      'postgres://mip:***@db:5432/crm?sslmode=require&password=***',
    );
    expect(redactUrl('amqp://guest@rabbitmq:5672')).toBe('amqp://guest@rabbitmq:5672');
    expect(redactUrl('not a url://user:secret@host')).toBe('not a url://***@host');
  });

  it('with everyValue, masks the user name, every query value, bare query tokens and the fragment', () => {
    const everyValue = { everyValue: true };
    expect(redactUrl('https://hooks.example.com/in?token=abc&tenant=7', everyValue)).toBe(
      'https://hooks.example.com/in?token=***&tenant=***',
    );
    expect(redactUrl('https://user:pass@hooks.example.com/in', everyValue)).toBe(
      'https://***:***@hooks.example.com/in',
    );
    expect(redactUrl('https://tokenasuser@hooks.example.com/in', everyValue)).toBe(
      'https://***@hooks.example.com/in',
    );
    expect(redactUrl('https://hooks.example.com/in?s3cr3t&a=1#frag', everyValue)).toBe(
      'https://hooks.example.com/in?***&a=***#***',
    );
    expect(redactUrl('https://hooks.example.com/in', everyValue)).toBe(
      'https://hooks.example.com/in',
    );
    expect(redactUrl('not a url?token=abc', everyValue)).toBe('not a url?***');
  });
});
