# closewatch - find TCP sockets stuck in CLOSE_WAIT and the code responsible.
#
#   make            build/libclosewatch.so and build/closewatch
#   make test       build and run the Criterion suite
#   make demo       catch a real CLOSE_WAIT leak
#   make ASAN=1 test / UBSAN=1 test   sanitized analyzer and tests
#   make install PREFIX=/usr/local DESTDIR=
#   make fuzz       fuzz the ring reader (clang + libFuzzer)
#   make format     apply .clang-format

PREFIX ?= /usr/local
DESTDIR ?=
B := build
VERSION := 0.1.0

CC ?= cc
BASE_CFLAGS := -std=gnu11 -g -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -DCW_VERSION=\"$(VERSION)\"
SAN :=
ifeq ($(ASAN),1)
SAN += -fsanitize=address -fno-omit-frame-pointer
endif
ifeq ($(UBSAN),1)
SAN += -fsanitize=undefined -fno-sanitize-recover=undefined
endif

# Dependencies are checked once per make run, and only when something is
# built (the script may apt-get install as root): not for clean or format.
NOBUILD_GOALS := clean format
ifneq ($(filter-out $(NOBUILD_GOALS),$(or $(MAKECMDGOALS),all)),)
DEPS_OK := $(shell scripts/deps.sh >&2 && echo yes)
ifneq ($(DEPS_OK),yes)
$(error dependencies missing: see the message above (scripts/deps.sh))
endif
endif

UNWIND_CFLAGS := $(shell pkg-config --cflags libunwind)
UNWIND_LIBS := $(shell pkg-config --libs libunwind)
DW_CFLAGS := $(shell pkg-config --cflags libdw)
DW_LIBS := $(shell pkg-config --libs libdw)
CRITERION_LIBS := $(shell pkg-config --libs criterion)
# The tests alone read JSON (tests/jsonq.c); the analyzer only writes it.
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson)
JANSSON_LIBS := $(shell pkg-config --libs jansson)

PRELOAD_SRC := $(wildcard preload/*.c) common/sock_diag.c common/proc_stat.c
ANALYZER_SRC := $(filter-out analyzer/main.c,$(wildcard analyzer/*.c)) common/shm_reader.c common/sock_diag.c common/proc_stat.c \
	$(wildcard bpf/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
FIXTURE_SRC := $(wildcard tests/fixtures/*.c)

LIB := $(B)/libclosewatch.so
BIN := $(B)/closewatch
TESTS := $(B)/tests/unit
FIXTURES := $(patsubst tests/fixtures/%.c,$(B)/fixtures/%,$(FIXTURE_SRC))

all: $(LIB) $(BIN) $(B)/closewatch-node.js

# Node's half of preload/jsframes.c, next to the library (closewatch run finds it there).
$(B)/closewatch-node.js: preload/closewatch-node.js | $(B)
	cp $< $@

# The preload is never sanitized: it lives inside other people's programs.
$(LIB): $(PRELOAD_SRC) $(wildcard preload/*.h common/*.h) | $(B)
	$(CC) $(BASE_CFLAGS) -DCW_IN_PRELOAD -fPIC -shared -fvisibility=hidden -ftls-model=initial-exec \
		$(UNWIND_CFLAGS) -o $@ $(PRELOAD_SRC) -ldl -pthread -Wl,-z,defs \
		-Wl,-e,cw_helper_entry

ANALYZER_SRC := $(filter-out %.bpf.c,$(ANALYZER_SRC))
ANALYZER_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(ANALYZER_SRC))

# The bpf recorder's kernel half: compiled by clang for the BPF target against
# this kernel's BTF (vmlinux.h, for CO-RE), embedded in closewatch as a
# libbpf skeleton.
BPF_LIBS := $(shell pkg-config --libs libbpf) -lelf -lz
$(B)/bpf/vmlinux.h: | $(B)
	@mkdir -p $(B)/bpf
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(B)/bpf/closewatch.bpf.o: bpf/closewatch.bpf.c bpf/events.h $(B)/bpf/vmlinux.h
	clang -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -I$(B)/bpf -Ibpf -c $< -o $@

$(B)/bpf/closewatch.skel.h: $(B)/bpf/closewatch.bpf.o
	bpftool gen skeleton $< name closewatch_bpf > $@.tmp && mv $@.tmp $@

$(B)/obj/bpf/recorder.o $(B)/obj/bpf/go_probes.o: $(B)/bpf/closewatch.skel.h
$(B)/obj/bpf/%.o: CFLAGS_EXTRA := -I$(B)/bpf

$(B)/obj/%.o: %.c $(wildcard analyzer/*.h common/*.h bpf/*.h) | $(B)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DW_CFLAGS) $(CFLAGS_EXTRA) -c $< -o $@

$(B)/analyzer.a: $(ANALYZER_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BIN): analyzer/main.c $(B)/analyzer.a | $(B)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DW_CFLAGS) -o $@ $^ $(DW_LIBS) $(BPF_LIBS) -lm -pthread

$(B)/fixtures/%: tests/fixtures/%.c tests/fixtures/fixture.h | $(B)
	@mkdir -p $(B)/fixtures
	$(CC) -std=gnu11 -g -O0 -Wall -Wextra -Werror -o $@ $< -pthread

# One fixture is built with _FORTIFY_SOURCE=2 -O2: it calls __read_chk and friends.
$(B)/fixtures/fortified_client: tests/fixtures/fortified_client.c tests/fixtures/fixture.h | $(B)
	@mkdir -p $(B)/fixtures
	$(CC) -std=gnu11 -g -O2 -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror -o $@ $< -pthread

TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

$(TESTS): $(TEST_SRC) $(TEST_SUPPORT) $(wildcard tests/*.h) $(B)/analyzer.a | $(B)
	@mkdir -p $(B)/tests
	$(CC) $(BASE_CFLAGS) $(SAN) $(DW_CFLAGS) $(JANSSON_CFLAGS) -Wno-missing-field-initializers -o $@ \
		$(TEST_SRC) $(TEST_SUPPORT) $(B)/analyzer.a $(CRITERION_LIBS) $(JANSSON_LIBS) $(DW_LIBS) $(BPF_LIBS) -lm -pthread

$(B):
	mkdir -p $(B)

# The `real` suite runs nginx, redis, Go, Node, Java...: install them first so
# a slow apt-get does not count against a test's timeout (a missing one is a
# visible skip, never a silent pass).
test: all $(FIXTURES) $(TESTS)
	sh scripts/check-layers.sh
	-sh scripts/install-test-deps.sh
	CW_BUILD=$(abspath $(B)) LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp) \
		$(TESTS) --jobs 2 $(TEST_ARGS)

demo: all $(FIXTURES)
	sh scripts/demo.sh

fuzz:
	sh scripts/fuzz.sh $(FUZZ_SECONDS)

bench: all $(FIXTURES)
	sh scripts/bench

# CPython's own socket test suites with and without the preload (about 3 min).
peer-tests: all
	sh scripts/peer-tests.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libclosewatch.so
	install -m 0644 $(B)/closewatch-node.js $(DESTDIR)$(PREFIX)/lib/closewatch-node.js
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/closewatch
	install -m 0644 docs/closewatch.1 $(DESTDIR)$(PREFIX)/share/man/man1/closewatch.1

format:
	clang-format -i bpf/*.[ch] preload/*.[ch] analyzer/*.[ch] common/*.[ch] tests/*.[ch] tests/fixtures/*.[ch] tests/fuzz/*.[ch] tests/real/*.c scripts/*.c scripts/*.h

clean:
	rm -rf $(B)

.PHONY: all test demo fuzz bench peer-tests install format clean
