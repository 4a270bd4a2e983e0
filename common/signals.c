#include "common/common.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  interrupted = 1;
  if (sig == SIGINT) {
    /* The next ^C is not handled: a stuck process can still be killed. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, NULL);
  }
}

void dfpo_signals_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int dfpo_interrupted(void) {
  return interrupted != 0;
}

void dfpo_interrupt_reset(void) {
  interrupted = 0;
}
