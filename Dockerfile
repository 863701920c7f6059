# syntax=docker/dockerfile:1
# fenliu: multi-stage build. The runtime image holds production dependencies, compiled code,
# the JSON Schemas, the OpenAPI document and the config; it runs as a non-root user.
#
#   docker build -t fenliu .
#   docker run -p 8110:8110 -e REDIS_URL=redis://redis:6379 fenliu
#
# Without REDIS_URL the demo config falls back to the embedded redis-server (installed below),
# with its data under /app/var/redis: mount a volume there to keep it.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` (tsc) needs the sources, which are copied next.
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
COPY adapters ./adapters
COPY schemas ./schemas
COPY openapi ./openapi
COPY console ./console
# tsc for the server, Vite for the console (dist/console).
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
# redis-server only for the embedded default (no REDIS_URL); production points REDIS_URL elsewhere.
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY schemas ./schemas
COPY openapi ./openapi
COPY config ./config
# The demo config listens on 127.0.0.1; in a container it must listen on every interface.
RUN sed -i 's/^  host: 127\.0\.0\.1$/  host: 0.0.0.0/' config/demo.yaml \
 && grep -q '^  host: 0\.0\.0\.0$' config/demo.yaml \
 && mkdir -p var/redis var/audit \
 && chown -R node:node var
USER node
EXPOSE 8110
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8110/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/src/cli.js", "serve", "--config", "/app/config/demo.yaml"]
