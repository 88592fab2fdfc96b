# fgrun - build, test and install.
#
#   make            build everything into build/
#   make test       unit tests (cmocka) and integration tests (pytest)
#   make check      make test, test-torch2, test-slurm, asan and fuzz: what CI runs
#   make test-torch2  the torch 2.6 suite (scripts/torch2-root.sh's root), torchrun 2.6 beside fgrun
#   make test-slurm the tests on a Slurm cluster they start (slurmctld, slurmd, munge)
#   make asan       the same tests under AddressSanitizer + UBSan (build/asan)
#   make fuzz       the store's request handling under libFuzzer (FUZZ_SECONDS=60)
#   make bench      side-by-side benchmarks
#   make run        the main job
#   make install PREFIX=/usr/local   (DESTDIR= to stage; make uninstall with the same)
#   make unit       the unit tests alone; make integration the pytest suite alone
#   make deps       install the Debian packages (scripts/install-deps.sh)
#   make clean      remove build/
#   make help       this list
#
# Optional parts are detected: the nccl backend needs CUDA and NCCL under
# CUDA_HOME (default /usr/local/cuda); gloo needs Debian's libgloo-dev; mpi
# needs Open MPI's mpicc.

PREFIX    ?= /usr/local
BUILD     ?= build
CUDA_HOME ?= /usr/local/cuda
PYTHON    ?= /usr/bin/python3
PYTEST_ARGS ?=
# The integration tests mostly wait on processes and sockets: several at once (pytest-xdist,
# when installed) finish in a third of the time even on two cores. PYTEST_JOBS=0: one by one.
PYTEST_JOBS ?= 4
HAVE_XDIST  := $(shell $(PYTHON) -c 'import xdist' 2>/dev/null && echo 1)
PYTEST_PAR  := $(if $(and $(HAVE_XDIST),$(filter-out 0,$(PYTEST_JOBS))),-n $(PYTEST_JOBS))

CC  ?= gcc
CXX ?= g++
WARN      := -Wall -Wextra -Werror
CPPFLAGS  += -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS    ?= -O2 -g
CFLAGS    += -std=gnu11 -fPIC -fvisibility=hidden $(WARN)
CXXFLAGS  ?= -O2 -g
CXXFLAGS  += -std=c++17 -fPIC -fvisibility=hidden $(WARN)
LDLIBS    := -luv -lpthread -lm

ifeq ($(SAN),1)
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  CFLAGS   += $(SANFLAGS)
  CXXFLAGS += $(SANFLAGS)
  LDFLAGS  += $(SANFLAGS)
endif

# --- optional backends ------------------------------------------------------------------
HAVE_GLOO := $(shell test -f /usr/include/gloo/context.h -a -f src/comm/backend_gloo.c && echo 1)
HAVE_MPI  := $(shell command -v mpicc >/dev/null 2>&1 && test -f src/comm/backend_mpi.c && echo 1)
HAVE_NCCL := $(shell test -f $(CUDA_HOME)/include/nccl.h -a -f $(CUDA_HOME)/include/cuda_runtime.h -a -f src/comm/backend_nccl.c && echo 1)
COMM_LIBS :=
ifeq ($(HAVE_GLOO),1)
  CPPFLAGS  += -DFG_HAVE_GLOO
  COMM_LIBS += -lgloo -lstdc++
else
  $(info fgrun: gloo backend disabled: /usr/include/gloo not found (apt-get install libgloo-dev))
endif
ifeq ($(HAVE_MPI),1)
  MPI_CFLAGS := $(shell mpicc --showme:compile)
  CPPFLAGS   += -DFG_HAVE_MPI
  COMM_LIBS  += $(shell mpicc --showme:link)
else
  $(info fgrun: mpi backend disabled: mpicc not found (apt-get install libopenmpi-dev))
endif
# The PMIx server (src/launcher/pmix*.c) uses libpmix's headers; fgrun loads the library at
# run time (dlopen), so it runs where libpmix is missing, with the server off.
HAVE_PMIX := $(shell pkg-config --exists pmix 2>/dev/null && test -f src/launcher/pmix.c && echo 1)
ifeq ($(HAVE_PMIX),1)
  PMIX_CFLAGS := $(shell pkg-config --cflags pmix) -DFG_PMIX_LIBDIR='"$(shell pkg-config --variable=libdir pmix)"'
  CPPFLAGS    += -DFG_HAVE_PMIX
else
  $(info fgrun: PMIx server disabled: libpmix not found by pkg-config (apt-get install libpmix-dev); MPI programs need mpirun)
endif
ifeq ($(HAVE_NCCL),1)
  CUDA_CFLAGS := -I$(CUDA_HOME)/include
  CPPFLAGS    += -DFG_HAVE_NCCL
  COMM_LIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lnccl -lcudart
  # CUDA kernels (src/scenarios/*.cu) run on the nccl backend's device memory.
  NVCC      := $(CUDA_HOME)/bin/nvcc
  HAVE_NVCC := $(shell test -x $(NVCC) && echo 1)
  CPPFLAGS  += $(if $(HAVE_NVCC),-DFG_HAVE_CUDA_KERNELS)
else
  $(info fgrun: nccl backend disabled: no CUDA/NCCL under $(CUDA_HOME) (set CUDA_HOME))
endif

OBJ := $(BUILD)/obj
BIN := $(BUILD)/bin
LIB := $(BUILD)/lib

# --- sources: one folder per layer; every .c in it is built ---------------------------------
COMMON_SRCS   := $(wildcard src/common/*.c)
STORE_SRCS    := $(wildcard src/store/*.c)
LAUNCHER_SRCS := $(filter-out $(if $(HAVE_PMIX),,src/launcher/pmix%.c src/launcher/agent_pmix.c),$(wildcard src/launcher/*.c))
# A backend's files are left out when its library is missing.
COMM_SRCS     := $(filter-out src/comm/backend_%.c,$(wildcard src/comm/*.c))
COMM_SRCS     += $(if $(HAVE_GLOO),$(wildcard src/comm/backend_gloo.c src/comm/gloo_shim.cc \
                                            src/comm/gloo_watch.cc))
COMM_SRCS     += $(if $(HAVE_MPI),$(wildcard src/comm/backend_mpi.c src/comm/backend_mpi_sched.c \
                                           src/comm/backend_mpi_wait.c src/comm/backend_mpi_p2p.c))
COMM_SRCS     += $(if $(HAVE_NCCL),$(wildcard src/comm/backend_nccl.c))
LIBFG_SRCS    := $(COMMON_SRCS) $(STORE_SRCS) $(COMM_SRCS)

LIBFG_OBJS    := $(patsubst src/%.cc,$(OBJ)/%.o,$(LIBFG_SRCS:src/%.c=$(OBJ)/%.o))
LAUNCHER_OBJS := $(LAUNCHER_SRCS:src/%.c=$(OBJ)/%.o)
LIBFG_A       := $(LIB)/libfg.a
LIBFG_SO      := $(LIB)/libfg.so

# Every src/tools/fg*.c is a program.
PROGRAMS := $(notdir $(basename $(wildcard src/tools/fg*.c)))
BINS     := $(PROGRAMS:%=$(BIN)/%)
# fgrun's startup hook for Python ranks (src/launcher/pyhook/), installed in libexec/fgrun/.
PYHOOK := $(patsubst src/launcher/pyhook/%,$(BIN)/fgrun-pyhook/%,$(wildcard src/launcher/pyhook/*.py))

# A unit test per module, beside its layer's: tests/unit/<layer>/test_<module>.c, built to
# $(BUILD)/tests/unit/<layer>/test_<module>.
UNIT_SRCS  := $(wildcard tests/unit/*/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
# Small C programs the integration tests drive (tests/drivers/*.c).
DRIVER_SRCS := $(wildcard tests/drivers/*.c)
DRIVER_BINS := $(DRIVER_SRCS:tests/drivers/%.c=$(BUILD)/tests/drivers/%)

.PHONY: all test unit integration test-slurm asan check bench run install uninstall clean deps help
all: $(BINS) $(PYHOOK) $(LIBFG_A) $(LIBFG_SO) $(UNIT_BINS) $(DRIVER_BINS)

# Objects depend on the flags they were built with, so a changed option rebuilds them.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(CC) $(CPPFLAGS) $(CFLAGS) $(CXXFLAGS)
$(shell mkdir -p $(BUILD) && echo '$(FLAGS_NOW)' | cmp -s - $(FLAGS_STAMP) || echo '$(FLAGS_NOW)' > $(FLAGS_STAMP))

$(OBJ)/%.o: src/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(OBJ)/comm/backend_mpi.o $(OBJ)/comm/backend_mpi_sched.o $(OBJ)/comm/backend_mpi_wait.o \
$(OBJ)/comm/backend_mpi_p2p.o: CPPFLAGS += $(MPI_CFLAGS)
# The reduction kernels: -O3 vectorises their loops (GCC's -O2 leaves loops of unknown length
# scalar).
$(patsubst src/%.c,$(OBJ)/%.o,$(wildcard src/launcher/pmix*.c)): CPPFLAGS += $(PMIX_CFLAGS)
$(OBJ)/comm/dtype.o: CFLAGS += -O3
$(OBJ)/comm/backend_nccl.o: CPPFLAGS += $(CUDA_CFLAGS)
$(OBJ)/tools/bench_mpi.o: CPPFLAGS += $(MPI_CFLAGS)

$(OBJ)/%.o: src/%.cc $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -MMD -MP -c $< -o $@

$(LIBFG_A): $(LIBFG_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Only include/fg's FG_EXTERN declarations are exported (tests/integration/test_exports.py).
$(LIBFG_SO): $(LIBFG_OBJS) src/libfg.ver
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libfg.so.0 -Wl,--version-script=src/libfg.ver -o $@ $(LIBFG_OBJS) $(COMM_LIBS) $(LDLIBS)

# fgrun-stack reads ranks' stacks for fgrun's hang reports: native frames through elfutils'
# libdw (libdw-dev) when it is there. fgrun-pyhook/ is the Python ranks' startup hook.
HAVE_LIBDW := $(shell test -f /usr/include/elfutils/libdwfl.h && echo 1)
ifneq ($(HAVE_LIBDW),1)
  $(info fgrun: hang reports without native stacks: elfutils' libdw not found (apt-get install libdw-dev))
endif
$(OBJ)/tools/stack_native.o: CPPFLAGS += $(if $(HAVE_LIBDW),-DFG_HAVE_LIBDW)

$(BIN)/fgrun-pyhook/%.py: src/launcher/pyhook/%.py
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/tests/unit/%: tests/unit/%.c $(LAUNCHER_OBJS) $(LIBFG_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_OBJS) $(LAUNCHER_OBJS) $(LIBFG_A) -lcmocka $(COMM_LIBS) $(LDLIBS)

# Unit tests of scenario code link the parts they test.
PIPELINE_MATH_OBJS := $(patsubst %,$(OBJ)/scenarios/pipeline_%.o,model mask cpu)
SCENARIO_UNIT_BINS := $(filter $(BUILD)/tests/unit/scenarios/%,$(UNIT_BINS))
$(SCENARIO_UNIT_BINS): $(PIPELINE_MATH_OBJS)
$(SCENARIO_UNIT_BINS): TEST_OBJS = $(PIPELINE_MATH_OBJS)

# --- programs: each is src/tools/PROG.c, the objects PROG_OBJS names, libfg.a, and PROG_LIBS;
# linked by PROG_LINK (default $(CC)) with PROG_LDLIBS (default $(LDLIBS)). One rule for all.
tool_parts = $(patsubst src/%.c,$(OBJ)/%.o,$(wildcard src/tools/$(1)_*.c)) \
             $(patsubst src/%.cc,$(OBJ)/%.o,$(wildcard src/tools/$(1)_*.cc))

SCENARIO_SRCS := $(wildcard src/scenarios/*.c)
SCENARIO_OBJS := $(SCENARIO_SRCS:src/%.c=$(OBJ)/%.o)
SCENARIO_CU   := $(if $(HAVE_NVCC),$(wildcard src/scenarios/*.cu))
SCENARIO_OBJS += $(SCENARIO_CU:src/%.cu=$(OBJ)/%.o)

# fgrun links libuv statically where the static library is installed (libuv1-dev ships it):
# one shared library less to load and relocate is a tenth of fgrun's own start-up.
LIBUV_STATIC := $(filter /%,$(shell $(CC) -print-file-name=libuv_a.a))
fgrun_OBJS       := $(LAUNCHER_OBJS)
fgrun_LDLIBS     := $(if $(LIBUV_STATIC),$(LIBUV_STATIC) -ldl $(filter-out -luv,$(LDLIBS)),$(LDLIBS))
fgrun-stack_OBJS := $(OBJ)/tools/stack_native.o $(OBJ)/launcher/procinfo.o
fgrun-stack_LIBS := $(if $(HAVE_LIBDW),-ldw -lelf -lstdc++)
fgscenario_OBJS  := $(SCENARIO_OBJS)
fgscenario_LIBS  := $(COMM_LIBS) $(if $(SCENARIO_CU),-lstdc++)
fgbench_OBJS     := $(OBJ)/tools/pattern.o $(call tool_parts,bench)
fgbench_LIBS     := $(COMM_LIBS)
fgbench_LINK     := $(CXX)
fgconform_OBJS   := $(OBJ)/tools/pattern.o $(call tool_parts,conform)
fgconform_LIBS   := $(COMM_LIBS)
fgconform_LINK   := $(CXX)
fgmatrix_OBJS    := $(call tool_parts,matrix)
fgmatrix_LIBS    := -lyaml

define PROGRAM_RULE
$(BIN)/$(1): $(OBJ)/tools/$(1).o $$($(1)_OBJS) $(LIBFG_A)
	@mkdir -p $$(dir $$@)
	$$(or $$($(1)_LINK),$$(CC)) $$(LDFLAGS) -o $$@ $$^ $$($(1)_LIBS) $$(or $$($(1)_LDLIBS),$$(LDLIBS))
endef
$(foreach p,$(PROGRAMS),$(eval $(call PROGRAM_RULE,$(p))))

$(OBJ)/%.o: src/%.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -Xcompiler -fPIC,-Wall,-Werror $(CPPFLAGS) $(CUDA_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/drivers/%: tests/drivers/%.c $(OBJ)/tools/pattern.o $(LIBFG_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(OBJ)/tools/pattern.o $(LIBFG_A) $(COMM_LIBS) $(LDLIBS)

# --- tests ----------------------------------------------------------------------------------
unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# Suites of their own, left out of make test (and make asan): make test-torch2, make test-slurm.
OWN_SUITES := -m 'not torch2 and not slurm'
integration: all
	FG_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -c tests/pytest.ini $(PYTEST_PAR) $(OWN_SUITES) tests/integration $(PYTEST_ARGS)

# Real torch 2.6 workers (the Debian trixie root of scripts/torch2-root.sh), torchrun 2.6 beside
# fgrun. Without the root the tests skip; FG_REQUIRE_TORCH2=1 (make check) fails them instead.
.PHONY: test-torch2
test-torch2: all
	FG_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -c tests/pytest.ini $(PYTEST_PAR) -m torch2 tests/integration $(PYTEST_ARGS)

# The Slurm tests: a real slurmctld, a slurmd per node and munged, started by the tests
# (tests/integration/slurm.py). Skipped where Slurm is missing; FG_REQUIRE_SLURM=1 fails them.
test-slurm: all
	FG_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -c tests/pytest.ini $(PYTEST_PAR) -m slurm tests/integration $(PYTEST_ARGS)

test: unit integration

asan:
	$(MAKE) BUILD=build/asan SAN=1 test

# What CI runs (.ci/run, the README's test command): the tests, the torch 2.6 and the Slurm
# tests (a missing root or Slurm fails them), the same tests under ASan and UBSan, and a
# bounded run of the store's fuzzer.
check:
	$(MAKE) test
	FG_REQUIRE_TORCH2=1 $(MAKE) test-torch2
	FG_REQUIRE_SLURM=1 $(MAKE) test-slurm
	$(MAKE) asan
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

# --- fuzzing: the store's request handling under libFuzzer (clang), ASan and UBSan ------------
# make fuzz [FUZZ_SECONDS=60]: builds build/fuzz/fuzz_store and runs it for that long on a
# scratch corpus seeded from tests/fuzz/corpus (tests/fuzz/make_corpus.py writes the seeds).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := build/fuzz
FUZZ_SRCS    := tests/fuzz/fuzz_store.c src/store/core.c src/store/ops.c src/store/kv.c src/store/proto.c \
                src/common/buf.c src/common/hash.c
.PHONY: fuzz
$(FUZZ_DIR)/fuzz_store: $(FUZZ_SRCS) $(wildcard src/store/*.h src/common/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -std=gnu11 $(WARN) -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -Iinclude -Isrc -D_GNU_SOURCE $(FUZZ_SRCS) -o $@

fuzz: $(FUZZ_DIR)/fuzz_store
	@mkdir -p $(FUZZ_DIR)/corpus
	$(FUZZ_DIR)/fuzz_store -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 \
	  -artifact_prefix=$(FUZZ_DIR)/ -print_final_stats=1 $(FUZZ_DIR)/corpus tests/fuzz/corpus

bench: all
	scripts/bench.sh $(BUILD)

run: all
	scripts/main-job.sh $(BUILD)

deps:
	scripts/install-deps.sh

# --- install ----------------------------------------------------------------------------------
# Programs in bin/ (fgrun finds fgscenario next to itself, or in ../libexec/fgrun/); libfg as libfg.so.<version> with its soname link
# libfg.so.0 and the development link libfg.so, and libfg.a; the headers; fg.pc for
# pkg-config (Libs.private: the backends' libraries, for static linking); the man pages.
# Nothing here is rebuilt with other flags: install takes what the build made.
VERSION    := $(shell sed -n 's/^\#define FG_VERSION "\(.*\)"/\1/p' include/fg/fg.h)
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL_BINS := $(BINS)
MAN_PAGES  := $(wildcard docs/man/*.1)
# A directory under PREFIX, written relative to ${prefix} in fg.pc.
pc_dir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

install: $(BINS) $(LIBFG_A) $(LIBFG_SO)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/fg $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(INSTALL_BINS) $(DESTDIR)$(PREFIX)/bin
	install -d $(DESTDIR)$(PREFIX)/libexec/fgrun/fgrun-pyhook
	install -m 644 $(PYHOOK) $(DESTDIR)$(PREFIX)/libexec/fgrun/fgrun-pyhook
	install -m 644 $(LIBFG_A) $(DESTDIR)$(LIBDIR)
	install -m 755 $(LIBFG_SO) $(DESTDIR)$(LIBDIR)/libfg.so.$(VERSION)
	ln -sf libfg.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libfg.so.0
	ln -sf libfg.so.0 $(DESTDIR)$(LIBDIR)/libfg.so
	install -m 644 include/fg/*.h $(DESTDIR)$(INCLUDEDIR)/fg
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(call pc_dir,$(LIBDIR))' 'includedir=$(call pc_dir,$(INCLUDEDIR))' '' \
	  'Name: fg' \
	  'Description: fgrun'"'"'s store client and communicator (backends: $(or $(strip $(HAVE_GLOO:1=gloo) $(HAVE_MPI:1=mpi) $(HAVE_NCCL:1=nccl)),none))' \
	  'Version: $(VERSION)' \
	  'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lfg' \
	  'Libs.private: $(strip $(COMM_LIBS) $(LDLIBS))' > $(DESTDIR)$(PKGCONFIGDIR)/fg.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/fg.pc
	$(if $(MAN_PAGES),install -d $(DESTDIR)$(MANDIR)/man1 && install -m 644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man1)

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(notdir $(INSTALL_BINS))) $(DESTDIR)$(PREFIX)/libexec/fgrun/fgrun-exec
	rm -f $(DESTDIR)$(LIBDIR)/libfg.a $(DESTDIR)$(LIBDIR)/libfg.so $(DESTDIR)$(LIBDIR)/libfg.so.0 $(DESTDIR)$(LIBDIR)/libfg.so.$(VERSION)
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/fg/,$(notdir $(wildcard include/fg/*.h))) $(DESTDIR)$(PKGCONFIGDIR)/fg.pc
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MAN_PAGES)))
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/libexec/fgrun/fgrun-pyhook/,$(notdir $(PYHOOK)))
	rm -rf $(DESTDIR)$(PREFIX)/libexec/fgrun/fgrun-pyhook/__pycache__
	-rmdir $(DESTDIR)$(PREFIX)/libexec/fgrun/fgrun-pyhook $(DESTDIR)$(PREFIX)/libexec/fgrun $(DESTDIR)$(INCLUDEDIR)/fg 2>/dev/null

clean:
	rm -rf build

# The list at the top of this file.
help:
	@sed -n 's/^#   make/make/p' $(firstword $(MAKEFILE_LIST))

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
