/*
 * Table file parser. The format is a strict superset of NCCL's example-tuner CSV:
 *   collective,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks[,numPipeOps[,regBuff[,chunkBytes]]]
 * See docs/table-format.md for the full rules. Any problem rejects the whole file.
 */
#ifndef CCLPILOT_CP_TABLEFILE_H
#define CCLPILOT_CP_TABLEFILE_H

#include <stddef.h>

#include "cp_table.h"

#define CP_TABLEFILE_MAX_BYTES (64u << 20) /* larger files are rejected as too large */
#define CP_TABLEFILE_MAX_LINE 4096         /* longer lines are rejected */

typedef struct {
  cp_rule* rules;
  size_t n_rules;
  size_t n_regbuff_lines; /* lines that filtered on regBuff: skipped, since regBuff is rank-local */
  uint64_t content_hash;  /* FNV-1a 64 of the file's bytes, for logs */
} cp_rule_set;

/* Parses a whole buffer. On failure returns CP_ERR_PARSE (or CP_ERR_LIMIT / CP_ERR_NOMEM), leaves
 * *out empty and writes one line "NAME:LINE: problem" into err (NAME = `name`). */
cp_result cp_tablefile_parse_buffer(const char* name, const char* buf, size_t len,
                                    size_t max_rules, cp_rule_set* out, char* err,
                                    size_t err_len);
/* Reads and parses a file (CP_ERR_IO with a message naming the file when it cannot be read). */
cp_result cp_tablefile_parse_file(const char* path, size_t max_rules, cp_rule_set* out, char* err,
                                  size_t err_len);
void cp_rule_set_free(cp_rule_set* set);

#endif
