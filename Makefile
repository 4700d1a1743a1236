# civibus - top-level GNU Makefile (no autotools).
#
#   make              build the hub, the SDK, the CLI (into $(BUILD), default build/)
#   make test         install missing packages, build with ASan+UBSan, run the suite
#   make demo         install missing packages, build, run the example exchange
#   make bench        build optimised and run the benchmarks (BENCH_ARGS="--runs 5 --publish-only ...")
#   make fuzz         run each fuzz target for a bounded time (clang + libFuzzer)
#   make memcheck     run the unit tests under valgrind
#   make install      PREFIX=/usr/local DESTDIR=  (also the systemd unit, sysusers.d and
#                     tmpfiles.d files, the sample config, the Prometheus files: deploy/README.md)
#   make config-docs  regenerate deploy/civibusd.conf and the config reference in docs/OPERATIONS.md
#   make format clean
#
# Switches: SANITIZER=address|undefined|thread|address,undefined   V=1   BUILD=dir
# Generated protobuf-c code and every object live under $(BUILD); nothing generated
# is ever committed.

BUILD     ?= build
PREFIX    ?= /usr/local
DESTDIR   ?=
# Where systemd looks for units, sysusers.d and tmpfiles.d files under PREFIX.
# The configuration goes to /etc/civibus for the system prefixes, else under
# PREFIX, so that an install into a private prefix needs no root.
SYSCONFDIR  ?= $(if $(filter /usr /usr/local,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
SHAREDIR    ?= $(PREFIX)/share/civibus
CC        ?= cc
OPT       ?= -O2
SANITIZER ?=
VERSION   := 0.1.0

ifeq ($(V),1)
Q :=
else
Q := @
endif

PKGS      := libzmq libprotobuf-c openssl lmdb jansson libmicrohttpd libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs libzmq libprotobuf-c openssl lmdb jansson 2>/dev/null)
# Only the hub serves HTTP (libmicrohttpd) and only the CLI and the test
# harness fetch it (libcurl): the SDK links neither.
HTTPD_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
CURL_LIBS  := $(shell pkg-config --libs libcurl 2>/dev/null)

WARN      := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
             -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
CFLAGS    ?= $(OPT) -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(PKG_CFLAGS) \
             -DCIVIBUS_VERSION=\"$(VERSION)\" -I$(BUILD)/gen -Iproto -Ihub -Iadapters/sdk -Itests/harness
LDLIBS    := $(PKG_LIBS) -lpthread
ifneq ($(SANITIZER),)
ALL_CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS   += -fsanitize=$(SANITIZER)
endif

GEN_C     := $(BUILD)/gen/civibus.pb-c.c
GEN_H     := $(BUILD)/gen/civibus.pb-c.h

PROTO_SRC := $(wildcard proto/*.c)
HUB_SRC   := $(filter-out hub/main.c,$(wildcard hub/*.c))
SDK_SRC   := $(wildcard adapters/sdk/*.c)
CLI_SRC   := $(wildcard adapters/cli/*.c)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
ITEST_SRC := $(wildcard tests/integration/test_*.c)
HARN_SRC  := $(wildcard tests/harness/*.c)
BENCH_SRC := $(wildcard tests/bench/*.c)
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

PROTO_OBJ := $(call obj,$(PROTO_SRC)) $(BUILD)/obj/gen/civibus.pb-c.o
HUB_OBJ   := $(call obj,$(HUB_SRC))
SDK_OBJ   := $(call obj,$(SDK_SRC))
CLI_OBJ   := $(call obj,$(CLI_SRC))
HARN_OBJ  := $(call obj,$(HARN_SRC))

LIBPROTO  := $(BUILD)/libcivproto.a
LIBHUB    := $(BUILD)/libcivhub.a
LIBCIV_A  := $(BUILD)/libcivibus.a
LIBCIV_SO := $(BUILD)/libcivibus.so.0
HUBD      := $(BUILD)/civibusd
CLI       := $(BUILD)/civibus
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
ITEST_BIN := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(ITEST_SRC))
BENCH_BIN := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

.PHONY: all deps tests test bench demo fuzz fuzz-targets memcheck install clean format
.DEFAULT_GOAL := all
.SECONDARY:

all: $(HUBD) $(CLI) $(LIBCIV_A) $(LIBCIV_SO)

deps:
	$(Q)sh deploy/install-deps.sh

$(GEN_C) $(GEN_H): proto/civibus.proto
	@mkdir -p $(BUILD)/gen
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/gen proto/civibus.proto

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -MMD -MP -c $< -o $@
	@[ "$(V)" = 1 ] || echo "  CC      $<"

$(BUILD)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	@[ "$(V)" = 1 ] || echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(LIBPROTO): $(PROTO_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
$(LIBHUB): $(HUB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
$(LIBCIV_A): $(SDK_OBJ) $(PROTO_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
$(LIBCIV_SO): $(SDK_OBJ) $(PROTO_OBJ)
	$(Q)$(CC) -shared -Wl,-soname,libcivibus.so.0 $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The status page served at / is compiled in: hub/www/embed.sh turns the HTML
# into C (hub/page.h declares it).
$(BUILD)/gen/status_page.c: hub/www/status.html hub/www/embed.sh
	@mkdir -p $(BUILD)/gen
	$(Q)sh hub/www/embed.sh page_status_html hub/www/status.html page.h >$@.tmp && mv $@.tmp $@

$(HUBD): $(call obj,hub/main.c) $(BUILD)/obj/gen/status_page.o $(LIBHUB) $(LIBPROTO)
	@[ "$(V)" = 1 ] || echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(HTTPD_LIBS)

$(CLI): $(CLI_OBJ) $(LIBCIV_A)
	@[ "$(V)" = 1 ] || echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CURL_LIBS)

# Unit tests link the hub's modules and the SDK; integration tests and benchmarks
# link the SDK and the test harness (which starts real civibusd processes).
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBHUB) $(LIBCIV_A)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(HTTPD_LIBS) -lcmocka
$(ITEST_BIN): $(BUILD)/tests/%: $(BUILD)/obj/tests/integration/%.o $(HARN_OBJ) $(LIBCIV_A)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CURL_LIBS) -lcmocka
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(HARN_OBJ) $(LIBHUB) $(LIBCIV_A)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(HTTPD_LIBS) $(CURL_LIBS)
# Without libFuzzer a fuzz target links a main that replays its corpus;
# LIBFUZZER=1 (with CC=clang) links libFuzzer's driver instead.
ifeq ($(LIBFUZZER),1)
FUZZ_MAIN :=
FUZZ_LDFLAGS := -fsanitize=fuzzer
else
FUZZ_MAIN := $(BUILD)/obj/tests/fuzz/replay_main.o
FUZZ_LDFLAGS :=
endif
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(FUZZ_MAIN) $(LIBHUB) $(LIBPROTO)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) $(FUZZ_LDFLAGS) -o $@ $^ $(LDLIBS) $(HTTPD_LIBS)

fuzz-targets: $(FUZZ_BIN)

tests: all $(UNIT_BIN) $(ITEST_BIN) $(FUZZ_BIN)

test:
	$(Q)sh deploy/install-deps.sh test
	$(Q)$(MAKE) --no-print-directory BUILD=build/test SANITIZER=address,undefined OPT=-O1 tests
	$(Q)sh tests/run.sh build/test

bench: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build/bench OPT="-O2 -DNDEBUG" all $(patsubst $(BUILD)/%,build/bench/%,$(BENCH_BIN))
	$(Q)sh tests/bench/run.sh build/bench $(BENCH_ARGS)

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)sh deploy/demo.sh $(BUILD)

fuzz:
	$(Q)sh deploy/install-deps.sh fuzz
	$(Q)sh tests/fuzz/run.sh

memcheck:
	$(Q)sh deploy/install-deps.sh memcheck
	$(Q)$(MAKE) --no-print-directory BUILD=build/memcheck OPT=-O0 tests
	$(Q)MEMCHECK=1 sh tests/run.sh build/memcheck

# An operator's configuration, and the mode and owner that civibus.tmpfiles.conf
# gave $(SYSCONFDIR)/civibus, are never overwritten.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(HUBD) $(CLI) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(LIBCIV_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 0755 $(LIBCIV_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libcivibus.so.0 $(DESTDIR)$(PREFIX)/lib/libcivibus.so
	install -m 0644 adapters/sdk/civibus.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' adapters/sdk/civibus.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/civibus.pc
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	    $(DESTDIR)$(SHAREDIR)/prometheus
	sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|g' -e 's|/etc/civibus/|$(SYSCONFDIR)/civibus/|g' \
	    deploy/civibusd.service > $(DESTDIR)$(UNITDIR)/civibusd.service
	sed -e 's|/etc/civibus|$(SYSCONFDIR)/civibus|g' \
	    deploy/civibus.tmpfiles.conf > $(DESTDIR)$(TMPFILESDIR)/civibus.conf
	chmod 0644 $(DESTDIR)$(UNITDIR)/civibusd.service $(DESTDIR)$(TMPFILESDIR)/civibus.conf
	install -m 0644 deploy/civibus.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/civibus.conf
	install -m 0644 deploy/civibusd.conf deploy/policy.conf $(DESTDIR)$(SHAREDIR)/
	install -m 0644 deploy/prometheus/prometheus.yml deploy/prometheus/alerts.yml $(DESTDIR)$(SHAREDIR)/prometheus/
	[ -d $(DESTDIR)$(SYSCONFDIR)/civibus ] || install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/civibus
	[ -e $(DESTDIR)$(SYSCONFDIR)/civibus/civibusd.conf ] || \
	    install -m 0644 deploy/civibusd.conf $(DESTDIR)$(SYSCONFDIR)/civibus/civibusd.conf

# Regenerate what the config table in hub/config.c generates besides the
# parser: the sample config and the reference in docs/OPERATIONS.md
# (test_config fails while either differs).
.PHONY: config-docs
config-docs: $(HUBD)
	$(Q)$(HUBD) --print-config > deploy/civibusd.conf
	$(Q)$(HUBD) --print-config-md > $(BUILD)/config-reference.md
	$(Q)awk -v ref=$(BUILD)/config-reference.md \
	    '/<!-- END config reference/ { skip = 0 } !skip { print } \
	     /<!-- BEGIN config reference/ { while ((getline l < ref) > 0) print l; skip = 1 }' \
	    docs/OPERATIONS.md > $(BUILD)/OPERATIONS.md && mv $(BUILD)/OPERATIONS.md docs/OPERATIONS.md

format:
	clang-format -i $(PROTO_SRC) $(wildcard proto/*.h) hub/*.c hub/*.h adapters/*/*.c adapters/*/*.h

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
