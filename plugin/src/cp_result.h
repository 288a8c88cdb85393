/*
 * Private result codes. Nothing outside plugin/src sees these: the export shims convert them, and
 * only they produce ncclResult_t values.
 */
#ifndef CCLPILOT_CP_RESULT_H
#define CCLPILOT_CP_RESULT_H

typedef enum {
  CP_OK = 0,
  CP_ERR_INVALID = 1,  /* bad argument or bad input data */
  CP_ERR_NOMEM = 2,
  CP_ERR_IO = 3,       /* file or socket problem */
  CP_ERR_PARSE = 4,    /* malformed table file or message */
  CP_ERR_LIMIT = 5,    /* a bounded resource is full */
  CP_ERR_INTERNAL = 6
} cp_result;

const char* cp_result_str(cp_result r);

/* Propagate a failure from a call that returns cp_result. */
#define CP_CHECK(call)                  \
  do {                                  \
    cp_result cp_check_r_ = (call);     \
    if (cp_check_r_ != CP_OK) return cp_check_r_; \
  } while (0)

/* Same, but jump to a cleanup label with the result stored in `res`. */
#define CP_CHECK_GOTO(call, res, label) \
  do {                                  \
    (res) = (call);                     \
    if ((res) != CP_OK) goto label;     \
  } while (0)

/* Allocation that fails with CP_ERR_NOMEM. */
#define CP_ALLOC_CHECK(ptr)             \
  do {                                  \
    if ((ptr) == NULL) return CP_ERR_NOMEM; \
  } while (0)

#endif
