# One image for every service; the command picks which (see compose.yaml):
#   docker run … mini-integration-platform dist/crm/main.js

# --- build: compile TypeScript (and better-sqlite3, when no prebuilt binary fits) ---
FROM node:24-bookworm-slim AS build
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# --- run: production dependencies only, as the unprivileged `node` user ---
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    DATA_DIR=/data \
    LOG_FORMAT=json
WORKDIR /app
RUN mkdir -p /data && chown node:node /data
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --chown=node:node package.json ./
COPY --chown=node:node public ./public
COPY --chown=node:node bin ./bin
USER node
VOLUME ["/data"]
EXPOSE 8000 8001 8002
# Ready = the service answers /ready (its database reachable); start-up fits in the retries.
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD node dist/healthcheck.js
# Exec form: node is the process that receives SIGTERM, and drains before exiting.
ENTRYPOINT ["node"]
CMD ["dist/integration/main.js"]
