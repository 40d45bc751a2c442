# zfvis in a container: CPU by default; the same binary uses a GPU when the
# torch wheel's CUDA libraries find one (run with --gpus all).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make build

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 libgomp1 ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY --from=build /src/.venv /src/.venv
COPY --from=build /src/target/release/zfvis /src/zfvis
COPY --from=build /src/models /src/models
COPY --from=build /src/frontend /src/frontend
COPY --from=build /src/static /src/static
COPY --from=build /src/examples /src/examples
# Uploads, stored sets and results: keep them on a volume (docker run -v zfvis-data:/data).
VOLUME /data
EXPOSE 8080
CMD ["/src/zfvis", "serve", "--addr", "0.0.0.0:8080", "--models", "/src/models", "--data", "/data"]
