# vipd: one static binary on an empty base. Needs NET_ADMIN and NET_RAW, and
# hostNetwork (see `vipd manifest daemonset`). Without a Docker engine,
# `make image` builds the same image as an OCI archive.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /vipd ./cmd/vipd

FROM scratch
COPY --from=build /vipd /vipd
USER 0
ENTRYPOINT ["/vipd"]
CMD ["manager"]
