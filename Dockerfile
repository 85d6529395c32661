# The logmeter pipeline as an image, for docker-compose.yml. (Not buildable on the
# development machines, which reach no container registry.)
FROM node:20-bookworm-slim
WORKDIR /opt/logmeter
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY bin ./bin
COPY cli ./cli
COPY api ./api
COPY panel ./panel
COPY config ./config
COPY lib ./lib
COPY ingest ./ingest
COPY processors ./processors
COPY schemas ./schemas
COPY sql ./sql
COPY stack ./stack
ENV LOGMETER_DATA_DIR=/var/lib/logmeter \
    LOGMETER_HTTP=0.0.0.0:8780
VOLUME /var/lib/logmeter
EXPOSE 8780
ENTRYPOINT ["node", "bin/logmeter.mjs"]
CMD ["up"]
