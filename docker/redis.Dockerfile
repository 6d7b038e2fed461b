# Redis for docker-compose.test.yml, where no registry can be reached (redis:7-alpine
# cannot be pulled): Debian's redis-server on the same local base as the fusebox image.
#   docker build --network host -t fusebox-redis:local --build-arg BASE=fusebox-base:bookworm \
#       -f docker/redis.Dockerfile docker/
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
CMD ["redis-server", "--appendonly", "yes", "--dir", "/data"]
