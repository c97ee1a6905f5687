# Bulkhead's container image: built in a Debian 12 builder with the -dev packages, run on
# bookworm-slim with only the shared libraries the binary links, as a non-root user.
# The node tests build exactly this file with buildah (scripts/node.sh build: `buildah build
# --network host --isolation chroot`, on a debootstrap-made Debian as debian:bookworm{,-slim}).
FROM debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      libcpprest-dev libboost-dev libboost-system-dev libssl-dev libyaml-cpp-dev \
      nlohmann-json3-dev libspdlog-dev libfmt-dev doctest-dev libsimdjson-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DBULKHEAD_TESTS=OFF \
    && cmake --build /build --target bulkhead -j"$(nproc)" \
    && strip /build/bin/bulkhead

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates libcpprest2.10 libssl3 libyaml-cpp0.7 libspdlog1.10 libfmt9 \
      libsimdjson14 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin bulkhead
COPY --from=build /build/bin/bulkhead /usr/local/bin/bulkhead
# The same binary as a kubectl plugin: `kubectl bulkhead check ...`.
RUN ln -s bulkhead /usr/local/bin/kubectl-bulkhead
USER 65532:65532
EXPOSE 9443 8080
ENTRYPOINT ["/usr/local/bin/bulkhead"]
