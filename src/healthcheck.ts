// Container health check: exits 0 when the service in this container answers GET /ready with 200.
// The service's port comes from HEALTHCHECK_PORT (default 8002), as the image runs any service.
const port = process.env.HEALTHCHECK_PORT ?? '8002';
const token = process.env.API_TOKEN;

try {
  const response = await fetch(`http://127.0.0.1:${port}/ready`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal: AbortSignal.timeout(2_500),
  });
  process.exitCode = response.status === 200 ? 0 : 1;
} catch {
  process.exitCode = 1;
}
