/*
 * The plugin library must export exactly NCCL's plugin objects and nothing else: NCCL finds the
 * plugin by these names, and any other exported symbol could interpose on the application's own
 * (the library is built with -fvisibility=hidden for that reason).
 *
 * 1. Reads the library's ELF dynamic symbol table directly (no dependency on binutils) and compares
 *    the set of defined, globally visible symbols with the expected eleven; _init/_fini, which the
 *    toolchain adds, and AddressSanitizer's __odr_asan.<export> indicators are ignored.
 * 2. dlopens the library as NCCL does and checks each object: name "cclpilot", every function
 *    pointer NCCL calls set.
 * 3. Drives every version once through init / getCollInfo / finalize (tuner) and init / events /
 *    finalize (profiler) to check the fail-open contract of the shims: success returns, an
 *    untouched cost table when nothing decides, no activation bits an ABI version cannot deliver.
 */
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nccl/profiler_v6.h"
#include "nccl/tuner_v2.h"
#include "nccl/tuner_v3.h"
#include "nccl/tuner_v6.h"
#include "testutil.h"

static const char* const expected_symbols[] = {
    "ncclTunerPlugin_v2", "ncclTunerPlugin_v3", "ncclTunerPlugin_v4", "ncclTunerPlugin_v5",
    "ncclTunerPlugin_v6", "ncclProfiler_v1",    "ncclProfiler_v2",    "ncclProfiler_v3",
    "ncclProfiler_v4",    "ncclProfiler_v5",    "ncclProfiler_v6",
};
#define N_EXPECTED (sizeof(expected_symbols) / sizeof(expected_symbols[0]))

static const size_t expected_sizes[N_EXPECTED] = {
    sizeof(ncclTuner_v2_t),    sizeof(ncclTuner_v3_t),    sizeof(ncclTuner_v4_t),
    sizeof(ncclTuner_v5_t),    sizeof(ncclTuner_v6_t),    sizeof(ncclProfiler_v1_t),
    sizeof(ncclProfiler_v2_t), sizeof(ncclProfiler_v3_t), sizeof(ncclProfiler_v4_t),
    sizeof(ncclProfiler_v5_t), sizeof(ncclProfiler_v6_t),
};

static int expected_index(const char* name) {
  for (size_t i = 0; i < N_EXPECTED; i++)
    if (strcmp(expected_symbols[i], name) == 0) return (int)i;
  return -1;
}

static unsigned char* read_file(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) return NULL;
  unsigned char* buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) != NULL) {
      if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
      } else {
        *len = (size_t)n;
      }
    }
  }
  fclose(f);
  return buf;
}

/* True when [off, off+size) lies inside a file of length len. */
static int in_file(size_t len, uint64_t off, uint64_t size) {
  return off <= len && size <= len - off;
}

static void check_dynamic_symbols(const char* path) {
  size_t len = 0;
  unsigned char* img = read_file(path, &len);
  CHECK(img != NULL, "cannot read %s: build the nccl-tuner-cclpilot target first", path);
  if (img == NULL) return;
  const Elf64_Ehdr* eh = (const Elf64_Ehdr*)img;
  int ok = len >= sizeof(*eh) && memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 &&
           eh->e_ident[EI_CLASS] == ELFCLASS64 && eh->e_shentsize == sizeof(Elf64_Shdr) &&
           in_file(len, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr));
  CHECK(ok, "%s is not a 64-bit ELF file with a readable section table", path);
  if (!ok) {
    free(img);
    return;
  }
  const Elf64_Shdr* sh = (const Elf64_Shdr*)(img + eh->e_shoff);
  int found[N_EXPECTED] = {0};
  int n_extra = 0, have_dynsym = 0;
  for (unsigned s = 0; s < eh->e_shnum; s++) {
    if (sh[s].sh_type != SHT_DYNSYM) continue;
    have_dynsym = 1;
    const Elf64_Shdr* str = sh[s].sh_link < eh->e_shnum ? &sh[sh[s].sh_link] : NULL;
    ok = str != NULL && sh[s].sh_entsize == sizeof(Elf64_Sym) &&
         in_file(len, sh[s].sh_offset, sh[s].sh_size) &&
         in_file(len, str->sh_offset, str->sh_size) && str->sh_size > 0;
    CHECK(ok, "%s: malformed .dynsym or its string table", path);
    if (!ok) break;
    const Elf64_Sym* syms = (const Elf64_Sym*)(img + sh[s].sh_offset);
    const char* strtab = (const char*)(img + str->sh_offset);
    size_t nsyms = sh[s].sh_size / sizeof(Elf64_Sym);
    for (size_t i = 1; i < nsyms; i++) {
      const Elf64_Sym* sym = &syms[i];
      if (sym->st_shndx == SHN_UNDEF) continue;
      unsigned bind = ELF64_ST_BIND(sym->st_info);
      unsigned vis = ELF64_ST_VISIBILITY(sym->st_other);
      if (bind == STB_LOCAL || vis == STV_HIDDEN || vis == STV_INTERNAL) continue;
      if (sym->st_name >= str->sh_size) {
        CHECK(0, "%s: symbol %zu has a name outside the string table", path, i);
        continue;
      }
      const char* name = strtab + sym->st_name;
      if (memchr(name, '\0', str->sh_size - sym->st_name) == NULL) {
        CHECK(0, "%s: symbol %zu has an unterminated name", path, i);
        continue;
      }
      if (strcmp(name, "_init") == 0 || strcmp(name, "_fini") == 0) continue;
      /* AddressSanitizer adds one ODR indicator per exported global; it names that global. */
      static const char odr_prefix[] = "__odr_asan.";
      if (strncmp(name, odr_prefix, sizeof(odr_prefix) - 1) == 0 &&
          expected_index(name + sizeof(odr_prefix) - 1) >= 0)
        continue;
      int idx = expected_index(name);
      if (idx < 0) {
        n_extra++;
        CHECK(0, "%s exports an unexpected symbol '%s': give it hidden visibility (only the "
                 "ncclTunerPlugin_vN / ncclProfiler_vN objects may be exported)", path, name);
        continue;
      }
      found[idx]++;
      /* NCCL dlsyms a data object and reads the struct through it. */
      CHECK(ELF64_ST_TYPE(sym->st_info) == STT_OBJECT, "%s must be a data object, not type %u",
            name, ELF64_ST_TYPE(sym->st_info));
      CHECK(sym->st_size == expected_sizes[idx], "%s has size %llu, its ABI struct is %zu bytes",
            name, (unsigned long long)sym->st_size, expected_sizes[idx]);
    }
  }
  CHECK(have_dynsym, "%s has no dynamic symbol table", path);
  int n_missing = 0;
  for (size_t i = 0; i < N_EXPECTED; i++) {
    if (found[i] == 0) n_missing++;
    CHECK(found[i] == 1, "%s: symbol %s is %s", path, expected_symbols[i],
          found[i] == 0 ? "missing (not defined or not exported)" : "defined more than once");
  }
  printf("exports: %zu expected, %d missing, %d unexpected\n", N_EXPECTED, n_missing, n_extra);
  free(img);
}

/* ---- behaviour through dlopen ------------------------------------------------------------- */

static int log_calls;

static void test_logger(ncclDebugLogLevel level, unsigned long flags, const char* file, int line,
                        const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  log_calls++;
  CHECK(strlen(buf) > 0, "empty log message from %s:%d", file ? file : "?", line);
}

/* A cost table as NCCL hands it over: some combinations IGNORE'd, the rest with costs. */
static void fill_table(float table[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS]) {
  for (int a = 0; a < NCCL_NUM_ALGORITHMS; a++)
    for (int p = 0; p < NCCL_NUM_PROTOCOLS; p++)
      table[a][p] = (a == NCCL_ALGO_TREE || a == NCCL_ALGO_RING) ? 10.0f + (float)(3 * a + p)
                                                                 : NCCL_ALGO_PROTO_IGNORE;
}

static int same_table(float a[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS],
                      float b[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS]) {
  return memcmp(a, b, sizeof(float) * NCCL_NUM_ALGORITHMS * NCCL_NUM_PROTOCOLS) == 0;
}

static void check_tuners(void* lib) {
  const ncclTuner_v2_t* t2 = dlsym(lib, "ncclTunerPlugin_v2");
  const ncclTuner_v3_t* t3 = dlsym(lib, "ncclTunerPlugin_v3");
  const ncclTuner_v4_t* t4 = dlsym(lib, "ncclTunerPlugin_v4");
  const ncclTuner_v5_t* t5 = dlsym(lib, "ncclTunerPlugin_v5");
  const ncclTuner_v6_t* t6 = dlsym(lib, "ncclTunerPlugin_v6");
  CHECK(t2 && t3 && t4 && t5 && t6, "dlsym failed for a tuner object: %s", dlerror());
  if (!(t2 && t3 && t4 && t5 && t6)) return;
#define NAMED_TABLE(t, last)                                                                    \
  CHECK((t)->name != NULL && strcmp((t)->name, "cclpilot") == 0, "%s name is '%s'", #t,         \
        (t)->name ? (t)->name : "(null)");                                                      \
  CHECK((t)->init != NULL && (t)->getCollInfo != NULL && (t)->last != NULL,                     \
        "%s has a NULL function NCCL calls unconditionally", #t)
  NAMED_TABLE(t2, destroy);
  NAMED_TABLE(t3, destroy);
  NAMED_TABLE(t4, destroy);
  NAMED_TABLE(t5, finalize);
  NAMED_TABLE(t6, finalize);
  CHECK(t6->getChunkSize != NULL, "ncclTunerPlugin_v6.getChunkSize is NULL");
  if (t6->getChunkSize == NULL) return;

  float table[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS];
  float before[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS];
  ncclNvlDomainInfo_v5_t nvl = {1, 8, 8};
  ncclTunerConstants_v5_t constants;
  memset(&constants, 0, sizeof(constants));
  constants.baseLatencies[NCCL_ALGO_RING][NCCL_PROTO_SIMPLE] = 8.4;
  ncclTunerConstants_v5_t constants_before = constants;

  /* A NULL context (what a shim hands NCCL when the core cannot create one) must be accepted by
   * every later call, and a context from init must leave NCCL's table alone when cclpilot
   * decides nothing (CCLPILOT_MODE=observe, set in main). */
  void* ctxs[5] = {NULL, NULL, NULL, NULL, NULL};
  CHECK_INT_EQ(t2->init(8, 1, test_logger, &ctxs[0]), ncclSuccess);
  CHECK_INT_EQ(t3->init(8, 1, test_logger, &ctxs[1]), ncclSuccess);
  CHECK_INT_EQ(t4->init(8, 1, test_logger, &ctxs[2]), ncclSuccess);
  CHECK_INT_EQ(t5->init(&ctxs[3], 0x1234, 8, 1, test_logger, &nvl, &constants), ncclSuccess);
  CHECK_INT_EQ(t6->init(&ctxs[4], 0x1234, 8, 1, test_logger, &nvl, &constants), ncclSuccess);
  CHECK(memcmp(&constants, &constants_before, sizeof(constants)) == 0,
        "tuner init changed NCCL's constants");

  for (int pass = 0; pass < 2; pass++) {
    void* c[5];
    for (int i = 0; i < 5; i++) c[i] = pass == 0 ? ctxs[i] : NULL;
    for (int coll = ncclFuncBroadcast; coll <= ncclFuncAllReduce; coll++) {
      int algo = NCCL_ALGO_UNDEF, proto = NCCL_PROTO_UNDEF, nch = 0;
      CHECK_INT_EQ(t2->getCollInfo(c[0], (ncclFunc_t)coll, 1 << 20, 1, 0, 1, &algo, &proto, &nch),
                   ncclSuccess);
      CHECK(algo == NCCL_ALGO_UNDEF && proto == NCCL_PROTO_UNDEF && nch == 0,
            "v2 (pass %d) chose algo %d proto %d channels %d without a decision", pass, algo,
            proto, nch);
      fill_table(table);
      fill_table(before);
      nch = 0;
      CHECK_INT_EQ(t3->getCollInfo(c[1], (ncclFunc_t)coll, 1 << 20, 1, (float**)table,
                                   NCCL_NUM_ALGORITHMS, NCCL_NUM_PROTOCOLS, &nch),
                   ncclSuccess);
      CHECK(same_table(table, before) && nch == 0, "v3 (pass %d) changed the table", pass);
      CHECK_INT_EQ(t4->getCollInfo(c[2], (ncclFunc_t)coll, 1 << 20, 1, (float**)table,
                                   NCCL_NUM_ALGORITHMS, NCCL_NUM_PROTOCOLS, 1, &nch),
                   ncclSuccess);
      CHECK(same_table(table, before) && nch == 0, "v4 (pass %d) changed the table", pass);
      CHECK_INT_EQ(t5->getCollInfo(c[3], (ncclFunc_t)coll, 1 << 20, 1, (float**)table,
                                   NCCL_NUM_ALGORITHMS, NCCL_NUM_PROTOCOLS, 0, &nch),
                   ncclSuccess);
      CHECK(same_table(table, before) && nch == 0, "v5 (pass %d) changed the table", pass);
      CHECK_INT_EQ(t6->getCollInfo(c[4], (ncclFunc_t)coll, 1 << 20, 1, (float**)table,
                                   NCCL_NUM_ALGORITHMS, NCCL_NUM_PROTOCOLS, 0, &nch),
                   ncclSuccess);
      CHECK(same_table(table, before) && nch == 0, "v6 (pass %d) changed the table", pass);
      size_t chunk = 131072;
      CHECK_INT_EQ(t6->getChunkSize(c[4], (ncclFunc_t)coll, 1 << 20, NCCL_ALGO_RING,
                                    NCCL_PROTO_SIMPLE, 1, &chunk),
                   ncclSuccess);
      CHECK(chunk == 131072, "v6 (pass %d) changed the chunk size to %zu", pass, chunk);
    }
  }
  CHECK_INT_EQ(t2->destroy(ctxs[0]), ncclSuccess);
  CHECK_INT_EQ(t3->destroy(ctxs[1]), ncclSuccess);
  CHECK_INT_EQ(t4->destroy(ctxs[2]), ncclSuccess);
  CHECK_INT_EQ(t5->finalize(ctxs[3]), ncclSuccess);
  CHECK_INT_EQ(t6->finalize(ctxs[4]), ncclSuccess);
  CHECK_INT_EQ(t6->finalize(NULL), ncclSuccess);
}

/* Bits a profiler of each version may request: the shims only ever ask for Coll and (where the
 * version has it) KernelCh. */
static void check_mask(int version, int mask) {
  int allowed = ncclProfileColl | (version >= 3 ? ncclProfileKernelCh : 0);
  CHECK((mask & ~allowed) == 0, "profiler v%d requested event bits 0x%x; only 0x%x are allowed",
        version, mask, allowed);
}

#define CHECK_PROFILER_TABLE(p)                                                                \
  CHECK((p)->name != NULL && strcmp((p)->name, "cclpilot") == 0, "%s name is '%s'", #p,        \
        (p)->name ? (p)->name : "(null)");                                                     \
  CHECK((p)->init && (p)->startEvent && (p)->stopEvent && (p)->recordEventState &&             \
            (p)->finalize,                                                                     \
        "%s has a NULL function", #p)

/* One Coll event and one event type the core never wants, for a descriptor type D. The Coll
 * fields differ between versions, so the caller fills them. */
#define DRIVE_EVENTS(p, ctx, D, fill_coll)                                                     \
  do {                                                                                         \
    D d;                                                                                       \
    memset(&d, 0, sizeof(d));                                                                  \
    d.type = ncclProfileColl;                                                                  \
    fill_coll;                                                                                 \
    void* h = (void*)&d; /* not NULL, so the shim must write the handle */                     \
    CHECK_INT_EQ((p)->startEvent((ctx), &h, &d), ncclSuccess);                                 \
    if (h != NULL) CHECK_INT_EQ((p)->stopEvent(h), ncclSuccess);                               \
    memset(&d, 0, sizeof(d));                                                                  \
    d.type = ncclProfileProxyCtrl;                                                             \
    h = (void*)&d;                                                                             \
    CHECK_INT_EQ((p)->startEvent((ctx), &h, &d), ncclSuccess);                                 \
    CHECK(h == NULL, "%s kept a ProxyCtrl event it has no use for", #p);                       \
    d.type = ncclProfileColl;                                                                  \
    h = (void*)&d;                                                                             \
    CHECK_INT_EQ((p)->startEvent(NULL, &h, &d), ncclSuccess);                                  \
    CHECK(h == NULL, "%s returned a handle without a context", #p);                            \
  } while (0)

static void check_profilers(void* lib) {
  const ncclProfiler_v1_t* p1 = dlsym(lib, "ncclProfiler_v1");
  const ncclProfiler_v2_t* p2 = dlsym(lib, "ncclProfiler_v2");
  const ncclProfiler_v3_t* p3 = dlsym(lib, "ncclProfiler_v3");
  const ncclProfiler_v4_t* p4 = dlsym(lib, "ncclProfiler_v4");
  const ncclProfiler_v5_t* p5 = dlsym(lib, "ncclProfiler_v5");
  const ncclProfiler_v6_t* p6 = dlsym(lib, "ncclProfiler_v6");
  CHECK(p1 && p2 && p3 && p4 && p5 && p6, "dlsym failed for a profiler object: %s", dlerror());
  if (!(p1 && p2 && p3 && p4 && p5 && p6)) return;
  CHECK_PROFILER_TABLE(p1);
  CHECK_PROFILER_TABLE(p2);
  CHECK_PROFILER_TABLE(p3);
  CHECK_PROFILER_TABLE(p4);
  CHECK_PROFILER_TABLE(p5);
  CHECK_PROFILER_TABLE(p6);

  int mask;
  void* ctx;

  mask = 0;
  ctx = NULL;
  CHECK_INT_EQ(p1->init(&ctx, &mask), ncclSuccess);
  check_mask(1, mask);
  DRIVE_EVENTS(p1, ctx, ncclProfilerEventDescr_v1_t, {
    d.coll.func = ncclFuncAllReduce;
    d.coll.count = 1024;
    d.coll.datatype = ncclFloat32;
    d.coll.algo = NCCL_ALGO_RING;
    d.coll.proto = NCCL_PROTO_SIMPLE;
    d.coll.nMaxChannels = 4;
  });
  CHECK_INT_EQ(p1->finalize(ctx), ncclSuccess);

  mask = 0;
  ctx = NULL;
  CHECK_INT_EQ(p2->init(&ctx, &mask), ncclSuccess);
  check_mask(2, mask);
  DRIVE_EVENTS(p2, ctx, ncclProfilerEventDescr_v2_t, {
    d.coll.func = "AllReduce";
    d.coll.count = 1024;
    d.coll.datatype = "ncclFloat32";
    d.coll.algo = "RING";
    d.coll.proto = "SIMPLE";
    d.coll.nMaxChannels = 4;
  });
  CHECK_INT_EQ(p2->finalize(ctx), ncclSuccess);

  mask = 0;
  ctx = NULL;
  CHECK_INT_EQ(p3->init(&ctx, &mask), ncclSuccess);
  check_mask(3, mask);
  DRIVE_EVENTS(p3, ctx, ncclProfilerEventDescr_v3_t, {
    d.coll.func = "AllGather";
    d.coll.count = 4096;
    d.coll.datatype = "ncclInt8";
    d.coll.algo = "RING";
    d.coll.proto = "LL";
    d.coll.nMaxChannels = 2;
  });
  CHECK_INT_EQ(p3->finalize(ctx), ncclSuccess);

  mask = 0;
  ctx = NULL;
  CHECK_INT_EQ(p4->init(&ctx, &mask, "h1-test", 0x1234, 1, 8, 0, test_logger), ncclSuccess);
  check_mask(4, mask);
  DRIVE_EVENTS(p4, ctx, ncclProfilerEventDescr_v4_t, {
    d.coll.func = "ReduceScatter";
    d.coll.count = 256;
    d.coll.datatype = "ncclBfloat16";
    d.coll.algo = "PAT";
    d.coll.proto = "SIMPLE";
    d.coll.nChannels = 8;
  });
  CHECK_INT_EQ(p4->finalize(ctx), ncclSuccess);

  mask = 0;
  ctx = NULL;
  CHECK_INT_EQ(p5->init(&ctx, 0x1234, &mask, NULL, 1, 8, 0, test_logger), ncclSuccess);
  check_mask(5, mask);
  DRIVE_EVENTS(p5, ctx, ncclProfilerEventDescr_v5_t, {
    d.coll.func = "AllReduce";
    d.coll.count = 1 << 20;
    d.coll.datatype = "ncclFloat16";
    d.coll.algo = "NVLS";
    d.coll.proto = "SIMPLE";
    d.coll.nChannels = 16;
  });
  CHECK_INT_EQ(p5->finalize(ctx), ncclSuccess);

  mask = 0;
  ctx = NULL;
  CHECK_INT_EQ(p6->init(&ctx, 0x1234, &mask, "h1-test", 1, 8, 0, test_logger), ncclSuccess);
  check_mask(6, mask);
  DRIVE_EVENTS(p6, ctx, ncclProfilerEventDescr_v6_t, {
    d.coll.func = "Broadcast";
    d.coll.count = 100;
    d.coll.datatype = "ncclInt8";
    d.coll.algo = "RING";
    d.coll.proto = "LL128";
    d.coll.nChannels = 1;
  });
  /* A KernelChStop for a NULL handle never comes from NCCL, but must not crash either. */
  ncclProfilerEventStateArgs_v6_t args = {.kernelCh = {.pTimer = 42}};
  CHECK_INT_EQ(p6->recordEventState(NULL, ncclProfilerKernelChStop, &args), ncclSuccess);
  CHECK_INT_EQ(p6->finalize(ctx), ncclSuccess);

  /* The mask is one int shared by all communicators: a later init must not clear bits set by an
   * earlier one. */
  mask = ncclProfileP2p;
  ctx = NULL;
  CHECK_INT_EQ(p6->init(&ctx, 0x99, &mask, NULL, 1, 8, 0, NULL), ncclSuccess);
  CHECK(mask & ncclProfileP2p, "profiler init cleared an activation bit it did not own");
  CHECK_INT_EQ(p6->finalize(ctx), ncclSuccess);
}

int main(void) {
  const char* path = CCLPILOT_PLUGIN_PATH;
  check_dynamic_symbols(path);

  /* Observe mode decides nothing, which is what the table checks above rely on; no statistics
   * file, so the test writes nothing. */
  setenv("CCLPILOT_MODE", "observe", 1);
  unsetenv("CCLPILOT_STATS_FILE");
  unsetenv("CCLPILOT_TABLE");
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  CHECK(lib != NULL, "dlopen(%s) failed: %s", path, dlerror());
  if (lib != NULL) {
    check_tuners(lib);
    check_profilers(lib);
    dlclose(lib);
  }
  printf("logger calls: %d\n", log_calls);
  TEST_RETURN();
}
