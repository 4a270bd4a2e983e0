#include "common/common.h"

#include <criterion/criterion.h>
#include <signal.h>

Test(signals, sigterm_raises_the_flag) {
  dfpo_interrupt_reset();
  dfpo_signals_install();
  cr_expect_eq(dfpo_interrupted(), 0);
  raise(SIGTERM);
  cr_expect_eq(dfpo_interrupted(), 1, "the process survives and sees the flag");
  dfpo_interrupt_reset();
  cr_expect_eq(dfpo_interrupted(), 0);
}

Test(signals, second_sigint_kills, .signal = SIGINT) {
  dfpo_signals_install();
  raise(SIGINT);
  cr_expect_eq(dfpo_interrupted(), 1);
  raise(SIGINT); /* default action now: the test process dies by SIGINT */
}
