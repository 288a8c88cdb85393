/*
 * Minimal assertion helpers for the C unit tests (no framework).
 *
 *   CHECK(cond, "fmt", ...)   on failure prints "file:line: CHECK(cond) failed: message" and
 *                             counts it; the test goes on so one run shows every failure.
 *   CHECK_INT_EQ(a, b)        integer equality, printing both values.
 *   CHECK_STR_CONTAINS(s, n)  s (may be NULL) contains the substring n.
 *   TEST_RETURN()             in main: prints a summary and returns 0 only if nothing failed.
 *
 * Everything is static inline / macros so the header can be included by any test without
 * unused-symbol warnings.
 */
#ifndef CCLPILOT_TESTUTIL_H
#define CCLPILOT_TESTUTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole file (a NUL follows its last byte, so text can be read as a string), or NULL. The
 * caller frees it. */
static inline uint8_t* cp_test_read_file(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 4096, n = 0;
  uint8_t* buf = malloc(cap);
  while (buf != NULL) {
    if (n + 1 >= cap) {
      uint8_t* grown = realloc(buf, cap * 2);
      if (grown == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = grown;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - 1 - n, f);
    if (got == 0) break;
    n += got;
  }
  fclose(f);
  if (buf == NULL) return NULL;
  buf[n] = 0;
  *len = n;
  return buf;
}

static inline long* cp_test_counter(int which) {
  static long counters[2]; /* [0] checks run, [1] checks failed */
  return &counters[which];
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static inline void cp_test_fail(const char* file, int line, const char* expr, const char* fmt,
                                ...) {
  va_list ap;
  (*cp_test_counter(1))++;
  fprintf(stderr, "%s:%d: CHECK(%s) failed: ", file, line, expr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
}

#define CHECK(cond, ...)                                          \
  do {                                                            \
    (*cp_test_counter(0))++;                                      \
    if (!(cond)) cp_test_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
  } while (0)

#define CHECK_INT_EQ(a, b)                                                              \
  do {                                                                                  \
    long long cp_test_a_ = (long long)(a), cp_test_b_ = (long long)(b);                 \
    CHECK(cp_test_a_ == cp_test_b_, "%s = %lld, %s = %lld", #a, cp_test_a_, #b, cp_test_b_); \
  } while (0)

#define CHECK_STR_CONTAINS(s, needle)                                                  \
  do {                                                                                 \
    const char* cp_test_s_ = (s);                                                      \
    CHECK(cp_test_s_ != NULL && strstr(cp_test_s_, (needle)) != NULL,                  \
          "\"%s\" does not contain \"%s\"", cp_test_s_ ? cp_test_s_ : "(null)", (needle)); \
  } while (0)

static inline int cp_test_finish(const char* name) {
  long run = *cp_test_counter(0), failed = *cp_test_counter(1);
  if (failed)
    fprintf(stderr, "%s: %ld of %ld checks FAILED\n", name, failed, run);
  else
    printf("%s: all %ld checks passed\n", name, run);
  /* A test that ran no check at all proves nothing. */
  return (failed == 0 && run > 0) ? 0 : 1;
}

#define TEST_RETURN() return cp_test_finish(__FILE__)

#endif
