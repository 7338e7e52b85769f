# The ktd image: one static binary on an empty base, run as an unprivileged user,
# its data in the /data volume. Built by `make image` from a context that
# make assembles in bin/image (the binary, /etc/passwd and /etc/group entries for
# the user, an empty data directory); nothing is pulled from a registry.
#
#	docker run -d -p 127.0.0.1:1978:1978 -v ktd-data:/data ktd:dev
#	docker run ... ktd:dev -host 0.0.0.0 -port 1978 -ulog /data/ulog -sid 1 /data/casket.kct
FROM scratch
COPY passwd group /etc/
COPY ktd /ktd
COPY --chown=65532:65532 data /data
USER 65532:65532
WORKDIR /data
VOLUME /data
EXPOSE 1978
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/ktd", "health"]
ENTRYPOINT ["/ktd"]
CMD ["-host", "0.0.0.0", "-port", "1978", "/data/casket.kct"]
