# Building what ships. `make help` lists the targets.
#
#   make static          the fully static x86_64 binary (glibc, +crt-static)
#   make image           the container image from it (podman, or docker)
#   make push            push the image (IMAGE must name your registry)
#
# Variables: IMAGE (default ghcr.io/camux/camux), TAG (default: the crate's
# version), ENGINE (podman or docker; default: whichever is installed),
# FEATURES (default: v4l2, which needs libclang-dev to build).

TARGET   ?= x86_64-unknown-linux-gnu
PROFILE  ?= dist
FEATURES ?= v4l2
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
TAG      ?= $(VERSION)
IMAGE    ?= ghcr.io/camux/camux
ENGINE   ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
BIN      := target/$(TARGET)/$(PROFILE)/camux
CONTEXT  := target/image-context
CA       ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: help static image push clean-image

help:
	@sed -n 's/^#   //p' Makefile

# RUSTFLAGS with an explicit --target apply to the target only, not to
# build scripts and proc macros (which must stay dynamic).
static:
	RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build --locked --profile $(PROFILE) --target $(TARGET) --features "$(FEATURES)" --bin camux
	@echo "built $(BIN) ($$(du -h $(BIN) | cut -f1))"

image: static
	rm -rf $(CONTEXT) && mkdir -p $(CONTEXT)
	cp $(BIN) $(CONTEXT)/camux
	cp $(CA) $(CONTEXT)/ca-certificates.crt
	$(ENGINE) build -f Containerfile -t $(IMAGE):$(TAG) \
		--build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		$(CONTEXT)

push:
	$(ENGINE) push $(IMAGE):$(TAG)

clean-image:
	rm -rf $(CONTEXT)
