#include "harness/algo.h"
#include "trainer/rl.h"

#include <string.h>

#define ALG_COMMA ,
static const char *const alg_names[] = {ALG_NAMES(, ALG_COMMA)};
_Static_assert(sizeof alg_names / sizeof alg_names[0] == ALG_COUNT,
               "ALG_NAMES and alg_id must list the same algorithms");

const char *alg_name(alg_id a) {
  return (unsigned)a < ALG_COUNT ? alg_names[a] : "?";
}

const char *alg_display(alg_id a) {
  static const char *const shown[] = {"Zero-shot", "SFT", "PPO", "NLPO", "DfPO"};
  _Static_assert(sizeof shown / sizeof shown[0] == ALG_COUNT, "one display name per algorithm");
  return (unsigned)a < ALG_COUNT ? shown[a] : "?";
}

int alg_parse(const char *name, alg_id *out) {
  for (int i = 0; i < ALG_COUNT; i++)
    if (!strcmp(name, alg_names[i])) {
      *out = (alg_id)i;
      return 0;
    }
  return -1;
}

int alg_rl(alg_id a) {
  switch (a) {
  case ALG_PPO:
    return RL_PPO;
  case ALG_NLPO:
    return RL_NLPO;
  case ALG_DFPO:
    return RL_DFPO;
  default:
    return -1;
  }
}
