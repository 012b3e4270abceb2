# syntax=docker/dockerfile:1
# One build stage, two small images: the server (default) and the Anypoint
# simulator (docker build --target anypoint-sim .).
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/mcpguard ./cmd/server
RUN if [ -d ./cmd/anypoint-sim ]; then go build -trimpath -ldflags="-s -w" -o /out/anypoint-sim ./cmd/anypoint-sim; \
    else printf '#!/bin/sh\necho "cmd/anypoint-sim is not in this build" >&2; exit 1\n' > /out/anypoint-sim; fi

FROM gcr.io/distroless/static-debian12:nonroot AS anypoint-sim
COPY --from=build /out/anypoint-sim /anypoint-sim
USER nonroot:nonroot
EXPOSE 8081
ENTRYPOINT ["/anypoint-sim"]

FROM gcr.io/distroless/static-debian12:nonroot AS server
COPY --from=build /out/mcpguard /mcpguard
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/mcpguard"]
CMD ["serve"]
