# A minimal, non-root image for scimgate. Not built in CI (no container engine runs there):
#   docker build -t scimgate:dev .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin scimgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/scimgate /usr/local/bin/scimgate
USER 65532:65532
EXPOSE 8443 9443 9090
ENTRYPOINT ["/usr/local/bin/scimgate"]
CMD ["serve", "--help"]
