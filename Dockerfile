# The image deploy/k8s/ runs: `sluice` on PATH, as the unprivileged `node` user (uid 1000, what
# the pods' securityContext asks for), the repository's workflows/ and examples/ under /app.
#
#   docker build -t ghcr.io/sluice-dev/sluice:0.1.0 .
#
# Not built by the test suite: there is no Docker engine where Sluice is developed.

FROM node:20-bookworm-slim AS build
# better-sqlite3 compiles itself when no prebuilt binary fits the platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off: the prepare script would build sources not copied yet; the one package with an
# install script, better-sqlite3, is rebuilt on its own.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app /app
RUN ln -s /app/bin/sluice.js /usr/local/bin/sluice
USER node
ENTRYPOINT ["sluice"]
CMD ["--help"]
