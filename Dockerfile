# The logmeter pipeline as an image (docker-compose.yml, and one collector per node).
#
# BASE defaults to the public node image for machines that reach a registry. The tests
# build this same file FROM logmeter/bookworm-node:<hash> instead (Debian 12 from
# debootstrap with haproxy and busybox-static already in it, plus the host's node;
# lib/stack/node-image.ts), so the apt-get step below is the one part they do not run.
ARG BASE=node:20-bookworm-slim
FROM ${BASE}
# The routes processor builds its load-balancer image from /usr/sbin/haproxy, its
# libraries (ldd) and /bin/busybox (processors/routes/haproxy.ts): they must be in here.
RUN if [ ! -x /usr/sbin/haproxy ] || [ ! -x /bin/busybox ]; then \
      apt-get update && apt-get install -y --no-install-recommends haproxy busybox-static ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /opt/logmeter
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY . .
ENV LOGMETER_DATA_DIR=/var/lib/logmeter \
    LOGMETER_HTTP=0.0.0.0:8780
EXPOSE 8780
ENTRYPOINT ["node", "bin/logmeter.mjs"]
CMD ["up"]
