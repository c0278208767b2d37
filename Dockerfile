# Builds the annal and annal-verify binaries and ships them on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin annal --bin annal-verify

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home annal
COPY --from=build /src/target/release/annal /src/target/release/annal-verify /usr/local/bin/
USER annal
ENV ANNAL_BIND=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["annal"]
CMD ["serve"]
