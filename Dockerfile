# Starling SFU container image.
#
#   docker build -t starling .
#   docker run --rm -e STARLING_KEYS="mykey:<secret of 32+ bytes>" \
#       -p 7900:7900/tcp -p 7901:7901/udp -p 7902:7902/tcp \
#       starling --bind 0.0.0.0:7900 --node-ip <host's public IP>
#
# Notes:
# - Inside a container the HTTP server must listen on 0.0.0.0, not the
#   default 127.0.0.1, or published ports cannot reach it; the CMD below does
#   that. Arguments given to `docker run` replace the whole CMD, so repeat
#   --bind 0.0.0.0:7900 when passing others (or put http.address in a config
#   file mounted into the container and pass --config /path/to/it).
# - Media uses one UDP port (7901) and ICE-TCP (7902). Publish them with the
#   same numbers on the host, and pass --node-ip with the address clients
#   reach, because ICE candidates carry the container's own IP otherwise.
#   `--network host` avoids both concerns on Linux.
# - Bound to 0.0.0.0 the server refuses to start without API keys
#   (STARLING_KEYS or keys: in a config file), so strangers cannot join
#   open rooms; --insecure-open overrides that for a closed lab network.

# ---- build ----------------------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src
# A static binary: the runtime image has no libc.
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false

# Dependencies first, so this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/starling ./cmd/starling

# ---- runtime --------------------------------------------------------------
# distroless/static: just CA certificates, tzdata, /etc/passwd and a nonroot
# user (uid 65532); no shell or package manager. Enough for a CGO-free Go
# binary whose web assets are embedded, and all ports are above 1024, so
# running as nonroot needs no extra capability.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/starling /starling
USER nonroot:nonroot
EXPOSE 7900/tcp 7901/udp 7902/tcp
# Clustered nodes (docs/cluster.md) also need their NATS route port and media relay port,
# e.g. --cluster-listen 0.0.0.0:7952 --cluster-relay-addr <host IP>:7953.
EXPOSE 7952/tcp 7953/udp
ENTRYPOINT ["/starling"]
CMD ["--bind", "0.0.0.0:7900"]
